/**
 * One queue in front of each PUB socket. zeromq.js allows a single send in
 * flight per socket, and a PUB with `noDrop` refuses (EAGAIN) instead of
 * silently dropping when Mongrel2 is slow to read; both are handled here so
 * that no reply is lost and none overtakes another.
 */
import type { Logger } from './types.js';

/** The one method of a ZeroMQ socket this queue needs. */
export interface FrameSocket {
  send(frame: Buffer): Promise<void>;
}

type Done = (err?: Error | null) => void;

const RETRY_MIN_MS = 1;
const RETRY_MAX_MS = 50;

/** ZeroMQ's "try again": a queue is full (a send with sendTimeout 0). */
export function isBackPressure(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'EAGAIN';
}

/** Serialises sends to one socket, retrying back-pressure until closed. */
export class ReplySender {
  readonly #socket: FrameSocket;
  readonly #log: Logger;
  #frames: Buffer[] = [];
  #callbacks: (Done | undefined)[] = [];
  #head = 0;
  #pumping = false;
  #closed = false;
  #idle: (() => void)[] = [];
  /** Frames handed to ZeroMQ so far. */
  sent = 0;

  constructor(socket: FrameSocket, log: Logger) {
    this.#socket = socket;
    this.#log = log;
  }

  /** Frames waiting to be handed to ZeroMQ. */
  get queued(): number {
    return this.#frames.length - this.#head;
  }

  /**
   * Queues one frame. The buffer now belongs to ZeroMQ (large ones are sent
   * without a copy): the caller must never write to it again. `done` runs
   * once the frame is handed over, or with an error if the queue was closed.
   */
  enqueue(frame: Buffer, done?: Done): void {
    if (this.#closed) {
      done?.(new Error('reply queue closed'));
      return;
    }
    this.#frames.push(frame);
    this.#callbacks.push(done);
    if (!this.#pumping) void this.#pump();
  }

  /** Resolves once every frame queued so far has been handed to ZeroMQ. */
  drained(): Promise<void> {
    if (this.queued === 0 && !this.#pumping) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Refuses further frames and fails the queued ones. */
  close(): void {
    this.#closed = true;
    const err = new Error('reply queue closed');
    for (let i = this.#head; i < this.#callbacks.length; i++) {
      this.#callbacks[i]?.(err);
    }
    this.#frames = [];
    this.#callbacks = [];
    this.#head = 0;
    this.#wakeIdle();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    while (this.#head < this.#frames.length && !this.#closed) {
      const i = this.#head;
      const err = await this.#sendOne(this.#frames[i]!);
      if (this.#closed) break;
      const done = this.#callbacks[i];
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#frames.length) {
        this.#frames = this.#frames.slice(this.#head);
        this.#callbacks = this.#callbacks.slice(this.#head);
        this.#head = 0;
      }
      done?.(err);
    }
    this.#pumping = false;
    this.#wakeIdle();
  }

  async #sendOne(frame: Buffer): Promise<Error | null> {
    let delay = RETRY_MIN_MS;
    let warned = false;
    for (;;) {
      try {
        await this.#socket.send(frame);
        this.sent++;
        return null;
      } catch (err) {
        if (!isBackPressure(err) || this.#closed) {
          this.#log.error({ err: String(err) }, 'reply send failed');
          return err as Error;
        }
        if (!warned) {
          this.#log.warn({ queued: this.queued }, 'mongrel2 slow to read replies; holding them');
          warned = true;
        }
        await new Promise((r) => setTimeout(r, delay));
        if (this.#closed) return new Error('reply queue closed');
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }

  #wakeIdle(): void {
    if (this.queued !== 0 && !this.#closed) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }
}
