/**
 * m2fleet's logger: one JSON object per line (time, level, pid, thread,
 * component, msg, then fields), pino-compatible level numbers, or a short
 * human form with `--log-format pretty`. Debug is switched on per component.
 */
import { threadId } from 'node:worker_threads';
import type { Logger } from '../handler/types.js';

/** Level names and pino's numbers for them. */
export const LEVELS = { error: 50, warn: 40, info: 30, debug: 20 } as const;
export type LevelName = keyof typeof LEVELS;

/** Where lines go; stderr by default. */
export type LogSink = (line: string) => void;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written (default info). */
  level?: LevelName;
  /** Components with debug on; `*` or `all` means every component. */
  debug?: readonly string[];
  format?: 'json' | 'pretty';
  sink?: LogSink;
}

const stderrSink: LogSink = (line) => {
  process.stderr.write(line + '\n');
};

function errorField(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const code = (value as { code?: unknown }).code;
  return code === undefined ? { message: value.message } : { code, message: value.message };
}

function pretty(rec: Record<string, unknown>): string {
  const { time, level, msg, component, pid, thread, ...rest } = rec;
  const extra = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const name = Object.keys(LEVELS).find((n) => LEVELS[n as LevelName] === level);
  return `${String(time)} ${name?.toUpperCase()} [${String(component)} ${String(pid)}/`
    + `${String(thread)}] ${String(msg)}${extra ? ' ' + extra : ''}`;
}

class JsonLogger implements Logger {
  readonly #min: number;
  readonly #debugAll: boolean;
  readonly #debugSet: ReadonlySet<string>;
  readonly #format: 'json' | 'pretty';
  readonly #sink: LogSink;
  readonly #bindings: Record<string, unknown>;

  constructor(options: LoggerOptions, bindings: Record<string, unknown>) {
    this.#min = LEVELS[options.level ?? 'info'];
    const debug = options.debug ?? [];
    this.#debugAll = debug.includes('*') || debug.includes('all');
    this.#debugSet = new Set(debug);
    this.#format = options.format ?? 'json';
    this.#sink = options.sink ?? stderrSink;
    this.#bindings = bindings;
  }

  isDebug(): boolean {
    const component = String(this.#bindings['component'] ?? '');
    return this.#min <= LEVELS.debug || this.#debugAll || this.#debugSet.has(component);
  }

  error(fields: Record<string, unknown>, msg: string): void {
    this.#write(LEVELS.error, fields, msg);
  }
  warn(fields: Record<string, unknown>, msg: string): void {
    this.#write(LEVELS.warn, fields, msg);
  }
  info(fields: Record<string, unknown>, msg: string): void {
    this.#write(LEVELS.info, fields, msg);
  }
  debug(fields: Record<string, unknown>, msg: string): void {
    if (this.isDebug()) this.#write(LEVELS.debug, fields, msg, true);
  }

  child(bindings: Record<string, unknown>): Logger {
    const options: LoggerOptions = {
      level: (Object.keys(LEVELS) as LevelName[]).find((n) => LEVELS[n] === this.#min)!,
      debug: this.#debugAll ? ['*'] : [...this.#debugSet],
      format: this.#format,
      sink: this.#sink,
    };
    return new JsonLogger(options, { ...this.#bindings, ...bindings });
  }

  #write(level: number, fields: Record<string, unknown>, msg: string, force = false): void {
    if (level < this.#min && !force) return;
    const rec: Record<string, unknown> = {
      time: new Date().toISOString(),
      level,
      pid: process.pid,
      thread: threadId,
      component: 'm2fleet',
      ...this.#bindings,
      msg,
    };
    // Fields never replace the record's own keys (time, level, msg, ...).
    for (const [k, v] of Object.entries(fields)) if (!(k in rec)) rec[k] = errorField(v);
    this.#sink(this.#format === 'pretty' ? pretty(rec) : JSON.stringify(rec));
  }
}

/** Makes the root logger; components get theirs with `child({component})`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return new JsonLogger(options, {});
}
