/**
 * A worker process: its main thread is the controller of `threads` unit
 * threads. It starts them, relays their log lines, reports their counters
 * to the master, and watches for harakiri, max-requests and memory. It runs
 * no app code itself, so it stays responsive while units are busy.
 */
import cluster from 'node:cluster';
import { Worker } from 'node:worker_threads';
import type { FleetConfig } from './config.js';
import { createLogger } from './log.js';
import { createSinks } from './log-sinks.js';
import type { ProcessSnapshot } from './snapshot.js';
import { createSlotBuffer, UnitSlot } from './unit-slot.js';
import {
  parseDescription, type Answer, type Relay, type ToController, type ToUnit, type UnitThreadData,
} from './unit-thread.js';

/** Messages from a worker process to the master. */
export type ToMaster =
  | WireRelay
  | { t: 'ready'; units: string[] }
  | { t: 'want-sockets'; threads: number }
  | { t: 'snapshot'; snapshot: ProcessSnapshot }
  | { t: 'recycle'; reason: 'max-requests' | 'reload-on-rss' }
  | { t: 'harakiri'; unit: string; request: string; seconds: number; answer: AnswerTarget }
  | { t: 'log-dropped'; count: number };
/** Messages from the master to a worker process. */
export type ToWorker =
  | { t: 'stop' }
  | WireRelay
  | ({ t: 'answer' } & AnswerTarget)
  /** Comes with a bound socket handle: listener index, for thread `thread`. */
  | { t: 'socket'; listener: number; thread: number };
/** Which request to answer 503 for: endpoint index, sender, connection id. */
export type AnswerTarget = Omit<Answer, 't'>;
/** A unit relay crossing processes (IPC carries text, hence base64). */
export type WireRelay = { t: 'relay'; index: number; frame: string } | { t: 'flow-on' };

function toWire(r: Relay): WireRelay {
  return r.t === 'relay'
    ? { t: 'relay', index: r.index, frame: Buffer.from(r.frame).toString('base64') }
    : r;
}

function fromWire(r: WireRelay): Relay {
  return r.t === 'relay' ? { t: 'relay', index: r.index, frame: Buffer.from(r.frame, 'base64') } : r;
}

interface UnitHandle {
  worker: Worker;
  slot: UnitSlot;
  identity: string;
  thread: number;
  ended: Promise<void>;
}

const TICK_MS = 1000;
/**
 * Young generation of a unit thread's heap, in MiB (V8's default grows it to
 * 48). Request objects die young, so a smaller one costs no throughput,
 * while each scavenge pauses the unit for less time and the process stays
 * smaller (docs/bench.md).
 */
const UNIT_YOUNG_MB = 12;
const MIB = 1024 * 1024;

function send(msg: ToMaster): void {
  if (process.connected) process.send?.(msg);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env['M2FLEET_WORKER_CONFIG'] ?? 'null') as FleetConfig;
  const slotIndex = Number(process.env['M2FLEET_SLOT'] ?? 0);
  const inboxes = JSON.parse(process.env['M2FLEET_INBOXES'] ?? 'null') as string[][] | null;
  const generation = Number(process.env['M2FLEET_GENERATION'] ?? 0);
  const sinks = createSinks(config);
  const log = createLogger({ ...config.log, sink: sinks.write }).child({ component: 'process' });
  const units: UnitHandle[] = [];
  let stopping: Promise<void> | null = null;
  let recycling = false;

  const stopAll = (code: number): Promise<void> => {
    stopping ??= (async () => {
      for (const u of units) u.worker.postMessage({ t: 'stop' } satisfies ToUnit);
      const bound = config.mercyMs + 5000;
      const timer = new Promise<void>((r) => setTimeout(r, bound).unref());
      await Promise.race([Promise.all(units.map((u) => u.ended)), timer]);
      await sinks.close();
      process.exit(code);
    })();
    return stopping;
  };

  // Socket descriptors per thread, as the master sends them. The handles
  // are kept (never closed) for as long as the process lives: each unit
  // thread listens on its descriptor and closes it when it ends, and
  // closing the handle here too would close whatever reused that number.
  const socketFds: number[][] = Array.from({ length: config.threads }, () => []);
  const heldHandles: unknown[] = [];
  let socketsArrived: () => void = () => undefined;
  const allSockets = new Promise<void>((r) => { socketsArrived = r; });
  let socketCount = 0;
  const onSocket = (msg: { listener: number; thread: number }, handle: { fd?: number } | undefined): void => {
    if (!handle || typeof handle.fd !== 'number' || !socketFds[msg.thread]) return;
    heldHandles.push(handle);
    socketFds[msg.thread]![msg.listener] = handle.fd;
    if (++socketCount === config.sockets.length * config.threads) socketsArrived();
  };

  const startThread = (index: number): Promise<UnitHandle> => new Promise((resolve, reject) => {
    const buffer = createSlotBuffer();
    // The master holds the Mongrel2-facing PULLs and forwards to these.
    const pulls = inboxes?.[index];
    const unitConfig: FleetConfig = pulls ? {
      ...config, zeromq: config.zeromq.map((e, i) => ({ ...e, pullSpec: pulls[i]! })),
    } : config;
    const data: UnitThreadData = {
      config: unitConfig, slot: buffer, index, socketFds: socketFds[index] ?? [],
    };
    const worker = new Worker(new URL('./unit-thread.js', import.meta.url), {
      workerData: data, resourceLimits: { maxYoungGenerationSizeMb: UNIT_YOUNG_MB },
    });
    const handle: UnitHandle = {
      worker, slot: new UnitSlot(buffer), identity: '', thread: worker.threadId,
      ended: new Promise((r) => worker.once('exit', () => r())),
    };
    worker.on('message', (msg: ToController) => {
      if (msg.t === 'log') sinks.write(msg.line);
      else if (msg.t === 'relay' || msg.t === 'flow-on') {
        // To this process's other units, and through the master to the rest:
        // even with -p 1, where during a reload the rest is the process
        // being replaced, whose downloads still need their credits.
        for (const u of units) if (u.worker !== worker) u.worker.postMessage(msg);
        send(toWire(msg));
      }
      else if (msg.t === 'ready') {
        handle.identity = msg.identity;
        resolve(handle);
      }
    });
    worker.on('error', (err) => log.error({ err, thread: handle.thread }, 'unit thread error'));
    worker.once('exit', (code) => {
      reject(new Error(`unit thread ended before it was ready (exit ${code})`));
      if (stopping || handle.identity === '') return;
      // A unit that ended on its own (an app calling process.exit, a
      // failure) leaves the process short: replace the whole process.
      log.error({ thread: handle.thread, code }, 'unit thread ended; restarting the process');
      void stopAll(1);
    });
  });

  process.on('message', (msg: ToWorker, handle?: { fd?: number }) => {
    if (msg.t === 'stop') void stopAll(0);
    else if (msg.t === 'socket') onSocket(msg, handle);
    else if (msg.t === 'answer') units[0]?.worker.postMessage(msg satisfies ToUnit);
    else {
      const relay = fromWire(msg);
      for (const u of units) u.worker.postMessage(relay satisfies ToUnit);
    }
  });
  // The master coordinates stops; a terminal's Ctrl-C reaches the whole
  // process group, so workers ignore it and wait for the master's word.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => void stopAll(0));
  // Node's cluster makes a worker whose master vanished call process.exit
  // at once, which would end unit threads with their receives pending and
  // abort the process (zeromq.js). Marking the disconnect as expected
  // keeps Node out of it, so the units drain and close first.
  if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
  process.on('disconnect', () => {
    log.warn({}, 'master gone; stopping');
    void stopAll(0);
  });

  try {
    if (config.sockets.length > 0) {
      send({ t: 'want-sockets', threads: config.threads });
      const late = new Promise<never>((_, reject) => setTimeout(
        () => reject(new Error('the master sent no socket descriptors')), 10_000).unref());
      await Promise.race([allSockets, late]);
    }
    for (let i = 0; i < config.threads; i++) units.push(await startThread(i));
  } catch (err) {
    log.error({ err }, 'cannot start units');
    await stopAll(1);
    return;
  }
  send({ t: 'ready', units: units.map((u) => u.identity) });

  const snapshot = (): ProcessSnapshot => ({
    pid: process.pid, slot: slotIndex, generation,
    rssBytes: process.memoryUsage.rss(),
    units: units.map((u) => u.slot.snapshot(u.identity, process.pid, u.thread)),
  });

  const tick = setInterval(() => {
    if (stopping) return;
    const snap = snapshot();
    send({ t: 'snapshot', snapshot: snap });
    if (sinks.dropped() > 0) send({ t: 'log-dropped', count: sinks.takeDropped() });
    for (const u of units) {
      const oldest = u.slot.oldestStartedAt;
      const seconds = oldest > 0 ? (Date.now() - oldest) / 1000 : 0;
      if (config.harakiriMs > 0 && oldest > 0 && Date.now() - oldest > config.harakiriMs) {
        const { request, answer } = parseDescription(u.slot.oldestDescription);
        log.error({ unit: u.identity, request, seconds: Math.round(seconds) },
          'harakiri: unit stuck on one request; replacing the process');
        send({ t: 'harakiri', unit: u.identity, request, seconds, answer });
        // The stuck thread cannot close its sockets, and exiting with its
        // receive pending would abort: end the process outright.
        setTimeout(() => process.kill(process.pid, 'SIGKILL'), 100);
        clearInterval(tick);
        return;
      }
    }
    if (recycling) return;
    const requests = snap.units.reduce((n, u) => n + u.requests, 0);
    if (config.maxRequests > 0 && requests >= config.maxRequests) {
      recycling = true;
      log.info({ requests }, 'max-requests reached; asking for a replacement');
      send({ t: 'recycle', reason: 'max-requests' });
    } else if (config.reloadOnRssMb > 0 && snap.rssBytes > config.reloadOnRssMb * MIB) {
      recycling = true;
      log.info({ rssMiB: Math.round(snap.rssBytes / MIB) }, 'reload-on-rss reached; asking for a replacement');
      send({ t: 'recycle', reason: 'reload-on-rss' });
    }
  }, TICK_MS);
}

void main();
