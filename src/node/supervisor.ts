/**
 * The master: keeps `processes` worker processes alive, each with
 * `threads` units. It restarts a crashed process with exponential backoff,
 * replaces processes gracefully (new one ready before the old one drains)
 * on SIGHUP, max-requests and reload-on-rss, and stops the fleet on
 * SIGTERM/SIGINT. It loads no app code itself.
 */
import cluster, { type Worker } from 'node:cluster';
import { rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Logger } from '../handler/types.js';
import type { FleetConfig } from './config.js';
import { Inbox } from './inbox.js';
import { bindSockets, closeSockets } from './listen-sockets.js';
import type { FleetSnapshot, ProcessSnapshot, RestartReason } from './snapshot.js';
import type { AnswerTarget, ToMaster, ToWorker } from './worker-process.js';

/** Lifecycle of one process slot. */
type SlotState = 'starting' | 'ready' | 'backoff' | 'stopped';

interface Slot {
  index: number;
  state: SlotState;
  worker: Worker | null;
  /** A replacement being started; it takes over once ready. */
  successor: Worker | null;
  generation: number;
  backoffMs: number;
  startedAt: number;
  /** The slot has served at least once (later exits are crashes). */
  everReady: boolean;
  /** Generation whose inbox addresses the slot's current process binds. */
  addressGeneration: number;
  inboxes: string[][];
  snapshot: ProcessSnapshot | null;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 30_000;
/** A process that lived this long resets its slot's backoff. */
const STABLE_MS = 30_000;

/** The running master. */
export interface Master {
  snapshot(): FleetSnapshot;
  /** Resolves once every unit of the first generation is ready. */
  ready: Promise<void>;
  reload(): void;
  /**
   * Rolls the fleet onto a new configuration (cluster mode): every process
   * is replaced gracefully, and slots are added or retired to match the
   * new process count.
   */
  reconfigure(next: FleetConfig): void;
  stop(): Promise<void>;
}

/** Starts the fleet; `entry` is the worker process script. */
export function startMaster(
  initial: FleetConfig, log: Logger, entry: URL, onStartFailure: () => void,
): Master {
  let config = initial;
  const slots: Slot[] = [];
  const restarts: Partial<Record<RestartReason, number>> = {};
  const startedAt = Date.now();
  let logDropped = 0;
  let stopping: Promise<void> | null = null;
  let announceReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => { announceReady = r; });

  // Standard sockets are bound once, here, before any process starts: a
  // port in use stops m2fleet at once with the address named.
  const sockets = bindSockets(initial.sockets, initial.chmodSocket, log.child({ component: 'sockets' }));
  cluster.setupPrimary({ exec: entry.pathname, silent: false });

  const count = (reason: RestartReason): void => {
    restarts[reason] = (restarts[reason] ?? 0) + 1;
  };

  const inbox = new Inbox(log.child({ component: 'inbox' }));
  const draining = new Set<Worker>();
  const generations = new WeakMap<Worker, { generation: number; threads: number }>();
  const sendSpecs = (): string[] => config.zeromq.map((e) => e.sendSpec);

  const fork = (slot: Slot, reason: RestartReason | null): Worker => {
    slot.generation++;
    // A crashed process's replacement binds the same addresses, so the
    // messages the master had queued for the dead one reach it instead;
    // a replacement that overlaps a live process (reload) gets new ones.
    if (reason !== 'crash' || slot.addressGeneration === 0) {
      slot.addressGeneration = slot.generation;
      slot.inboxes = inbox.open(slot.index, slot.generation, config.threads, sendSpecs());
    }
    const inboxes = slot.inboxes;
    const worker = cluster.fork({
      M2FLEET_WORKER_CONFIG: JSON.stringify(config),
      M2FLEET_INBOXES: JSON.stringify(inboxes),
      M2FLEET_SLOT: String(slot.index),
      M2FLEET_GENERATION: String(slot.generation),
    });
    generations.set(worker, { generation: slot.addressGeneration, threads: config.threads });
    const pid = worker.process.pid;
    log.info({ slot: slot.index, workerPid: pid, generation: slot.generation, reason }, 'process starting');
    worker.on('message', (msg: ToMaster) => onMessage(slot, worker, msg));
    // A send to a process that is just exiting fails with EPIPE; that is
    // an expected race, not a reason for the master to die.
    const onError = (err: Error): void => {
      log.debug({ workerPid: worker.process.pid, err: err.message }, 'ipc error');
    };
    worker.on('error', onError);
    worker.process.on('error', onError);
    worker.once('exit', (code, signal) => onExit(slot, worker, code, signal));
    return worker;
  };

  const onMessage = (slot: Slot, worker: Worker, msg: ToMaster): void => {
    switch (msg.t) {
      case 'relay':
      case 'flow-on':
        // Draining processes too: their last responses still need credits.
        for (const w of [...slots.flatMap((s) => [s.worker, s.successor]), ...draining]) {
          if (w && w !== worker && w.isConnected()) w.send(msg satisfies ToWorker);
        }
        return;
      case 'ready':
        onReady(slot, worker, msg.units);
        return;
      case 'want-sockets':
        // One duplicate per unit thread (each IPC send makes a new
        // descriptor in the process), so a thread that ends closes only
        // its own.
        for (let thread = 0; thread < msg.threads; thread++) {
          sockets.forEach((b, listener) => {
            const message: ToWorker = { t: 'socket', listener, thread };
            if (worker.isConnected()) worker.send(message, b.handle as unknown as Server);
          });
        }
        return;
      case 'snapshot':
        if (worker === slot.worker) slot.snapshot = msg.snapshot;
        return;
      case 'recycle':
        if (worker === slot.worker) replace(slot, msg.reason);
        return;
      case 'harakiri':
        count('harakiri');
        log.error({ slot: slot.index, workerPid: worker.process.pid, unit: msg.unit,
          request: msg.request, seconds: Math.round(msg.seconds) }, 'harakiri');
        // The stuck request's client gets a 503 from another process (or
        // from the replacement, once it is ready) instead of waiting.
        answers.push(msg.answer);
        deliverAnswers(worker);
        return;
      case 'log-dropped':
        logDropped += msg.count;
    }
  };

  const answers: AnswerTarget[] = [];
  const deliverAnswers = (dying?: Worker): void => {
    const live = slots.map((s) => s.worker).find((w) => w && w !== dying && w.isConnected()
      && slots.some((s) => s.worker === w && s.state === 'ready'));
    if (!live) return;
    for (const a of answers.splice(0)) live.send({ t: 'answer', ...a } satisfies ToWorker);
  };

  const onReady = (slot: Slot, worker: Worker, units: string[]): void => {
    log.info({ slot: slot.index, workerPid: worker.process.pid, units }, 'process ready');
    // From now on this process gets the slot's requests; the lanes send the
    // previous one a drain marker after its last message.
    const gen = generations.get(worker);
    if (gen && (worker === slot.worker || worker === slot.successor)) {
      inbox.activate(slot.index, gen.generation, gen.threads, sendSpecs());
      void inbox.drain(slot.index, gen.threads);
    }
    if (worker === slot.successor) {
      const old = slot.worker;
      slot.worker = worker;
      slot.successor = null;
      slot.snapshot = null;
      // The new process serves; the old one stops taking work and drains.
      if (old && old.isConnected()) {
        draining.add(old);
        old.once('exit', () => draining.delete(old));
        old.send({ t: 'stop' } satisfies ToWorker);
      }
    }
    if (worker !== slot.worker) return;
    slot.state = 'ready';
    slot.everReady = true;
    slot.startedAt = Date.now();
    deliverAnswers();
    if (slots.every((s) => s.state === 'ready')) {
      announceReady();
    }
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    const pid = worker.process.pid;
    const gen = generations.get(worker);
    // Addresses a live or coming process still uses are kept.
    if (gen && gen.generation !== slot.addressGeneration) inbox.release(slot.index, gen.generation);
    if (worker === slot.successor) {
      slot.successor = null;
      const current = slot.worker ? generations.get(slot.worker) : undefined;
      if (current) {
        inbox.release(slot.index, slot.addressGeneration);
        slot.addressGeneration = current.generation;
      }
      log.error({ slot: slot.index, workerPid: pid, code, signal }, 'replacement failed to start; old process kept');
      return;
    }
    if (worker !== slot.worker) {
      log.info({ slot: slot.index, workerPid: pid, code }, 'old process drained and exited');
      return;
    }
    slot.worker = null;
    slot.snapshot = null;
    if (stopping) {
      slot.state = 'stopped';
      return;
    }
    if (!slot.everReady) {
      // The first start failed (the app does not load, say): restarting
      // would only repeat that. Stop the fleet and say so.
      log.error({ slot: slot.index, workerPid: pid, code, signal },
        'cannot start: a process failed before it was ready');
      onStartFailure();
      return;
    }
    count('crash');
    if (Date.now() - slot.startedAt > STABLE_MS) slot.backoffMs = 0;
    slot.backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, slot.backoffMs * 2));
    slot.state = 'backoff';
    log.warn({ slot: slot.index, workerPid: pid, code, signal, restartInMs: slot.backoffMs },
      'process exited; restarting');
    setTimeout(() => {
      if (stopping || slot.worker) return;
      slot.state = 'starting';
      slot.worker = fork(slot, 'crash');
    }, slot.backoffMs);
  };

  const replace = (slot: Slot, reason: RestartReason): void => {
    if (stopping || slot.successor || !slot.worker) return;
    count(reason);
    log.info({ slot: slot.index, workerPid: slot.worker.process.pid, reason }, 'replacing process');
    slot.successor = fork(slot, reason);
  };

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const all = slots.flatMap((s) => [s.worker, s.successor]).filter((w): w is Worker => !!w);
      log.info({ processes: all.length }, 'stopping: draining requests');
      const exits = all.map((w) => new Promise<void>((r) => {
        if (w.isDead()) r();
        else w.once('exit', () => r());
      }));
      // The master's copy of each standard socket goes first: once the
      // units stop accepting, the kernel refuses new connections (a web
      // server in front moves to its next upstream) instead of queueing
      // them for nobody.
      closeSockets(sockets);
      // Stop reading from Mongrel2 first; every unit then gets its marker.
      await inbox.drain();
      for (const w of all) if (w.isConnected()) w.send({ t: 'stop' } satisfies ToWorker);
      const bound = config.mercyMs + 10_000;
      await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, bound).unref())]);
      for (const w of all) if (!w.isDead()) w.process.kill('SIGKILL');
      inbox.close();
      closeSockets(sockets);
      if (config.pidfile) rmSync(config.pidfile, { force: true });
      log.info({}, 'stopped');
    })();
    return stopping;
  };

  // A slot of the first start that fails stops the fleet; one added later
  // (a bigger adopted config) is restarted like any crashed process.
  const addSlot = (first: boolean): void => {
    const slot: Slot = {
      index: slots.length, state: 'starting', worker: null, successor: null,
      generation: 0, backoffMs: 0, startedAt: Date.now(), snapshot: null, everReady: !first,
      addressGeneration: 0, inboxes: [],
    };
    slots.push(slot);
    slot.worker = fork(slot, null);
  };
  for (let i = 0; i < config.processes; i++) addSlot(true);
  if (config.pidfile) writeFileSync(config.pidfile, `${process.pid}\n`);

  return {
    ready,
    stop,
    reload: () => {
      log.info({}, 'reload: replacing every process');
      for (const slot of slots) replace(slot, 'reload');
    },
    reconfigure: (next) => {
      config = next;
      log.info({ processes: next.processes, threads: next.threads }, 'reconfigure: rolling');
      while (slots.length > next.processes) {
        const slot = slots.pop()!;
        slot.state = 'stopped';
        void inbox.drain(slot.index);
        // Retired slots drain like replaced processes do.
        for (const w of [slot.worker, slot.successor]) {
          if (w?.isConnected()) w.send({ t: 'stop' } satisfies ToWorker);
        }
        slot.worker = null;
        slot.successor = null;
      }
      for (const slot of slots) replace(slot, 'reload');
      while (slots.length < next.processes) addSlot(false);
    },
    snapshot: () => ({
      masterPid: process.pid,
      startedAt,
      desiredUnits: config.processes * config.threads,
      processes: slots.flatMap((s) => (s.snapshot ? [s.snapshot] : [])),
      restarts: { ...restarts },
      logDropped,
    }),
  };
}
