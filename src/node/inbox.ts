/**
 * The master keeps each unit's Mongrel2 PULL, so that replacing a process
 * loses nothing: closing a PULL throws away what Mongrel2 had already
 * pushed into it, and Mongrel2 keeps pushing to every connected PULL.
 *
 *   Mongrel2 PUSH ──> lane PULL (master, one per unit slot and endpoint)
 *                       │ forwards each message
 *                       v
 *                     ipc PUSH (one per process generation) ──> unit PULL (binds)
 *
 * Mongrel2 still sees one consumer per unit and spreads requests over
 * them; a busy unit's small queues fill and make the lane stop reading,
 * so Mongrel2 routes around it. On a reload the lane switches to the new
 * generation's socket and then sends the old one a DRAIN_MARKER: the old
 * unit reads up to the marker, so it has every message meant for it.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Pull, Push } from 'zeromq';
import { DRAIN_MARKER } from '../handler/endpoint.js';
import type { Logger } from '../handler/types.js';


const QUEUE = 16;

/** One unit slot's forwarding for one endpoint. */
class Lane {
  readonly #pull: Pull;
  readonly #log: Logger;
  #target: Push | null = null;
  #sending = false;
  #switchTo: Push | null = null;
  #closed = false;

  constructor(sendSpec: string, log: Logger) {
    this.#log = log;
    this.#pull = new Pull({ receiveHighWaterMark: QUEUE, linger: 0 });
    this.#pull.connect(sendSpec);
    void this.#loop();
  }

  /** Starts forwarding to `next`; the previous target gets the marker. */
  switchTo(next: Push): void {
    // The same socket again: a crashed process's replacement took over its
    // addresses, and nothing needs draining.
    if (next === this.#target && this.#switchTo === null) return;
    if (this.#sending) {
      this.#switchTo = next;
      return;
    }
    void this.#swap(next);
  }

  async #swap(next: Push): Promise<void> {
    const old = this.#target;
    this.#target = next;
    if (old && old !== next && !old.closed) await old.send(DRAIN_MARKER).catch(() => undefined);
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      let frames: Buffer[];
      try {
        frames = await this.#pull.receive();
      } catch {
        if (this.#pull.closed) return;
        continue;
      }
      this.#sending = true;
      await this.#deliver(frames);
      this.#sending = false;
      if (this.#switchTo) {
        const next = this.#switchTo;
        this.#switchTo = null;
        await this.#swap(next);
      }
    }
  }

  // Sends to the current target; when that one is closed meanwhile (its
  // process died or was replaced) the message goes to the next target.
  async #deliver(frames: Buffer[]): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      if ((this.#target === null || this.#target.closed) && this.#switchTo) {
        this.#target = this.#switchTo;
        this.#switchTo = null;
      }
      const target = this.#target;
      if (target === null || target.closed) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      try {
        await target.send(frames);
        return;
      } catch (err) {
        if (!target.closed) this.#log.warn({ err: String(err) }, 'inbox: forward failed; retrying');
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  /**
   * Stops reading from Mongrel2, lets the message in hand go out, then
   * tells the current target that nothing more will come.
   */
  async drain(): Promise<void> {
    this.#closed = true;
    if (!this.#pull.closed) this.#pull.close();
    while (this.#sending) await new Promise((r) => setTimeout(r, 5));
    const target = this.#target;
    if (target && !target.closed) await target.send(DRAIN_MARKER).catch(() => undefined);
  }
}

/** All lanes of a master: per slot, thread and endpoint. */
export class Inbox {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #lanes = new Map<string, Lane>();
  readonly #pushes = new Map<string, Push>();

  constructor(log: Logger) {
    this.#log = log;
    this.#dir = path.join('/tmp', `m2fleet-${process.pid}`);
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Binds the sockets of one process generation and points the slot's
   * lanes at them; returns, per thread and endpoint, where units connect.
   * `sendSpecs` are Mongrel2's send_specs (one per endpoint).
   */
  open(slot: number, generation: number, threads: number, sendSpecs: readonly string[]):
    string[][] {
    const specs: string[][] = [];
    for (let t = 0; t < threads; t++) {
      const row: string[] = [];
      for (let e = 0; e < sendSpecs.length; e++) {
        // The unit binds this address; the master connects (connecting
        // needs no wait, and ZeroMQ holds messages until the unit is up).
        const address = `ipc://${this.#dir}/${slot}-${t}-${e}-${generation}`;
        const push = new Push({ sendHighWaterMark: QUEUE, linger: 0 });
        push.connect(address);
        this.#pushes.set(`${slot} ${t} ${e} ${generation}`, push);
        row.push(address);
      }
      specs.push(row);
    }
    return specs;
  }

  /** Makes generation `generation` of `slot` the one the lanes feed. */
  activate(slot: number, generation: number, threads: number, sendSpecs: readonly string[]): void {
    for (let t = 0; t < threads; t++) {
      for (let e = 0; e < sendSpecs.length; e++) {
        const key = `${slot} ${t} ${e} ${sendSpecs[e]}`;
        let lane = this.#lanes.get(key);
        if (!lane) {
          lane = new Lane(sendSpecs[e]!, this.#log);
          this.#lanes.set(key, lane);
        }
        const push = this.#pushes.get(`${slot} ${t} ${e} ${generation}`);
        if (push) lane.switchTo(push);
      }
    }
  }

  /** Closes one generation's sockets (its process has exited). */
  release(slot: number, generation: number): void {
    for (const [key, push] of this.#pushes) {
      const [s, , , g] = key.split(' ');
      if (Number(s) === slot && Number(g) === generation) {
        if (!push.closed) push.close();
        this.#pushes.delete(key);
      }
    }
  }

  /**
   * Stops feeding the given slot's threads from `fromThread` on (all of a
   * slot by default): a fleet stop, or a config with fewer units.
   */
  async drain(slot?: number, fromThread = 0): Promise<void> {
    const done: Promise<void>[] = [];
    for (const [key, lane] of this.#lanes) {
      const [s, t] = key.split(' ').map(Number);
      if (slot !== undefined && (s !== slot || t! < fromThread)) continue;
      this.#lanes.delete(key);
      done.push(lane.drain());
    }
    await Promise.all(done);
  }

  /** Closes everything (after the fleet has stopped). */
  close(): void {
    for (const push of this.#pushes.values()) if (!push.closed) push.close();
    this.#pushes.clear();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
