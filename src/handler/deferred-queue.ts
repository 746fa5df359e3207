/**
 * Messages a unit holds back while it is at its in-flight cap. Order is
 * kept within a connection (by key): once one message of a connection
 * waits, later ones of that connection wait behind it.
 */

/** What the queue needs of an item: the connection it belongs to. */
export interface Keyed {
  readonly key: string;
}

/** A FIFO with a count per connection key. */
export class DeferredQueue<T extends Keyed> {
  #items: T[] = [];
  readonly #perKey = new Map<string, number>();

  get length(): number {
    return this.#items.length;
  }

  /** True while a message of this connection waits. */
  has(key: string): boolean {
    return this.#perKey.has(key);
  }

  push(item: T): void {
    this.#items.push(item);
    this.#perKey.set(item.key, (this.#perKey.get(item.key) ?? 0) + 1);
  }

  /** The oldest waiting message, without taking it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  shift(): T | undefined {
    const item = this.#items.shift();
    if (item === undefined) return undefined;
    const left = (this.#perKey.get(item.key) ?? 1) - 1;
    if (left > 0) this.#perKey.set(item.key, left);
    else this.#perKey.delete(item.key);
    return item;
  }

  /** Forgets every message of a connection (its client went away). */
  drop(key: string): void {
    if (!this.#perKey.delete(key)) return;
    this.#items = this.#items.filter((d) => d.key !== key);
  }
}
