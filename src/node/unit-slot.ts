/**
 * Shared memory between a unit's thread and its process's controller. The
 * thread writes its counters and its oldest request here as it works; the
 * controller reads them without asking, so it can still see a unit whose
 * event loop is stuck (that is what harakiri needs).
 *
 *   Float64Array view:
 *   +---------+----------+----------+-----------+---------+--------+
 *   | 0 state | 1 reqs   | 2 infl.  | 3 malf.   | 4 refus.| 5 not. |
 *   +---------+----------+----------+-----------+---------+--------+
 *   | 6 dSum  | 7 oldest | 8 start  | 9-12 requests by transport  |
 *   +---------+----------+----------+-----------------------------+
 *   | 13-15 socket refusals by kind | 16.. duration buckets (+Inf) |
 *   +-------------------------------+------------------------------+
 *   then DESCRIPTION_BYTES of UTF-8: "METHOD url" of the oldest request.
 */
import { TRANSPORTS, type SocketKind, type Transport } from '../handler/index.js';
import { DURATION_BUCKETS, type UnitSnapshot, type UnitState } from './snapshot.js';

const STATES: readonly UnitState[] = ['starting', 'ready', 'draining', 'stopped'];
const SOCKET_KINDS = TRANSPORTS.filter((t): t is SocketKind => t !== 'zeromq');
const BY_TRANSPORT = 9;
const BY_SOCKET = BY_TRANSPORT + TRANSPORTS.length;
const FIELDS = BY_SOCKET + SOCKET_KINDS.length;
const BUCKETS = DURATION_BUCKETS.length + 1;
const DESCRIPTION_BYTES = 256;
const NUMBERS = FIELDS + BUCKETS;
const ENCODER = new TextEncoder();

/** Allocates the shared memory for one unit. */
export function createSlotBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(NUMBERS * 8 + DESCRIPTION_BYTES);
}

/** Typed access to one unit's shared slot. */
export class UnitSlot {
  readonly #n: Float64Array;
  readonly #text: Uint8Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#n = new Float64Array(buffer, 0, NUMBERS);
    this.#text = new Uint8Array(buffer, NUMBERS * 8, DESCRIPTION_BYTES);
  }

  set state(state: UnitState) {
    this.#n[0] = STATES.indexOf(state);
  }

  get state(): UnitState {
    return STATES[this.#n[0]!] ?? 'starting';
  }

  /** Called by the thread: counters after each change. */
  setCounters(c: {
    malformed: number; refused: number; notices: number;
    transports: Record<Transport, number>; socketRefused: Record<SocketKind, number>;
  }, inflight: number): void {
    this.#n[2] = inflight;
    this.#n[3] = c.malformed;
    this.#n[4] = c.refused;
    this.#n[5] = c.notices;
    for (let i = 0; i < TRANSPORTS.length; i++) {
      this.#n[BY_TRANSPORT + i] = c.transports[TRANSPORTS[i]!];
    }
    for (let i = 0; i < SOCKET_KINDS.length; i++) {
      this.#n[BY_SOCKET + i] = c.socketRefused[SOCKET_KINDS[i]!];
    }
  }

  /** Called by the thread when a response ends. */
  recordDuration(seconds: number): void {
    this.#n[1]!++;
    this.#n[6]! += seconds;
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.#n[FIELDS + i]!++;
  }

  /** Called by the thread when its oldest request changes (0: none). */
  setOldest(startedAt: number, description: string): void {
    this.#n[7] = startedAt;
    this.#text.fill(0);
    if (startedAt !== 0) ENCODER.encodeInto(description, this.#text);
  }

  set startedAt(ms: number) {
    this.#n[8] = ms;
  }

  /** Start time (ms since epoch) of the oldest request in flight, or 0. */
  get oldestStartedAt(): number {
    return this.#n[7]!;
  }

  /** "METHOD url" of the oldest request in flight. */
  get oldestDescription(): string {
    const end = this.#text.indexOf(0);
    return new TextDecoder().decode(this.#text.slice(0, end < 0 ? DESCRIPTION_BYTES : end));
  }

  /** Reads everything into a snapshot (controller side). */
  snapshot(identity: string, pid: number, thread: number): UnitSnapshot {
    const n = this.#n;
    return {
      identity, pid, thread,
      state: this.state,
      requests: n[1]!, inflight: n[2]!, malformed: n[3]!, refused: n[4]!, notices: n[5]!,
      durationSum: n[6]!,
      transports: Object.fromEntries(TRANSPORTS.map((t, i) => [t, n[BY_TRANSPORT + i]!])) as Record<Transport, number>,
      socketRefused: Object.fromEntries(SOCKET_KINDS.map((k, i) => [k, n[BY_SOCKET + i]!])) as Record<SocketKind, number>,
      durationBuckets: Array.from(n.subarray(FIELDS, FIELDS + BUCKETS)),
      startedAt: n[8]!,
    };
  }
}
