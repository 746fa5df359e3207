/**
 * Starts a real Mongrel2 for the bench, the way the tests do (a temp dir
 * that is its chroot, with run/ logs/ tmp/, a config loaded by `m2sh
 * load`, `server.daemonize` 0 so the pid is ours), with either one handler
 * route or one Dir route (Mongrel2 serving files itself: its ceiling).
 *
 *   <dir>/m2.conf config.sqlite run/ logs/ tmp/ static/
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, spawnTracked, stopTracked, removeTempDir, type Tracked } from './children.ts';
import { waitForPort } from '../../test/helpers/ports.ts';

/** One handler's endpoints and ident. */
export interface HandlerEndpoints {
  /** Wire: send_spec (Mongrel2 binds a PUSH). */
  sendSpec: string;
  /** Wire: recv_spec (Mongrel2 binds a SUB). */
  recvSpec: string;
  /** Wire: send_ident = recv_ident. */
  ident: string;
}

/** What the one route on '/' goes to. */
export type Mongrel2Route =
  | { kind: 'handler'; sendPort: number; recvPort: number; flowControl?: boolean }
  | { kind: 'dir'; files: Record<string, Buffer> };

/** A running bench Mongrel2. */
export interface BenchMongrel2 {
  port: number;
  pid: number;
  handler: HandlerEndpoints | null;
  process: Tracked;
  stop(): Promise<void>;
}

function renderConfig(uuid: string, port: number, route: Mongrel2Route, handler: HandlerEndpoints | null): string {
  const target = route.kind === 'dir'
    ? `Dir(base="static/", index_file="index.html", default_ctype="text/plain")`
    : `Handler(send_spec="${handler!.sendSpec}", send_ident="${handler!.ident}", ` +
      `recv_spec="${handler!.recvSpec}", recv_ident="${handler!.ident}", protocol="json")`;
  return [
    `main = Server(uuid="${uuid}", name="bench", bind_addr="127.0.0.1", port=${port},`,
    `    chroot="./", pid_file="/run/mongrel2.pid", access_log="/logs/access.log",`,
    `    error_log="/logs/error.log", default_host="localhost",`,
    `    hosts=[Host(name="localhost", routes={"/": ${target}})])`,
    // Access logging on for every setup alike. Flow control only where
    // asked: with it, m2fleet closes connections when it has several units
    // (README: the flow-control trade-off).
    `settings = {"server.daemonize": 0, "zeromq.threads": 1, "limits.content_length": 20480, ` +
      `"download.flow_control": ${route.kind === 'handler' && route.flowControl ? 1 : 0}}`,
    'servers = [main]',
    '',
  ].join('\n');
}

function m2shLoad(dir: string): Promise<void> {
  const env = { ...process.env, LOGNAME: process.env['LOGNAME'] ?? 'm2fleet-bench' };
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/m2sh', ['load', '-config', 'm2.conf', '-db', 'config.sqlite'],
      { cwd: dir, env, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`m2sh load failed in ${dir}: ${err.message}\n${stdout}${stderr}`));
        else resolve();
      });
  });
}

/** Starts Mongrel2 on `port` with `route` on '/'; resolves when it listens. */
export async function startMongrel2(port: number, route: Mongrel2Route): Promise<BenchMongrel2> {
  const dir = makeTempDir('m2fleet-bench-m2-');
  for (const sub of ['run', 'logs', 'tmp', 'static']) mkdirSync(join(dir, sub));
  const handler = route.kind === 'handler' ? {
    sendSpec: `tcp://127.0.0.1:${route.sendPort}`,
    recvSpec: `tcp://127.0.0.1:${route.recvPort}`,
    ident: `bench-${randomBytes(6).toString('hex')}`,
  } : null;
  if (route.kind === 'dir') {
    for (const [name, data] of Object.entries(route.files)) writeFileSync(join(dir, 'static', name), data);
  }
  const uuid = randomUUID();
  writeFileSync(join(dir, 'm2.conf'), renderConfig(uuid, port, route, handler));
  await m2shLoad(dir);

  const env = { ...process.env, LOGNAME: process.env['LOGNAME'] ?? 'm2fleet-bench' };
  const proc = spawnTracked('mongrel2', '/usr/bin/mongrel2', ['config.sqlite', uuid], { cwd: dir, env });
  const stop = async (): Promise<void> => {
    await stopTracked(proc, 'SIGTERM', 5000);
    removeTempDir(dir);
  };
  try {
    await waitForPort(port, 10_000, () => proc.isRunning());
  } catch (err) {
    const out = proc.output();
    await stop();
    throw new Error(`mongrel2 on ${port}: ${(err as Error).message}\n${out.slice(-2000)}`);
  }
  return { port, pid: proc.pid, handler, process: proc, stop };
}
