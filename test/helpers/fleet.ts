/**
 * Runs the built CLI (`node dist/node/cli.js ...args`) as a child process
 * for end-to-end tests, keeps every output line, and waits for the JSON log
 * record whose `msg` is 'ready'. Run `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { startWatchdog } from './watchdog.ts';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, two levels above this file (test/helpers/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built CLI entry point. */
export const CLI_PATH = join(REPO_ROOT, 'dist', 'node', 'cli.js');

/** Options of startFleet. */
export interface FleetOptions {
  /** Working directory of the CLI. Default: the repository root. */
  cwd?: string;
  /** Extra environment, merged over process.env. */
  env?: Record<string, string | undefined>;
  /** How long to wait for the 'ready' record, in ms. Default 15000. */
  readyTimeoutMs?: number;
  /** Wait for the 'ready' record on stderr (default true; false when logs go elsewhere). */
  waitReady?: boolean;
  /** Script to run instead of dist/node/cli.js (for testing this helper). */
  cliPath?: string;
}

/** One captured output line; `json` is set when the line parsed as an object. */
export interface FleetLine {
  stream: 'stdout' | 'stderr';
  text: string;
  json?: Record<string, unknown>;
}

/** A running CLI owned by one test. */
export interface FleetProcess {
  pid: number;
  /** Every line so far, in arrival order per stream. */
  lines: FleetLine[];
  /** The JSON records so far (lines that parsed as objects, either stream). */
  logs(): Record<string, unknown>[];
  /** All stderr so far as text. */
  stderr(): string;
  /** All stdout so far as text. */
  stdout(): string;
  /**
   * Resolves with the first record (present or future) for which `match`
   * is true; rejects after timeoutMs (default 5000) or when the process
   * exits first. The error carries the stderr tail.
   */
  waitForLog(match: (record: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or 128+signal number) once the CLI exits. */
  exited: Promise<number>;
  /**
   * Sends `signal` (default SIGTERM), waits up to timeoutMs (default 10000)
   * for exit, then SIGKILLs. Resolves with the exit code; idempotent.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number>;
}

/**
 * Starts the CLI and resolves once it logs `{"msg":"ready"}`. Rejects, after
 * killing it, when it exits first or readyTimeoutMs passes; the error
 * includes the captured stderr. Throws at once when dist/node/cli.js is
 * missing (run `npm run build`).
 */
export async function startFleet(args: string[], opts: FleetOptions = {}): Promise<FleetProcess> {
  const cliPath = opts.cliPath ?? CLI_PATH;
  if (!existsSync(cliPath)) {
    throw new Error(`${cliPath} is missing; run: npm run build`);
  }
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const disarm = startWatchdog(child.pid ?? 0);
  void new Promise((r) => child.once('exit', r)).then(disarm);
  const fleet = wrapChild(child);
  const timeoutMs = opts.readyTimeoutMs ?? 15_000;

  if (opts.waitReady === false) return fleet;
  try {
    await fleet.waitForLog((record) => record.msg === 'ready', timeoutMs);
    return fleet;
  } catch (err) {
    await fleet.stop('SIGKILL');
    throw new Error(`m2fleet ${args.join(' ')}: not ready: ${(err as Error).message}`);
  }
}

/** Builds the FleetProcess view of a spawned child. */
function wrapChild(child: ChildProcess): FleetProcess {
  const lines: FleetLine[] = [];
  const listeners = new Set<() => void>();
  const notify = (): void => { for (const listener of listeners) listener(); };
  collectLines(child, 'stdout', lines, notify);
  collectLines(child, 'stderr', lines, notify);

  const exited = new Promise<number>((resolveExit) => {
    child.once('exit', (code, signal) => {
      resolveExit(code ?? 128 + signalNumber(signal));
      notify();
    });
    child.once('error', () => { resolveExit(127); notify(); });
  });
  let isExited = false;
  void exited.then(() => { isExited = true; });

  const textOf = (stream: FleetLine['stream']): string =>
    lines.filter((line) => line.stream === stream).map((line) => line.text).join('\n');
  const logs = (): Record<string, unknown>[] =>
    lines.flatMap((line) => (line.json ? [line.json] : []));
  let stopping: Promise<number> | undefined;

  return {
    pid: child.pid ?? -1,
    lines,
    logs,
    stderr: () => textOf('stderr'),
    stdout: () => textOf('stdout'),
    exited,
    waitForLog: (match, timeoutMs = 5000) => new Promise((resolveLog, reject) => {
      const check = (): void => {
        const found = logs().find(match);
        if (found) finish(() => resolveLog(found));
        else if (isExited || child.exitCode !== null || child.signalCode !== null) {
          finish(() => reject(new Error(`exited (code ${child.exitCode}, signal ${child.signalCode}) first; stderr:\n${tail(textOf('stderr'))}`)));
        }
      };
      const timer = setTimeout(() => finish(() =>
        reject(new Error(`no matching log within ${timeoutMs} ms; stderr:\n${tail(textOf('stderr'))}`))), timeoutMs);
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      listeners.add(check);
      check();
    }),
    stop: (signal = 'SIGTERM', timeoutMs = 10_000) => {
      stopping ??= stopChild(child, exited, signal, timeoutMs);
      return stopping;
    },
  };
}

/** Splits a stream into lines, parsing JSON objects where possible. */
function collectLines(
  child: ChildProcess, stream: FleetLine['stream'], lines: FleetLine[], notify: () => void,
): void {
  let partial = '';
  const source = child[stream];
  if (!source) return;
  source.setEncoding('utf8');
  const push = (text: string): void => {
    lines.push({ stream, text, json: parseObject(text) });
  };
  source.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const part of parts) push(part.replace(/\r$/, ''));
    notify();
  });
  source.on('end', () => {
    if (partial !== '') push(partial);
    partial = '';
    notify();
  });
}

/** Returns the object a line encodes, or undefined. */
function parseObject(text: string): Record<string, unknown> | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Signals the child, escalating to SIGKILL after timeoutMs (then 5 s more). */
async function stopChild(
  child: ChildProcess, exited: Promise<number>, signal: NodeJS.Signals, timeoutMs: number,
): Promise<number> {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  const first = await withTimeout(exited, timeoutMs);
  if (first !== undefined) return first;

  child.kill('SIGKILL');
  const second = await withTimeout(exited, 5000);
  if (second === undefined) throw new Error(`m2fleet pid ${child.pid} survived SIGKILL`);
  // A killed master cannot remove its own socket directory.
  rmSync(`/tmp/m2fleet-${child.pid}`, { recursive: true, force: true });
  return second;
}

/** Resolves with the value, or undefined after ms. */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((done) => { timer = setTimeout(() => done(undefined), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return signal ? (numbers[signal] ?? 0) : 0;
}

/** The last 40 lines of a text. */
function tail(text: string): string {
  return text.split('\n').slice(-40).join('\n');
}
