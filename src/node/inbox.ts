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
 * so Mongrel2 routes around it. Every later message of a connection (its
 * next requests, credits and disconnect notices, upload pieces, WebSocket
 * frames) goes to the lane that took its first one, whichever lane
 * Mongrel2 dealt it to (see Owners). On a reload the lane switches to the new
 * generation's socket and then sends the old one a DRAIN_MARKER: the old
 * unit reads up to the marker, so it has every message meant for it.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Pull, Push } from 'zeromq';
import { DRAIN_MARKER } from '../handler/endpoint.js';
import type { Logger } from '../handler/types.js';


const QUEUE = 16;
/** Messages routed to another lane beyond which the reader waits for it. */
const ROUTED_BACKLOG = 1024;
/** A connection not heard of for this long loses its place (it is idle). */
const OWNER_IDLE_MS = 10 * 60_000;

/**
 * Which lane holds each Mongrel2 connection of one endpoint. Mongrel2 deals
 * every message (requests, notices, upload pieces, WebSocket frames)
 * round-robin over the lanes; the table sends all of one connection's
 * messages to the lane that saw it first, so one unit holds the whole
 * connection: its credits, its upload stream, its frames in order.
 */
class Owners {
  readonly #map = new Map<string, { lane: Lane; seen: number }>();
  readonly #sweeper: NodeJS.Timeout;

  constructor() {
    this.#sweeper = setInterval(() => {
      const cutoff = Date.now() - OWNER_IDLE_MS;
      for (const [key, e] of this.#map) if (e.seen < cutoff) this.#map.delete(key);
    }, 60_000);
    this.#sweeper.unref();
  }

  /** The lane for the message `frame` that `receiver` took from Mongrel2. */
  route(frame: Buffer, receiver: Lane): Lane {
    const a = frame.indexOf(32);
    const b = a < 0 ? -1 : frame.indexOf(32, a + 1);
    // Malformed: the receiving unit logs and skips it.
    if (b < 0) return receiver;
    const key = frame.toString('latin1', 0, b);
    const now = Date.now();
    let entry = this.#map.get(key);
    if (!entry || entry.lane.closed) {
      entry = { lane: receiver, seen: now };
      this.#map.set(key, entry);
    } else {
      entry.seen = now;
    }
    // A disconnect notice (path "@*") ends the connection.
    if (frame[b + 1] === 64 && frame[b + 2] === 42 && frame.includes('disconnect')) this.#map.delete(key);
    return entry.lane;
  }

  close(): void {
    clearInterval(this.#sweeper);
    this.#map.clear();
  }
}

/** One unit slot's forwarding for one endpoint. */
class Lane {
  readonly #pull: Pull;
  readonly #log: Logger;
  readonly #owners: Owners;
  #target: Push | null = null;
  #switchTo: Push | null = null;
  #closed = false;
  /** Messages to forward, in order (this lane's own and routed ones). */
  readonly #outbox: Buffer[][] = [];
  #pumping: Promise<void> | null = null;
  #roomWaiters: (() => void)[] = [];

  constructor(sendSpec: string, owners: Owners, log: Logger) {
    this.#log = log;
    this.#owners = owners;
    this.#pull = new Pull({ receiveHighWaterMark: QUEUE, linger: 0 });
    this.#pull.connect(sendSpec);
    void this.#loop();
  }

  /** True once the lane drains: connections it held move to other lanes. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Starts forwarding to `next`; the previous target gets the marker. */
  switchTo(next: Push): void {
    // The same socket again: a crashed process's replacement took over its
    // addresses, and nothing needs draining.
    if (next === this.#target && this.#switchTo === null) return;
    this.#switchTo = next;
    this.#kick();
  }

  /** Queues a message for this lane's unit (from any lane). */
  enqueue(frames: Buffer[]): void {
    this.#outbox.push(frames);
    this.#kick();
  }

  /** Messages waiting to be forwarded. */
  get backlog(): number {
    return this.#outbox.length;
  }

  /** Resolves when this lane's queue has room (back-pressure on readers). */
  async room(): Promise<void> {
    while (this.#outbox.length >= QUEUE && this.#pumping) {
      await new Promise<void>((r) => this.#roomWaiters.push(r));
    }
  }

  #kick(): void {
    this.#pumping ??= this.#pump().finally(() => {
      this.#pumping = null;
      if (this.#outbox.length > 0 || this.#switchTo) this.#kick();
      else this.#wake();
    });
  }

  #wake(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiters) w();
  }

  // Sends queued messages in order; a switch happens between messages,
  // so the old target's marker comes after everything it was sent.
  async #pump(): Promise<void> {
    for (;;) {
      if (this.#switchTo && this.#target !== null && !this.#target.closed) {
        const old = this.#target;
        const next = this.#switchTo;
        this.#switchTo = null;
        this.#target = next;
        if (old !== next) await old.send(DRAIN_MARKER).catch(() => undefined);
        continue;
      }
      if (this.#switchTo && (this.#target === null || this.#target.closed)) {
        this.#target = this.#switchTo;
        this.#switchTo = null;
      }
      const frames = this.#outbox.shift();
      if (!frames) return;
      await this.#deliver(frames);
      if (this.#outbox.length < QUEUE) this.#wake();
    }
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
      const lane = frames.length === 1 ? this.#owners.route(frames[0]!, this) : this;
      // A lane that began draining meanwhile takes nothing more.
      const to = lane.closed ? this : lane;
      to.enqueue(frames);
      // Back-pressure from this lane's own unit; another lane's unit holds
      // this lane back only when it has fallen far behind (a stuck unit
      // must not stall the connections of this one).
      if (to === this || to.backlog > ROUTED_BACKLOG) await to.room();
    }
  }

  // Sends to the current target; when that one is closed meanwhile (its
  // process died or was replaced) the message goes to the next target.
  async #deliver(frames: Buffer[]): Promise<void> {
    for (;;) {
      if ((this.#target === null || this.#target.closed) && this.#switchTo) {
        this.#target = this.#switchTo;
        this.#switchTo = null;
      }
      const target = this.#target;
      if (target === null || target.closed) {
        // Draining with no process to take it: nothing can.
        if (this.#closed) return;
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
   * Stops reading from Mongrel2, lets the messages in hand go out, then
   * tells the current target that nothing more will come.
   */
  async drain(): Promise<void> {
    this.#closed = true;
    if (!this.#pull.closed) this.#pull.close();
    while (this.#pumping) await this.#pumping;
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
  /** Connection owners per Mongrel2 send_spec. */
  readonly #owners = new Map<string, Owners>();

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
          let owners = this.#owners.get(sendSpecs[e]!);
          if (!owners) {
            owners = new Owners();
            this.#owners.set(sendSpecs[e]!, owners);
          }
          lane = new Lane(sendSpecs[e]!, owners, this.#log);
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
    for (const owners of this.#owners.values()) owners.close();
    this.#owners.clear();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
