/**
 * Entry point of a unit's worker thread: loads the app, serves Mongrel2,
 * and writes its counters into the shared slot the controller reads.
 *
 * zeromq.js aborts the whole process when a thread ends with a receive
 * pending, and frames sent zero-copy from a thread that has exited are
 * read after free. So a unit thread only ever ends one way: stop pulling,
 * finish its requests, flush and close its sockets, wait out the linger,
 * then return. An app calling process.exit() is made to take that way too.
 */
import cluster from 'node:cluster';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import type { ActiveRequest } from '../handler/index.js';
import type { FleetConfig } from './config.js';
import { formatAccessLine } from './access-log.js';
import { createLogger } from './log.js';
import { startUnit, survive, type Serving } from './serve.js';
import { UnitSlot } from './unit-slot.js';

/** What the controller passes to a unit thread. */
export interface UnitThreadData {
  config: FleetConfig;
  slot: SharedArrayBuffer;
  /** Index of this unit in its process (0..threads-1). */
  index: number;
  /** This thread's descriptor of each config.sockets entry, in order. */
  socketFds: number[];
}

/** Messages between a unit thread and its controller. */
export type ToController =
  | { t: 'ready'; identity: string }
  | { t: 'log'; line: string }
  | { t: 'stopped'; code: number }
  | Relay;
export type ToUnit = { t: 'stop' } | Relay | Answer;
/** Reply 503 for a request a killed unit was stuck on. */
export type Answer = { t: 'answer'; index: number; sender: string; connId: string };

/**
 * The oldest request as the controller reads it from shared memory:
 * endpoint index, sender and connection id (to answer it if the unit is
 * killed), then "METHOD url" (to log it). Tab-separated.
 */
export function describe(r: ActiveRequest): string {
  return `${r.endpoint}\t${r.sender}\t${r.connId}\t${r.method} ${r.url}`;
}

/** Splits what {@link describe} wrote. */
export function parseDescription(text: string): { answer: Omit<Answer, 't'>; request: string } {
  const [index, sender, connId, ...rest] = text.split('\t');
  return {
    answer: { index: Number(index), sender: sender ?? '', connId: connId ?? '' },
    request: rest.join('\t'),
  };
}
/**
 * A notice or upload piece for a connection another unit holds, or the
 * news that Mongrel2 runs download.flow_control; passed to every unit.
 */
export type Relay = { t: 'relay'; index: number; frame: Uint8Array } | { t: 'flow-on' };

/** PUB linger, and how long a thread waits after closing before it ends. */
const LINGER_MS = 500;

async function main(): Promise<void> {
  const data = workerData as UnitThreadData;
  const port = parentPort!;
  const { config } = data;
  const sink = (line: string): void => port.postMessage({ t: 'log', line } satisfies ToController);
  const log = createLogger({ ...config.log, sink });
  const slot = new UnitSlot(data.slot);
  slot.startedAt = Date.now();
  slot.state = 'starting';
  survive(log);

  let serving: Serving | null = null;
  let stopping: Promise<void> | null = null;
  const stop = (code: number): Promise<void> => {
    stopping ??= (async () => {
      slot.state = 'draining';
      await serving?.stop();
      slot.state = 'stopped';
      // Let libzmq put the last zero-copy frames on the wire while this
      // thread's memory still exists.
      await new Promise((r) => setTimeout(r, LINGER_MS));
      port.postMessage({ t: 'stopped', code } satisfies ToController);
      port.close();
    })();
    return stopping;
  };

  // An app's process.exit() in a thread would end the thread with its
  // receive pending and abort the process: stop cleanly instead, and
  // unwind the caller the way exit() would (it never returns).
  process.exit = ((code?: number) => {
    log.warn({ code }, 'app called process.exit in a unit thread; stopping this unit');
    void stop(typeof code === 'number' ? code : 0);
    throw new Error('process.exit called by the app');
  }) as typeof process.exit;

  // Apps that cluster themselves (`if (cluster.isPrimary) cluster.fork()`)
  // must not multiply. m2fleet's processes are cluster workers, but Node
  // only tells the main thread so; tell the unit threads too.
  Object.assign(cluster, { isPrimary: false, isMaster: false, isWorker: true });
  cluster.fork = (() => {
    throw new Error('cluster.fork() inside m2fleet: use -p and --threads instead');
  }) as typeof cluster.fork;

  port.on('message', (msg: ToUnit) => {
    if (msg.t === 'stop') void stop(0);
    else if (msg.t === 'relay') {
      serving?.unit.deliverRelayed(msg.index,
        Buffer.from(msg.frame.buffer, msg.frame.byteOffset, msg.frame.byteLength));
    } else if (msg.t === 'flow-on') serving?.unit.assumeFlowControl();
    else if (msg.t === 'answer') serving?.unit.answerFor(msg.index, msg.sender, msg.connId);
  });

  // The slot shows the oldest request in flight (harakiri reads it); it is
  // rewritten only when that is another request.
  let shown: ActiveRequest | undefined;
  const showOldest = (): void => {
    const oldest = serving?.unit.oldestRequest();
    if (oldest === shown) return;
    shown = oldest;
    slot.setOldest(oldest?.startedAt ?? 0, oldest ? describe(oldest) : '');
  };
  serving = await startUnit(config, log, data.socketFds, {
    onRequestStart: () => {
      showOldest();
      slot.setCounters(serving!.unit.counters, serving!.unit.inflight);
    },
    onRelay: (index, frame) => {
      port.postMessage({ t: 'relay', index, frame } satisfies ToController);
    },
    onFlowControl: () => port.postMessage({ t: 'flow-on' } satisfies ToController),
    onResponse: (r) => {
      slot.recordDuration(r.durationMs / 1000);
      showOldest();
      slot.setCounters(serving!.unit.counters, serving!.unit.inflight);
      if (config.accessLog) {
        log.info(formatAccessLine({
          method: r.method, path: r.url, status: r.status, bytes: r.bytes,
          durationMs: r.durationMs, unit: serving!.identity, connId: r.connId,
          remote: r.remote, via: r.via,
        }), 'access');
      }
    },
  }, LINGER_MS);
  slot.state = 'ready';
  // Counters that change without a request (malformed messages, refusals
  // on the standard sockets) reach the controller too, within a tick of
  // its once-a-second snapshot.
  const publish = setInterval(() => {
    if (serving) slot.setCounters(serving.unit.counters, serving.unit.inflight);
  }, 250);
  publish.unref();
  port.postMessage({ t: 'ready', identity: serving.identity } satisfies ToController);
  log.debug({ thread: threadId, index: data.index }, 'unit thread ready');
}

main().catch((err: unknown) => {
  const line = JSON.stringify({
    time: new Date().toISOString(), level: 50, pid: process.pid, thread: threadId,
    component: 'unit', msg: 'unit failed to start',
    err: { code: (err as { code?: string }).code, message: (err as Error).message },
  });
  parentPort?.postMessage({ t: 'log', line } satisfies ToController);
  parentPort?.postMessage({ t: 'stopped', code: 1 } satisfies ToController);
  parentPort?.close();
});
