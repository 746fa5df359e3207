/**
 * Reads a configuration file into raw key/value pairs, the layer between
 * defaults and the environment. Two forms, chosen by extension:
 *
 * - `.json`: one object, either flat or wrapped as `{"m2fleet": {...}}`.
 * - `.ini`: uWSGI style, keys under a `[m2fleet]` section:
 *
 *       [m2fleet]
 *       ; comments start with ; or #
 *       zeromq = tcp://127.0.0.1:9997
 *       zeromq = tcp://127.0.0.1:9996   <- a repeated key makes a list
 *       max-requests = 5000
 *
 * Keys are written like flags and come back camelCase (`max-requests` and
 * `max_requests` both give `maxRequests`; each dotted part is converted on
 * its own). Values are not checked here: ini values stay strings, JSON
 * values keep their JSON type, and unknown keys pass through, all to be
 * validated with the rest of the configuration.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { M2FleetError } from '../handler/errors.js';

/** The one ini section (and optional JSON wrapper key) read. */
export const CONFIG_SECTION = 'm2fleet';

/** A configuration file that cannot be read or parsed. */
export class ConfigFileError extends M2FleetError {
  readonly path: string;
  /** 1-based line of the problem, when it has one. */
  readonly line?: number;

  constructor(path: string, line: number | undefined, problem: string) {
    super('M2F_CONFIG_FILE', `${path}${line === undefined ? '' : `:${line}`}: ${problem}`,
      { value: path });
    this.path = path;
    if (line !== undefined) this.line = line;
  }
}

// Flags whose config key is spelled differently (as cli-options.ts maps them).
const FLAG_KEYS: Record<string, string> = { receiveHwm: 'receiveHighWaterMark' };

/** The flag (and file key) spelling of a config key: `schedPolicy` -> `sched-policy`. */
export function flagName(key: string): string {
  const flag = Object.keys(FLAG_KEYS).find((f) => FLAG_KEYS[f] === key) ?? key;
  return flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * `max-requests` -> `maxRequests`, `limits.max_inflight` ->
 * `limits.maxInflight`; a flag's own spelling (`receive-hwm`) gives the
 * key the flag sets.
 */
export function camelCaseKey(key: string): string {
  const camel = key
    .split('.')
    .map((part) => part.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase()))
    .join('.');
  return FLAG_KEYS[camel] ?? camel;
}

function addValue(out: Record<string, unknown>, key: string, value: unknown): void {
  if (!(key in out)) out[key] = value;
  else if (Array.isArray(out[key])) (out[key] as unknown[]).push(value);
  else out[key] = [out[key], value];
}

const SECTION = /^\[([^\]]*)\]$/;
const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function unquote(value: string): string {
  const q = value[0];
  return value.length >= 2 && (q === '"' || q === "'") && value.endsWith(q)
    ? value.slice(1, -1) : value;
}

/** Parses uWSGI-style ini text; only `[m2fleet]` may appear as a section. */
export function parseIni(text: string, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let inSection = false;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return;

    const section = SECTION.exec(line);
    if (section) {
      const name = section[1]!.trim();
      if (name !== CONFIG_SECTION) {
        throw new ConfigFileError(path, n, `unknown section [${name}] (only [${CONFIG_SECTION}] is read)`);
      }
      inSection = true;
      return;
    }

    const eq = line.indexOf('=');
    const key = eq < 0 ? '' : line.slice(0, eq).trim();
    if (eq < 0 || !KEY.test(key)) {
      throw new ConfigFileError(path, n, `expected "key = value", got ${JSON.stringify(line)}`);
    }
    if (!inSection) {
      throw new ConfigFileError(path, n, `"${key}" comes before the [${CONFIG_SECTION}] section`);
    }
    addValue(out, camelCaseKey(key), unquote(line.slice(eq + 1).trim()));
  });
  return out;
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before.at(-1)!.length + 1 };
}

/** Parses JSON config text: an object, optionally wrapped as `{"m2fleet": {...}}`. */
export function parseJsonConfig(text: string, path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8 names a position for some syntax errors only, and quotes the
    // whole text after "Unexpected token": keep the message short.
    const message = (err as Error).message.replace(/^(Unexpected token [\s\S]+?), "[\s\S]*$/, '$1')
      .replace(/\n/g, '\\n');
    const at = /at position (\d+)/.exec(message);
    if (!at) throw new ConfigFileError(path, undefined, `invalid JSON: ${message}`);
    const { line, column } = lineAndColumn(text, Number(at[1]));
    throw new ConfigFileError(path, line, `column ${column}: invalid JSON: ${message}`);
  }

  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed)) throw new ConfigFileError(path, undefined, 'expected a JSON object');
  const keys = Object.keys(parsed);
  const body = keys.length === 1 && keys[0] === CONFIG_SECTION ? parsed[CONFIG_SECTION] : parsed;
  if (!isObject(body)) {
    throw new ConfigFileError(path, undefined, `"${CONFIG_SECTION}" must be a JSON object`);
  }

  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) addValue(out, camelCaseKey(key), value);
  return out;
}

/**
 * Reads `path` (`.json` or `.ini`) into camelCase keys; repeated ini keys
 * and JSON arrays give arrays. Throws {@link ConfigFileError}
 * (`M2F_CONFIG_FILE`) naming the file, the line when there is one, and the
 * problem: unreadable file, unknown extension, bad JSON, unknown section, or
 * a line that is not `key = value`.
 */
export function readConfigFile(path: string): Record<string, unknown> {
  const ext = extname(path).toLowerCase();
  if (ext !== '.json' && ext !== '.ini') {
    throw new ConfigFileError(path, undefined, `unknown config file type "${ext}" (use .json or .ini)`);
  }

  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code ?? (err as Error).message;
    throw new ConfigFileError(path, undefined, `cannot read config file (${code})`);
  }

  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return ext === '.json' ? parseJsonConfig(text, path) : parseIni(text, path);
}
