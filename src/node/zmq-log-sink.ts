/**
 * A log sink that pushes each line as one ZeroMQ message to a collector,
 * the way uWSGI's zeromq logger does: a PUSH socket that connects, so the
 * collector binds a PULL and may come and go.
 *
 * Logging must never slow serving. write() is synchronous and only queues;
 * one send is in flight at a time, with ZMQ_SNDTIMEO 0, so when libzmq's
 * queue is full (the collector is away and ZMQ_SNDHWM lines are waiting)
 * the send fails at once with EAGAIN and the line is dropped and counted.
 *
 *   write() -> [JS queue, at most maxQueued] -> send -> [libzmq pipe, SNDHWM]
 *                 full: drop, count                 EAGAIN: drop, count
 */
import { Push } from 'zeromq';
import { M2FleetError } from '../handler/errors.js';

/** Options of {@link createZmqLogSink}. */
export interface ZmqLogSinkOptions {
  /** ZMQ_SNDHWM: lines libzmq holds while the collector is away (default 1000). */
  highWaterMark?: number;
  /** Lines queued in JavaScript waiting for their send, besides the one in flight (default 1000). */
  maxQueued?: number;
  /** ZMQ_LINGER in ms: how long close() lets queued lines leave, 0..200 (default 100). */
  lingerMs?: number;
}

/** A running ZeroMQ log sink. */
export interface ZmqLogSink {
  /** Queues one line; never blocks and never throws. */
  write(line: string): void;
  /** Lines dropped so far: queue full, collector away (EAGAIN), or closed. */
  readonly dropped: number;
  /** Sends what is queued if it can, then closes the socket. Idempotent. */
  close(): Promise<void>;
}

const TCP = /^tcp:\/\/([^:/\s]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/;
const IPC = /^ipc:\/\/\S+$/;

// Sends resolve synchronously with ZMQ_SNDTIMEO 0; give the event loop a
// turn now and then so a long queue does not starve request handling.
const SENDS_PER_TURN = 64;

/** Throws `M2F_LOG_ENDPOINT` unless `endpoint` is tcp://host:port or ipc://path. */
export function validateLogEndpoint(endpoint: string): void {
  const tcp = TCP.exec(endpoint);
  const port = tcp ? Number(tcp[2]) : 0;
  if (tcp && tcp[1] !== '*' && port >= 1 && port <= 65535) return;
  if (!tcp && IPC.test(endpoint)) return;
  throw new M2FleetError('M2F_LOG_ENDPOINT',
    `log endpoint ${JSON.stringify(endpoint)} is not tcp://host:port (port 1-65535) or ipc://path`,
    { value: endpoint });
}

function checkCount(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new M2FleetError('M2F_LOG_ENDPOINT',
      `log sink: ${name} must be an integer ${min}..${max} (got ${value})`, { value: String(value) });
  }
  return value;
}

class PushLogSink implements ZmqLogSink {
  readonly #socket: Push;
  readonly #maxQueued: number;
  #queue: string[] = [];
  #dropped = 0;
  #draining: Promise<void> | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  constructor(endpoint: string, options: ZmqLogSinkOptions) {
    validateLogEndpoint(endpoint);
    const hwm = checkCount('highWaterMark', options.highWaterMark ?? 1000, 1, 1e6);
    this.#maxQueued = checkCount('maxQueued', options.maxQueued ?? 1000, 1, 1e6);
    const linger = checkCount('lingerMs', options.lingerMs ?? 100, 0, 200);
    this.#socket = new Push({ sendHighWaterMark: hwm, sendTimeout: 0, linger });
    this.#socket.connect(endpoint);
  }

  get dropped(): number {
    return this.#dropped;
  }

  write(line: string): void {
    if (this.#closed || this.#queue.length >= this.#maxQueued) {
      this.#dropped++;
      return;
    }
    this.#queue.push(line);
    this.#draining ??= this.#drain();
  }

  async #drain(): Promise<void> {
    let sent = 0;
    while (this.#queue.length > 0) {
      const line = this.#queue.shift()!;
      try {
        await this.#socket.send(line);
      } catch {
        // EAGAIN: libzmq's queue is full; a later line may find room.
        this.#dropped++;
      }
      if (++sent % SENDS_PER_TURN === 0) await new Promise((r) => setImmediate(r));
    }
    this.#draining = null;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#draining;
      // Lines still inside libzmq after ZMQ_LINGER are lost uncounted.
      this.#socket.close();
    })();
    return this.#closing;
  }
}

/**
 * Creates a sink for {@link createLogger}'s `sink` option that pushes lines
 * to `endpoint` (connect, not bind). Throws `M2F_LOG_ENDPOINT` for an
 * endpoint that is not tcp://host:port or ipc://path, or a bad option.
 */
export function createZmqLogSink(
  endpoint: string, options: ZmqLogSinkOptions = {},
): ZmqLogSink {
  return new PushLogSink(endpoint, options);
}
