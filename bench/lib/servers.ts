/**
 * The servers a bench run drives over HTTP, each started on 127.0.0.1 with
 * free ports and stopped by pid: m2fleet behind Mongrel2, Mongrel2 serving
 * files (its ceiling), the Python reference handler behind Mongrel2,
 * nginx + uWSGI, and node:http serving the same Node app (the Node ceiling).
 */
import { copyFileSync, cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, removeTempDir, spawnTracked, stopTracked, unwatchPids, watchPids, type Tracked } from './children.ts';
import { startMongrel2, type BenchMongrel2 } from './mongrel2.ts';
import { freePorts, waitForPort } from '../../test/helpers/ports.ts';
import { processTree } from './proc.ts';

export const PYTHON_BIN = '/usr/bin/python3';
export const NGINX_BIN = '/usr/sbin/nginx';
export const UWSGI_BIN = '/usr/bin/uwsgi';
export const UWSGI_PLUGINS = '/usr/lib/uwsgi/plugins';

/** Paths the bench uses, from the repository root. */
export interface BenchPaths {
  root: string;
  cli: string;
  apps: string;
  /** Extra node flags for m2fleet (e.g. --cpu-prof); workers inherit them. */
  nodeArgs?: string[];
}

/**
 * Copies the built m2fleet (dist/ and package.json, with node_modules
 * linked) into `into` and returns its CLI path, so that a rebuild of the
 * work tree during a long run cannot change what is measured.
 */
export function snapshotBuild(root: string, into: string): string {
  cpSync(join(root, 'dist'), join(into, 'dist'), { recursive: true });
  copyFileSync(join(root, 'package.json'), join(into, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(into, 'node_modules'));
  return join(into, 'dist', 'node', 'cli.js');
}

/** A server that answers HTTP on 127.0.0.1:port. */
export interface RunningServer {
  port: number;
  /** Pids of the processes serving (for RSS), root first. */
  pids(): number[];
  stop(): Promise<void>;
}

/** The files Mongrel2's Dir handler serves in the static setup. */
export function staticFiles(): Record<string, Buffer> {
  return {
    'hello.txt': Buffer.from('hello world\n'),
    '1mb.bin': Buffer.alloc(1024 * 1024, 'x'),
  };
}

/** Waits until a process prints a line matching `match` (bounded). */
export function waitForOutput(t: Tracked, match: (line: string) => boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => finish(new Error(`${t.name}: not ready in ${timeoutMs} ms\n${t.output().slice(-2000)}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      const hit = lines.find(match);
      if (hit !== undefined) finish(null, hit);
    };
    const onExit = (): void => finish(new Error(`${t.name} exited before ready:\n${t.output().slice(-2000)}`));
    const finish = (err: Error | null, line = ''): void => {
      clearTimeout(timer);
      t.child.stdout?.off('data', onData);
      t.child.stderr?.off('data', onData);
      t.child.off('exit', onExit);
      if (err) reject(err);
      else resolve(line);
    };
    t.child.stdout?.on('data', onData);
    t.child.stderr?.on('data', onData);
    t.child.once('exit', onExit);
  });
}

/** m2fleet process options. */
export interface FleetFlags {
  processes: number;
  threads: number;
}

/** How the Mongrel2 in front of a fleet is set up. */
export interface FrontOptions {
  /** Setting download.flow_control=1 (m2fleet then uses credits, no pacing). */
  flowControl?: boolean;
}

/** A started m2fleet CLI and when it became ready. */
export interface StartedFleet {
  process: Tracked;
  /** ms from spawn to the master's `ready` line. */
  readyMs: number;
  /** ms from each worker's `process starting` to its `process ready` (master log). */
  processReadyMs: number[];
}

/** Reads per-process ready times from the master's JSON log lines. */
export function processReadyTimes(logText: string): number[] {
  const started = new Map<number, number>();
  const out: number[] = [];
  for (const line of logText.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { msg?: string; workerPid?: number; time?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    if (rec.workerPid === undefined || rec.time === undefined) continue;
    const at = Date.parse(rec.time);
    if (rec.msg === 'process starting') started.set(rec.workerPid, at);
    if (rec.msg === 'process ready' && started.has(rec.workerPid)) {
      out.push(at - started.get(rec.workerPid)!);
    }
  }
  return out;
}

/**
 * Starts `m2fleet --zeromq SEND,RECV --module APP -p N --threads N` and
 * waits for its `ready` line. `pinCpu` runs it under `taskset -c CPU`.
 */
export async function startFleet(
  paths: BenchPaths, sendSpec: string, recvSpec: string, app: string, flags: FleetFlags,
  pinCpu?: number,
): Promise<StartedFleet> {
  const args = [...(paths.nodeArgs ?? []), paths.cli, '--zeromq', `${sendSpec},${recvSpec}`, '--module', join(paths.apps, app),
    '-p', String(flags.processes), '--threads', String(flags.threads)];
  const [command, fullArgs] = pinCpu === undefined
    ? [process.execPath, args]
    : ['/usr/bin/taskset', ['-c', String(pinCpu), process.execPath, ...args]];
  const started = performance.now();
  const proc = spawnTracked(`m2fleet ${app}`, command, fullArgs, { cwd: paths.root });
  try {
    await waitForOutput(proc, (line) => line.includes('"msg":"ready"'), 30_000);
  } catch (err) {
    await stopTracked(proc);
    throw err;
  }
  const readyMs = performance.now() - started;
  watchPids(processTree(proc.pid).slice(1));
  return { process: proc, readyMs, processReadyMs: processReadyTimes(proc.output()) };
}

/** Stops a tracked process tree root and forgets its descendants. */
export async function stopTree(t: Tracked): Promise<void> {
  const pids = processTree(t.pid).slice(1);
  await stopTracked(t, 'SIGTERM', 10_000);
  // Workers drain after their master; give them a moment, then tell the
  // watchdog they are gone (it must never kill a reused pid).
  for (let i = 0; i < 50 && pids.some((p) => processTree(p).length > 0); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  unwatchPids(pids.filter((p) => processTree(p).length === 0));
}

/** m2fleet behind its own Mongrel2. */
export async function startM2fleetServer(
  paths: BenchPaths, app: string, flags: FleetFlags, front: FrontOptions = {},
): Promise<RunningServer> {
  const [port, sendPort, recvPort] = await freePorts(3);
  const m2 = await startMongrel2(port!, {
    kind: 'handler', sendPort: sendPort!, recvPort: recvPort!, flowControl: front.flowControl ?? false,
  });
  let fleet: StartedFleet;
  try {
    fleet = await startFleet(paths, m2.handler!.sendSpec, m2.handler!.recvSpec, app, flags);
  } catch (err) {
    await m2.stop();
    throw err;
  }
  return {
    port: port!,
    pids: () => processTree(fleet.process.pid),
    stop: async () => {
      await stopTree(fleet.process);
      await m2.stop();
    },
  };
}

/** Mongrel2 serving hello.txt and 1mb.bin itself (Dir handler). */
export async function startStaticServer(): Promise<RunningServer> {
  const [port] = await freePorts(1);
  const m2: BenchMongrel2 = await startMongrel2(port!, { kind: 'dir', files: staticFiles() });
  return { port: port!, pids: () => [m2.pid], stop: () => m2.stop() };
}

/** bench/python-handler.py behind its own Mongrel2. */
export async function startPythonServer(paths: BenchPaths): Promise<RunningServer> {
  const [port, sendPort, recvPort] = await freePorts(3);
  const m2 = await startMongrel2(port!, { kind: 'handler', sendPort: sendPort!, recvPort: recvPort! });
  const py = spawnTracked('python-handler', PYTHON_BIN,
    [join(paths.root, 'bench', 'python-handler.py'), m2.handler!.sendSpec, m2.handler!.recvSpec]);
  return {
    port: port!,
    pids: () => [py.pid],
    stop: async () => {
      await stopTracked(py);
      await m2.stop();
    },
  };
}

/** node:http serving a bench app directly. */
export async function startNodeHttpServer(paths: BenchPaths, app: string): Promise<RunningServer> {
  const [port] = await freePorts(1);
  const proc = spawnTracked(`node:http ${app}`, process.execPath,
    [join(paths.apps, 'node-http.mjs'), join(paths.apps, app), String(port)], { cwd: paths.root });
  try {
    await waitForOutput(proc, (line) => line === 'listening', 15_000);
  } catch (err) {
    await stopTracked(proc);
    throw err;
  }
  return { port: port!, pids: () => [proc.pid], stop: () => stopTracked(proc) };
}

function nginxConfig(dir: string, port: number, uwsgiPort: number): string {
  const params = ['REQUEST_METHOD $request_method', 'QUERY_STRING $query_string',
    'CONTENT_TYPE $content_type', 'CONTENT_LENGTH $content_length', 'REQUEST_URI $request_uri',
    'PATH_INFO $document_uri', 'SERVER_PROTOCOL $server_protocol', 'REMOTE_ADDR $remote_addr',
    'REMOTE_PORT $remote_port', 'SERVER_ADDR $server_addr', 'SERVER_PORT $server_port',
    'SERVER_NAME $server_name'].map((p) => `      uwsgi_param ${p};`);
  return [
    'worker_processes 1;',
    'daemon off;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    '  keepalive_requests 1000000;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `  ${k}_temp_path ${dir}/${k};`),
    '  server {',
    `    listen 127.0.0.1:${port};`,
    '    location / {',
    ...params,
    `      uwsgi_pass 127.0.0.1:${uwsgiPort};`,
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** nginx (one worker) in front of uWSGI (one process) running hello_wsgi.py. */
export async function startNginxUwsgiServer(paths: BenchPaths): Promise<RunningServer> {
  const [port, uwsgiPort] = await freePorts(2);
  const dir = makeTempDir('m2fleet-bench-nginx-');
  mkdirSync(join(dir, 'logs'));
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port!, uwsgiPort!));
  const uwsgi = spawnTracked('uwsgi', UWSGI_BIN, ['--plugins-dir', UWSGI_PLUGINS, '--plugin', 'python3',
    '--socket', `127.0.0.1:${uwsgiPort}`, '--wsgi-file', join(paths.apps, 'hello_wsgi.py'),
    '--processes', '1', '--disable-logging', '--need-app', '--die-on-term']);
  const nginx = spawnTracked('nginx', NGINX_BIN, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')]);
  const stop = async (): Promise<void> => {
    const workers = processTree(nginx.pid).slice(1);
    await stopTracked(nginx, 'SIGQUIT', 5000);
    unwatchPids(workers.filter((p) => processTree(p).length === 0));
    await stopTracked(uwsgi, 'SIGTERM', 5000);
    removeTempDir(dir);
  };
  try {
    await waitForPort(uwsgiPort!, 15_000, () => uwsgi.isRunning());
    await waitForPort(port!, 15_000, () => nginx.isRunning());
  } catch (err) {
    const out = `${uwsgi.output().slice(-1500)}\n${nginx.output().slice(-1500)}`;
    await stop();
    throw new Error(`nginx + uWSGI: ${(err as Error).message}\n${out}`);
  }
  watchPids(processTree(nginx.pid).slice(1));
  return { port: port!, pids: () => [...processTree(nginx.pid), uwsgi.pid], stop };
}
