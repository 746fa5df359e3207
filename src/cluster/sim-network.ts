/**
 * An in-memory network and a fake clock, so cluster tests can drive many
 * nodes through loss, duplication, reordering, delay and partitions,
 * deterministically: the same seed gives the same run.
 */
import type { Clock, Transport } from './types.js';

/** The port every simulated transport reports as its source port. */
export const SIM_PORT = 1717;

/** Bound on timers run by one `advance()`, to stop runaway re-arming. */
const MAX_TIMERS_PER_ADVANCE = 1_000_000;

interface Timer {
  due: number;
  order: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told. Timers due at the same instant run
 * in the order they were set.
 */
export class FakeClock implements Clock {
  private time: number;
  private order = 0;
  private timers: Timer[] = [];

  /** @param start initial `now()`, ms since the epoch. Default 0. */
  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const timer: Timer = {
      due: this.time + Math.max(0, ms),
      order: this.order++,
      fn,
      cancelled: false,
    };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** How many timers are set and not yet run or cancelled. */
  get pending(): number {
    return this.timers.filter((timer) => !timer.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, running every timer that falls due on the
   * way (including ones set by those timers) at its own instant, in order.
   * Throws if more than a million timers run in one call.
   */
  advance(ms: number): void {
    const target = this.time + Math.max(0, ms);
    for (let run = 0; run < MAX_TIMERS_PER_ADVANCE; run++) {
      const next = this.takeNext(target);
      if (next === undefined) {
        this.time = target;
        return;
      }
      this.time = next.due;
      next.fn();
    }
    throw new Error(`FakeClock.advance: over ${MAX_TIMERS_PER_ADVANCE} timers ran`);
  }

  private takeNext(target: number): Timer | undefined {
    this.timers = this.timers.filter((timer) => !timer.cancelled);
    let best: Timer | undefined;
    for (const timer of this.timers) {
      if (timer.due > target) continue;
      if (best === undefined || timer.due < best.due || (timer.due === best.due && timer.order < best.order)) {
        best = timer;
      }
    }
    if (best !== undefined) best.cancelled = true;
    return best;
  }
}

/** Faults applied to each copy of each datagram, chosen independently. */
export interface SimFaults {
  /** Share of copies lost, 0-1. Default 0. */
  loss?: number;
  /** Share of copies delivered twice, 0-1. Default 0. */
  duplicate?: number;
  /** Share of copies held back past later ones, 0-1. Default 0. */
  reorder?: number;
  /** Delivery delay drawn uniformly from [min, max] ms. Default [0, 0]. */
  delayMs?: [number, number];
}

/** Options of {@link SimNetwork.transport}. */
export interface SimTransportOptions {
  /** Deliver our own `send()` to ourselves, like IP_MULTICAST_LOOP. Default true. */
  loopback?: boolean;
}

type Receiver = (datagram: Buffer, from: { address: string; port: number }) => void;

interface Endpoint {
  address: string;
  loopback: boolean;
  receiver: Receiver | undefined;
  closed: boolean;
}

/** mulberry32: a small seeded PRNG; returns floats in [0, 1). */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A simulated LAN segment. `send()` reaches every open transport (the
 * group), `sendTo()` the transport with that address (the port is not
 * checked). Each copy is lost, duplicated, delayed or held back by the
 * faults and the partitions in force when it is sent, then delivered by a
 * clock timer.
 */
export class SimNetwork {
  /** Copies handed to a receiver. */
  delivered = 0;
  /** Copies lost to `loss`, a partition, or an unknown or closed address. */
  dropped = 0;
  /** Extra copies made by `duplicate`. */
  duplicated = 0;

  private readonly random: () => number;
  private readonly endpoints = new Map<string, Endpoint>();
  private faults: Required<SimFaults> = { loss: 0, duplicate: 0, reorder: 0, delayMs: [0, 0] };
  private partitions: [Set<string>, Set<string>][] = [];

  constructor(
    private readonly clock: FakeClock,
    seed: number,
  ) {
    this.random = createRandom(seed);
  }

  /** A transport at `address`; throws if that address is taken and open. */
  transport(address: string, options: SimTransportOptions = {}): Transport {
    if (this.endpoints.get(address)?.closed === false) {
      throw new Error(`SimNetwork: address ${address} is already in use`);
    }
    const endpoint: Endpoint = {
      address,
      loopback: options.loopback ?? true,
      receiver: undefined,
      closed: false,
    };
    this.endpoints.set(address, endpoint);

    return {
      send: (datagram) => {
        if (endpoint.closed) return;
        for (const to of this.endpoints.values()) {
          if (to.closed || (to === endpoint && !endpoint.loopback)) continue;
          this.route(endpoint, to.address, datagram);
        }
      },
      sendTo: (datagram, to) => {
        if (!endpoint.closed) this.route(endpoint, to, datagram);
      },
      onMessage: (handler) => {
        endpoint.receiver = handler;
      },
      close: () => {
        endpoint.closed = true;
        return Promise.resolve();
      },
    };
  }

  /** Replaces the fault settings; omitted fields go back to their defaults. */
  setFaults(faults: SimFaults): void {
    const [min, max] = faults.delayMs ?? [0, 0];
    if (!(min >= 0 && max >= min)) {
      throw new Error(`SimNetwork: delayMs [${min}, ${max}] needs 0 <= min <= max`);
    }
    this.faults = {
      loss: faults.loss ?? 0,
      duplicate: faults.duplicate ?? 0,
      reorder: faults.reorder ?? 0,
      delayMs: [min, max],
    };
  }

  /** Cuts every address in `a` off from every address in `b`, both ways. */
  partition(a: string[], b: string[]): void {
    this.partitions.push([new Set(a), new Set(b)]);
  }

  /** Removes every partition. Copies already dropped stay dropped. */
  heal(): void {
    this.partitions = [];
  }

  private isCut(from: string, to: string): boolean {
    return this.partitions.some(
      ([a, b]) => (a.has(from) && b.has(to)) || (b.has(from) && a.has(to)),
    );
  }

  /** Decides the fate of one copy and schedules its delivery. */
  private route(from: Endpoint, to: string, datagram: Buffer): void {
    // Draw every number for every copy, so that one fault's setting does
    // not shift the random stream seen by the others.
    const lost = this.random() < this.faults.loss;
    const twice = this.random() < this.faults.duplicate;
    const late = this.random() < this.faults.reorder;
    if (lost || this.isCut(from.address, to) || this.endpoints.get(to)?.closed !== false) {
      this.dropped++;
      return;
    }

    // Own copy: the sender keeps no reference to the caller's buffer.
    const copy = Buffer.from(datagram);
    this.schedule(from.address, to, copy, late);
    if (twice) {
      this.duplicated++;
      this.schedule(from.address, to, copy, false);
    }
  }

  private schedule(from: string, to: string, datagram: Buffer, late: boolean): void {
    const [min, max] = this.faults.delayMs;
    let delay = min + Math.floor(this.random() * (max - min + 1));
    // A held-back copy arrives after everything sent within the next
    // max + 1 ms would have.
    if (late) delay += max + 1 + Math.floor(this.random() * (max + 1));

    this.clock.setTimeout(() => {
      const endpoint = this.endpoints.get(to);
      if (endpoint === undefined || endpoint.closed || endpoint.receiver === undefined) {
        this.dropped++;
        return;
      }
      this.delivered++;
      endpoint.receiver(Buffer.from(datagram), { address: from, port: SIM_PORT });
    }, delay);
  }
}
