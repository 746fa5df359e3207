/**
 * Every process and temp dir the bench makes, so that each one is ended
 * (by its pid) and removed: on a normal end, on an error, on Ctrl-C, and
 * even when the bench itself is killed (a watchdog shell reads the pids
 * from a pipe and kills them when the pipe closes without "ok").
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A process the bench started, with its output kept (tail only). */
export interface Tracked {
  name: string;
  child: ChildProcess;
  pid: number;
  /** The last 64 KiB of stdout + stderr. */
  output(): string;
  /** Resolves with the exit code (128 + signal when killed). */
  exited: Promise<number>;
  isRunning(): boolean;
}

const children = new Set<Tracked>();
const dirs = new Set<string>();
let watchdog: ChildProcess | null = null;
/** Set once cleanup began: nothing new may start after that. */
let closing = false;

function startWatchdog(): ChildProcess {
  // Reads "+PID" (started) and "-PID" (gone) lines; on EOF without "ok"
  // it SIGKILLs every pid that was started and not reported gone, so a pid
  // the kernel has since given to someone else is never touched.
  const script = 'up=""; down=" "; while read -r line; do case "$line" in ' +
    'ok) exit 0;; +*) up="$up ${line#+}";; -*) down="$down${line#-} ";; esac; done; ' +
    'for p in $up; do case "$down" in *" $p "*) ;; *) kill -KILL "$p" 2>/dev/null;; esac; done';
  const dog = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'] });
  dog.on('error', () => { /* best effort */ });
  dog.stdin!.on('error', () => { /* gone */ });
  dog.unref();
  (dog.stdin as unknown as Socket).unref();
  return dog;
}

/** Spawns a tracked process; its pid goes to the watchdog at once. */
export function spawnTracked(
  name: string, command: string, args: readonly string[], options: SpawnOptions = {},
): Tracked {
  if (closing) throw new Error(`not starting ${name}: the bench is stopping`);
  watchdog ??= startWatchdog();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let out = '';
  const keep = (chunk: Buffer): void => {
    out += chunk.toString('utf8');
    if (out.length > 131072) out = out.slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let running = child.pid !== undefined;
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15));
    });
    child.once('error', (err) => {
      running = false;
      out += `\nspawn error: ${err.message}`;
      resolve(127);
    });
  });
  const tracked: Tracked = {
    name, child, pid: child.pid ?? -1, output: () => out.slice(-65536), exited,
    isRunning: () => running,
  };
  if (child.pid !== undefined) watchPids([child.pid]);
  children.add(tracked);
  void exited.then(() => {
    children.delete(tracked);
    if (child.pid !== undefined) unwatchPids([child.pid]);
  });
  return tracked;
}

/** Tells the watchdog about processes our children started (workers). */
export function watchPids(pids: readonly number[]): void {
  watchdog ??= startWatchdog();
  for (const pid of pids) watchdog.stdin!.write(`+${pid}\n`);
}

/** Tells the watchdog these pids are gone (never kill them later). */
export function unwatchPids(pids: readonly number[]): void {
  for (const pid of pids) watchdog?.stdin!.write(`-${pid}\n`);
}

/**
 * Stops one tracked process: `signal` (default SIGTERM), then SIGKILL
 * after `graceMs`. Resolves once it has exited (or 2 s after SIGKILL).
 */
export async function stopTracked(t: Tracked, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (!t.isRunning()) return;
  t.child.kill(signal);
  if (await within(t.exited, graceMs)) return;
  if (t.isRunning()) t.child.kill('SIGKILL');
  await within(t.exited, 2000);
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms); });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fresh temp dir, removed by cleanupAll(). */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Removes one temp dir now. */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Stops every tracked process still running and removes every temp dir. */
export async function cleanupAll(): Promise<void> {
  closing = true;
  await Promise.all([...children].map((t) => stopTracked(t, 'SIGTERM', 3000)));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
  watchdog?.stdin?.end('ok\n');
  watchdog = null;
}

/** Synchronous last resort (process 'exit'): SIGKILL what is left, remove dirs. */
export function killAllNow(): void {
  for (const t of children) {
    if (t.isRunning()) {
      try { process.kill(t.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
