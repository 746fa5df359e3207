/**
 * The master reads Mongrel2 for the whole fleet, so that replacing a
 * process loses nothing (closing a PULL throws away what Mongrel2 had
 * already pushed into it) and every message of a connection reaches one
 * unit, in the order Mongrel2 sent it.
 *
 *   Mongrel2 PUSH ──> Reader PULL (master, one per send_spec)
 *                       │ routes by connection
 *                       v
 *                     Lane (one per unit slot, thread and endpoint)
 *                       │ forwards, in order
 *                       v
 *                     ipc PUSH (one per process generation) ──> unit PULL (binds)
 *
 * A connection's first message goes to a lane with room, taking turns;
 * its later messages (next keep-alive requests, credits and disconnect
 * notices, upload pieces, WebSocket frames) follow it there. Each unit
 * keeps its own PUB and identity for replies. On a reload a lane switches
 * to the new generation's socket and then sends the old one a
 * DRAIN_MARKER: the old unit reads up to the marker, so it has every
 * message meant for it.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Pull, Push } from 'zeromq';
import { DRAIN_MARKER } from '../handler/endpoint.js';
import { isBackPressure } from '../handler/reply-sender.js';
import type { Logger } from '../handler/types.js';

/** Messages a lane holds for its unit before the reader waits for it. */
const QUEUE = 16;
/** Messages queued for a lane beyond which its connections move elsewhere. */
const ROUTED_BACKLOG = 1024;
/** A connection not heard of for this long loses its place (it is idle). */
const OWNER_IDLE_MS = 10 * 60_000;

/**
 * Sends on a PUSH created with sendTimeout 0, which spares zeromq.js a
 * check of the socket's events (two system calls in libzmq) per message.
 * When the unit's queue is full that answers EAGAIN at once; then this one
 * send waits for room the usual way.
 */
async function sendTo(push: Push, frames: Buffer[]): Promise<void> {
  try {
    await push.send(frames);
  } catch (err) {
    if (!isBackPressure(err) || push.closed) throw err;
    push.sendTimeout = -1;
    try {
      await push.send(frames);
    } finally {
      if (!push.closed) push.sendTimeout = 0;
    }
  }
}

/** Reads one Mongrel2 send_spec and routes each message to a lane. */
class Reader {
  readonly #pull: Pull;
  readonly #lanes: Lane[] = [];
  readonly #owners = new Map<string, { lane: Lane; seen: number }>();
  readonly #sweeper: NodeJS.Timeout;
  readonly #done: Promise<void>;
  #turn = 0;
  #closed = false;

  constructor(sendSpec: string) {
    this.#pull = new Pull({ receiveHighWaterMark: QUEUE, linger: 0 });
    this.#pull.connect(sendSpec);
    this.#sweeper = setInterval(() => {
      const cutoff = Date.now() - OWNER_IDLE_MS;
      for (const [key, e] of this.#owners) if (e.seen < cutoff) this.#owners.delete(key);
    }, 60_000);
    this.#sweeper.unref();
    this.#done = this.#loop();
  }

  add(lane: Lane): void {
    if (!this.#lanes.includes(lane)) this.#lanes.push(lane);
  }

  remove(lane: Lane): void {
    const i = this.#lanes.indexOf(lane);
    if (i >= 0) this.#lanes.splice(i, 1);
  }

  /** Stops reading from Mongrel2; resolves once no message is in hand. */
  async close(): Promise<void> {
    this.#closed = true;
    if (!this.#pull.closed) this.#pull.close();
    clearInterval(this.#sweeper);
    await this.#done;
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
      let lane = frames.length === 1 ? this.#route(frames[0]!) : this.#pick();
      while (lane === null) {
        // Every lane is full (or none serves yet): wait, then choose again.
        await new Promise((r) => setTimeout(r, 2));
        lane = frames.length === 1 ? this.#route(frames[0]!) : this.#pick();
      }
      lane.enqueue(frames);
    }
  }

  // The lane for a message: its connection's, or a new one's.
  #route(frame: Buffer): Lane | null {
    const a = frame.indexOf(32);
    const b = a < 0 ? -1 : frame.indexOf(32, a + 1);
    // Malformed: any unit logs and skips it.
    if (b < 0) return this.#pick();
    const key = frame.toString('latin1', 0, b);
    const now = Date.now();
    let entry = this.#owners.get(key);
    // A lane that stopped serving (draining, its process gone) or fell far
    // behind (its unit stuck) gives its connections up: a stuck unit must
    // not hold the reader, and so everyone else, back.
    if (!entry || !entry.lane.serving || entry.lane.backlog >= ROUTED_BACKLOG) {
      const lane = this.#pick();
      if (lane === null) return null;
      entry = { lane, seen: now };
      this.#owners.set(key, entry);
    } else {
      entry.seen = now;
    }
    // A disconnect notice (path "@*") ends the connection.
    if (frame[b + 1] === 64 && frame[b + 2] === 42 && frame.includes('disconnect')) {
      this.#owners.delete(key);
    }
    return entry.lane;
  }

  // Takes turns over the lanes that serve and have room.
  #pick(): Lane | null {
    const n = this.#lanes.length;
    for (let i = 0; i < n; i++) {
      const lane = this.#lanes[(this.#turn + i) % n]!;
      if (lane.serving && lane.backlog < QUEUE) {
        this.#turn = (this.#turn + i + 1) % n;
        return lane;
      }
    }
    return null;
  }
}

/** One unit slot's forwarding for one endpoint. */
class Lane {
  readonly #log: Logger;
  #target: Push | null = null;
  #switchTo: Push | null = null;
  #closed = false;
  /** Messages to forward, in order. */
  readonly #outbox: Buffer[][] = [];
  #pumping: Promise<void> | null = null;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Takes new messages: not draining, and a process to send them to. */
  get serving(): boolean {
    if (this.#closed) return false;
    const target = this.#switchTo ?? this.#target;
    return target !== null && !target.closed;
  }

  /** Messages waiting to be forwarded. */
  get backlog(): number {
    return this.#outbox.length;
  }

  /** Starts forwarding to `next`; the previous target gets the marker. */
  switchTo(next: Push): void {
    // The same socket again: a crashed process's replacement took over its
    // addresses, and nothing needs draining.
    if (next === this.#target && this.#switchTo === null) return;
    this.#switchTo = next;
    this.#kick();
  }

  /** Queues a message for this lane's unit. */
  enqueue(frames: Buffer[]): void {
    this.#outbox.push(frames);
    this.#kick();
  }

  #kick(): void {
    this.#pumping ??= this.#pump().finally(() => {
      this.#pumping = null;
      if (this.#outbox.length > 0 || this.#switchTo) this.#kick();
    });
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
        if (old !== next) await sendTo(old, [DRAIN_MARKER]).catch(() => undefined);
        continue;
      }
      if (this.#switchTo && (this.#target === null || this.#target.closed)) {
        this.#target = this.#switchTo;
        this.#switchTo = null;
      }
      const frames = this.#outbox.shift();
      if (!frames) return;
      await this.#deliver(frames);
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
        await sendTo(target, frames);
        return;
      } catch (err) {
        if (!target.closed) this.#log.warn({ err: String(err) }, 'inbox: forward failed; retrying');
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  /**
   * Takes no more messages, lets those in hand go out, then tells the
   * current target that nothing more will come.
   */
  async drain(): Promise<void> {
    this.#closed = true;
    while (this.#pumping) await this.#pumping;
    const target = this.#target;
    if (target && !target.closed) await sendTo(target, [DRAIN_MARKER]).catch(() => undefined);
  }
}

/** All lanes of a master: per slot, thread and endpoint. */
export class Inbox {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #lanes = new Map<string, Lane>();
  readonly #pushes = new Map<string, Push>();
  /** The reader of each Mongrel2 send_spec. */
  readonly #readers = new Map<string, Reader>();
  /** The reader each lane is registered with. */
  readonly #laneReader = new Map<Lane, Reader>();

  constructor(log: Logger) {
    this.#log = log;
    this.#dir = path.join('/tmp', `m2fleet-${process.pid}`);
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    // Also on the paths that skip close(): a second signal's immediate
    // exit, an uncaught error (only SIGKILL leaves the directory behind).
    process.once('exit', this.#removeDir);
  }

  readonly #removeDir = (): void => {
    rmSync(this.#dir, { recursive: true, force: true });
  };

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
        const push = new Push({ sendHighWaterMark: QUEUE, linger: 0, sendTimeout: 0 });
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
          lane = new Lane(this.#log);
          this.#lanes.set(key, lane);
        }
        const push = this.#pushes.get(`${slot} ${t} ${e} ${generation}`);
        if (push) lane.switchTo(push);
        let reader = this.#readers.get(sendSpecs[e]!);
        if (!reader) {
          reader = new Reader(sendSpecs[e]!);
          this.#readers.set(sendSpecs[e]!, reader);
        }
        reader.add(lane);
        this.#laneReader.set(lane, reader);
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
    // A fleet stop: stop reading Mongrel2 first, with nothing left in hand.
    if (slot === undefined) {
      await Promise.all([...this.#readers.values()].map((r) => r.close()));
      this.#readers.clear();
    }
    const done: Promise<void>[] = [];
    for (const [key, lane] of this.#lanes) {
      const [s, t] = key.split(' ').map(Number);
      if (slot !== undefined && (s !== slot || t! < fromThread)) continue;
      this.#lanes.delete(key);
      // The reader routes this lane's connections elsewhere from now on.
      this.#laneReader.get(lane)?.remove(lane);
      this.#laneReader.delete(lane);
      done.push(lane.drain());
    }
    await Promise.all(done);
  }

  /** Closes everything (after the fleet has stopped). */
  close(): void {
    for (const push of this.#pushes.values()) if (!push.closed) push.close();
    this.#pushes.clear();
    for (const reader of this.#readers.values()) void reader.close();
    this.#readers.clear();
    process.off('exit', this.#removeDir);
    this.#removeDir();
  }
}
