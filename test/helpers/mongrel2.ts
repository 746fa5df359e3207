/**
 * Runs a real Mongrel2 for integration tests. Each instance gets its own
 * temp dir (chroot), its own free HTTP port and its own handler endpoints,
 * and `stop()` ends the process it spawned (by pid) and removes the dir.
 *
 * Layout of the dir (Mongrel2 chroots into it when run as root, so the
 * config names paths from inside it: `/run/...`, `/logs/...`, `/tmp/...`):
 *
 *   <dir>/m2.conf  config.sqlite  run/mongrel2.pid  logs/error.log
 *   <dir>/logs/access.log  tmp/upload.XXXXXX (upload.temp_store)
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderMongrel2Config } from '../../scripts/mongrel2-conf.mjs';
import { startWatchdog } from './watchdog.ts';
import { freePorts, waitForPort } from './ports.js';

/** Where the Debian package mongrel2-core puts the server. */
export const MONGREL2_BIN = '/usr/bin/mongrel2';
/** Where the Debian package mongrel2-core puts the config tool. */
export const M2SH_BIN = '/usr/bin/m2sh';

/** Settings and limits of one test Mongrel2. */
export interface Mongrel2Options {
  /** Setting limits.content_length: larger bodies go through temp files. Default 20480. */
  contentLength?: number;
  /** Setting upload.stream (0 or 1). Default 0. */
  uploadStream?: 0 | 1;
  /** Setting download.flow_control (0 or 1). Default 0. */
  flowControl?: 0 | 1;
  /** Setting limits.min_ping in seconds (idle killer); unset = Mongrel2's 120. */
  minPing?: number;
  /** Setting limits.tick_timer in seconds; unset = Mongrel2's 10. */
  tickTimer?: number;
  /** More settings, written last (they win over the ones above). */
  settings?: Record<string, string | number>;
  /** Also route '/' to the JSON handler. Default true. */
  rootRoute?: boolean;
  /** How long to wait for the HTTP port, in ms. Default 10000. */
  startTimeoutMs?: number;
}

/** One Handler entry of the test config, as a handler connects to it. */
export interface Mongrel2HandlerInfo {
  /** Wire: send_spec; Mongrel2 PUSHes requests here (connect a Pull). */
  sendSpec: string;
  /** Wire: recv_spec; Mongrel2 SUBscribes here (connect a Publisher). */
  recvSpec: string;
  /** Wire: send_ident; the first token of every request. */
  sendIdent: string;
  /** Wire: recv_ident; equal to sendIdent (replies must start with it). */
  recvIdent: string;
  protocol: 'json' | 'tnetstring';
}

/** A running Mongrel2 owned by one test. */
export interface Mongrel2Instance {
  /** Absolute path of the temp working dir (the chroot). */
  dir: string;
  /** Pid of the spawned mongrel2 process. */
  pid: number;
  /** The server uuid given to `mongrel2 config.sqlite <uuid>`. */
  serverUuid: string;
  /** HTTP port on 127.0.0.1. */
  httpPort: number;
  /** Route '/json/' (and '/' unless rootRoute is false) and route '/tnet/'. */
  handlers: { json: Mongrel2HandlerInfo; tnet: Mongrel2HandlerInfo };
  /** Host path of <dir>/tmp, where upload.temp_store files appear. */
  uploadDir: string;
  /** Returns `http://127.0.0.1:<httpPort><path>`. */
  url(path: string): string;
  /** Text of logs/error.log ('' when missing). */
  errorLog(): string;
  /**
   * Stops Mongrel2 and starts it again on the same ports and config (its
   * handlers reconnect on their own); `pid` changes.
   */
  restart(): Promise<void>;
  /** SIGTERM, wait (5 s), SIGKILL if needed, then remove dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Throws a clear error when Mongrel2 is not installed. Tests call it first;
 * `bash scripts/setup.sh` installs the Debian package mongrel2-core.
 */
export function ensureMongrel2(): void {
  const missing = [MONGREL2_BIN, M2SH_BIN].filter((bin) => !existsSync(bin));
  if (missing.length > 0) {
    throw new Error(`Mongrel2 is not installed (missing ${missing.join(', ')}); run: bash scripts/setup.sh (apt-get install mongrel2-core)`);
  }
}

/**
 * Starts Mongrel2 on a free 127.0.0.1 port with a JSON and a tnetstring
 * handler. Resolves once the HTTP port accepts TCP. Throws (after cleaning
 * up) if m2sh fails or the port does not open in time; the message carries
 * the tail of logs/error.log.
 */
export async function startMongrel2(opts: Mongrel2Options = {}): Promise<Mongrel2Instance> {
  ensureMongrel2();
  const dir = await mkdtemp(join(tmpdir(), 'm2fleet-m2-'));
  for (const sub of ['run', 'logs', 'tmp']) mkdirSync(join(dir, sub));
  let child: ChildProcess | undefined;
  let disarm: (() => void) | undefined;

  try {
    const [httpPort, ...zmqPorts] = await freePorts(5);
    const handlers = {
      json: makeHandler('json', zmqPorts[0]!, zmqPorts[1]!),
      tnet: makeHandler('tnetstring', zmqPorts[2]!, zmqPorts[3]!),
    };
    const serverUuid = randomUUID();
    await writeConfig(dir, serverUuid, httpPort!, handlers, opts);
    await runM2sh(dir);

    child = spawnMongrel2(dir, serverUuid);
    disarm = startWatchdog(child.pid ?? 0, dir);
    await waitForHttpPort(httpPort!, child, opts.startTimeoutMs ?? 10_000, () =>
      `${tail(readErrorLog(dir))}\n--- mongrel2 stdout/stderr ---\n${tail(readLog(dir, 'stdio.log'))}`);
    return makeInstance(dir, child, serverUuid, httpPort!, handlers, disarm);
  } catch (err) {
    disarm?.();
    if (child) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Builds one handler's endpoints and a fresh ident. */
function makeHandler(protocol: 'json' | 'tnetstring', sendPort: number, recvPort: number): Mongrel2HandlerInfo {
  // A distinct ident per handler and per instance, with recv_ident equal to
  // it: replies then only reach the Mongrel2 whose ident they echo, which is
  // the clustering rule (protocol §6.4) and catches handlers that reply
  // with the wrong sender. No ident is a prefix of another (random hex).
  const sendIdent = `m2t-${protocol === 'json' ? 'json' : 'tnet'}-${randomBytes(8).toString('hex')}`;
  return {
    sendSpec: `tcp://127.0.0.1:${sendPort}`,
    recvSpec: `tcp://127.0.0.1:${recvPort}`,
    sendIdent,
    recvIdent: sendIdent,
    protocol,
  };
}

/** Writes <dir>/m2.conf. */
async function writeConfig(
  dir: string, uuid: string, port: number,
  handlers: Mongrel2Instance['handlers'], opts: Mongrel2Options,
): Promise<void> {
  const routes = [
    { path: '/json/', handler: handlers.json },
    { path: '/tnet/', handler: handlers.tnet },
  ];
  if (opts.rootRoute ?? true) routes.push({ path: '/', handler: handlers.json });

  const settings: Record<string, string | number> = {
    'server.daemonize': 0,
    'zeromq.threads': 1,
    'limits.content_length': opts.contentLength ?? 20480,
    'upload.temp_store': '/tmp/upload.XXXXXX',
    'upload.stream': opts.uploadStream ?? 0,
    'download.flow_control': opts.flowControl ?? 0,
  };
  if (opts.minPing !== undefined) settings['limits.min_ping'] = opts.minPing;
  if (opts.tickTimer !== undefined) settings['limits.tick_timer'] = opts.tickTimer;
  Object.assign(settings, opts.settings);

  const text = renderMongrel2Config({ uuid, port, routes, settings });
  await writeFile(join(dir, 'm2.conf'), text);
}

/** Runs `m2sh load -config m2.conf -db config.sqlite` in dir (10 s bound). */
function runM2sh(dir: string): Promise<void> {
  const args = ['load', '-config', 'm2.conf', '-db', 'config.sqlite'];
  return new Promise((resolve, reject) => {
    const env = { ...process.env, LOGNAME: process.env.LOGNAME ?? 'm2fleet-test' };
    execFile(M2SH_BIN, args, { cwd: dir, env, timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`m2sh load failed in ${dir}: ${err.message}\n${stdout}${stderr}`));
      else resolve();
    });
  });
}

/**
 * Spawns `mongrel2 config.sqlite <uuid>` in dir. Its stdout and stderr go
 * to logs/stdio.log (Mongrel2 prints its startup lines there before it
 * reopens logs/error.log), and both it and its watchdog are unref'd so a
 * forgotten stop() cannot hang the test process.
 */
function spawnMongrel2(dir: string, uuid: string): ChildProcess {
  // Mongrel2 logs an error when it cannot find a login name; give it one.
  const env = { ...process.env, LOGNAME: process.env.LOGNAME ?? 'm2fleet-test' };
  const out = openSync(join(dir, 'logs', 'stdio.log'), 'a');
  try {
    const child = spawn(MONGREL2_BIN, ['config.sqlite', uuid], {
      cwd: dir, env, stdio: ['ignore', out, out],
    });
    child.on('error', () => { /* seen as an early exit by waitForHttpPort */ });
    child.unref();
    return child;
  } finally {
    closeSync(out);
  }
}


/**
 * Resolves when Mongrel2's HTTP port accepts TCP. The error says whether
 * it exited (with its code and signal) or timed out, and carries its logs.
 */
async function waitForHttpPort(
  port: number, child: ChildProcess, timeoutMs: number, diagnostics: () => string,
): Promise<void> {
  try {
    await waitForPort(port, timeoutMs, () => isRunning(child));
  } catch (err) {
    const how = isRunning(child) ? '' : ` (code ${child.exitCode}, signal ${child.signalCode})`;
    throw new Error(`mongrel2 ${(err as Error).message}${how}\n${diagnostics()}`);
  }
}

/** Sends SIGTERM, waits up to 5 s, then SIGKILL and waits up to 2 s more. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  const exited = waitForExit(child);
  if (isRunning(child)) child.kill('SIGTERM');
  if (await raceTimeout(exited, 5000)) return;
  if (isRunning(child)) child.kill('SIGKILL');
  if (!(await raceTimeout(exited, 2000))) {
    throw new Error(`mongrel2 pid ${child.pid} did not exit after SIGKILL`);
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Resolves true if `promise` settles within ms, false otherwise. */
async function raceTimeout(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function makeInstance(
  dir: string, child: ChildProcess, serverUuid: string, httpPort: number,
  handlers: Mongrel2Instance['handlers'], disarm: () => void,
): Mongrel2Instance {
  let stopping: Promise<void> | undefined;
  const instance: Mongrel2Instance = {
    dir,
    pid: child.pid!,
    serverUuid,
    httpPort,
    handlers,
    uploadDir: join(dir, 'tmp'),
    url: (path) => `http://127.0.0.1:${httpPort}${path}`,
    errorLog: () => readErrorLog(dir),
    restart: async () => {
      if (stopping) throw new Error('mongrel2 restart after stop');
      disarm();
      await stopChild(child);
      child = spawnMongrel2(dir, serverUuid);
      disarm = startWatchdog(child.pid ?? 0, dir);
      instance.pid = child.pid!;
      await waitForHttpPort(httpPort, child, 10_000, () => tail(readErrorLog(dir)));
    },
    stop: () => {
      stopping ??= (async () => {
        disarm();
        try {
          await stopChild(child);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      })();
      return stopping;
    },
  };
  return instance;
}

function readErrorLog(dir: string): string {
  return readLog(dir, 'error.log');
}

/** Text of <dir>/logs/<name>, or '' when missing. */
function readLog(dir: string, name: string): string {
  try {
    return readFileSync(join(dir, 'logs', name), 'utf8');
  } catch {
    return '';
  }
}

/** The last 40 lines of a text. */
function tail(text: string): string {
  return text.split('\n').slice(-40).join('\n');
}

/** `--zeromq SEND,RECV` flags for m2fleet, one pair per handler named. */
export function zeromqArgs(
  m2: Mongrel2Instance, ...which: ('json' | 'tnet')[]
): string[] {
  return (which.length > 0 ? which : ['json', 'tnet'] as const).flatMap((name) => {
    const h = m2.handlers[name];
    return ['--zeromq', `${h.sendSpec},${h.recvSpec}`];
  });
}
