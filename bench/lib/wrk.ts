/**
 * Runs wrk (Debian package wrk, /usr/bin/wrk) against 127.0.0.1 and reads
 * its report: requests per second, the latency percentiles of
 * `--latency`, socket errors and non-2xx/3xx answers.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnTracked, stopTracked } from './children.ts';

export const WRK_BIN = '/usr/bin/wrk';

/** What one wrk run measured. */
export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  latencyMs: { p50: number; p99: number };
  /** connect + read + write + timeout socket errors. */
  socketErrors: number;
  non2xx: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "213.45us" -> 0.21345 (ms); NaN when unreadable. */
export function parseDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
}

/** Reads wrk's text report. Throws when there is no Requests/sec line. */
export function parseWrkOutput(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  if (!rps) throw new Error(`wrk printed no Requests/sec line:\n${text.slice(-1500)}`);
  const total = /^\s*(\d+) requests in /m.exec(text);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(text);
    return m ? parseDurationMs(m[1]!) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requestsPerSecond: Number(rps[1]),
    requests: total ? Number(total[1]) : 0,
    latencyMs: { p50: pct('50'), p99: pct('99') },
    socketErrors: sock ? sock.slice(1, 5).reduce((n, v) => n + Number(v), 0) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

/** A wrk Lua script that POSTs `body` as JSON on every request. */
export function postScript(body: string): string {
  return [
    'wrk.method = "POST"',
    `wrk.body = ${JSON.stringify(body)}`,
    'wrk.headers["Content-Type"] = "application/json"',
    '',
  ].join('\n');
}

/** Options of one wrk run. */
export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  /** wrk threads; default 1 (the box has 2 cores; the server needs one). */
  threads?: number;
  /** Lua script text (written to a file in `scratchDir`). */
  script?: string;
  scratchDir: string;
}

/**
 * Runs wrk once, bounded: wrk's own `-d` plus a kill after seconds + 15 s.
 * Throws when wrk fails or prints no result.
 */
export async function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(opts.threads ?? 1), '-c', String(opts.connections),
    '-d', `${opts.seconds}s`, '--timeout', '5s', '--latency'];
  if (opts.script) {
    const file = join(opts.scratchDir, `wrk-${process.pid}-${Date.now()}.lua`);
    writeFileSync(file, opts.script);
    args.push('-s', file);
  }
  args.push(opts.url);
  const wrk = spawnTracked('wrk', WRK_BIN, args);
  const timer = setTimeout(() => void stopTracked(wrk, 'SIGKILL'), (opts.seconds + 15) * 1000);
  const code = await wrk.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited ${code}:\n${wrk.output().slice(-1500)}`);
  return parseWrkOutput(wrk.output());
}
