/**
 * Loads the user's app from `PATH[:EXPORT]` and returns a never-bound
 * `http.Server` serving it. Detection lives in `app-detect.ts`, `listen()`
 * interception in `listen-capture.ts`.
 */
import { readFile, stat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { types } from 'node:util';
import { describeValue, hostExport, hostServer } from './app-detect.js';
import type { AppInterface, AppKind } from './app-detect.js';
import { M2FleetError } from './errors.js';
import { captureListen } from './listen-capture.js';
import { createReporter } from './request-guard.js';
import type { Logger } from './types.js';

export type { AppInterface, AppKind } from './app-detect.js';
export { restoreListen } from './listen-capture.js';

/** The app as m2fleet hosts it. */
export interface LoadedApp {
  /** How the export was understood: `fetch`, `node-handler`, `koa`, ... */
  kind: AppKind;
  /** Never bound; m2fleet emits `'connection'` with Duplexes on it. */
  server: http.Server;
  /** Close the app (Fastify/Nest close hooks run) and its server. */
  close(): Promise<void>;
}

/** Options of {@link loadApp}. */
export interface LoadAppOptions {
  /** Calling convention; default `auto`. */
  interface?: AppInterface;
  /** Directory `PATH` is relative to; default `process.cwd()`. */
  cwd?: string;
  /**
   * Let @hono/node-server replace the global Request/Response with its
   * faster ones (process-wide; breaks `instanceof Request` in some
   * libraries). Default false.
   */
  fastWebGlobals?: boolean;
  /**
   * When the module exports nothing usable, how long to wait for a late
   * `listen()` (an async `main` that awaits first). Milliseconds; default
   * 10000.
   */
  listenWaitMs?: number;
  /** Where errors thrown by app handlers go; default one line on stderr. */
  logger?: Logger;
}

/** Error code of every failure of {@link loadApp}. */
export const APP_LOAD_ERROR = 'M2F_APP_LOAD';

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts']);
const GUESSED_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts'];
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const BUILD_TO_JS =
  'tsx (used for .ts files on Node 20) does not emit decorator metadata, which NestJS and other dependency-injection frameworks need: compile the app to JavaScript (tsc or nest build) and point m2fleet at the .js file';

let loading: Promise<unknown> = Promise.resolve();

/**
 * Import `spec` (`PATH` or `PATH:EXPORT`, relative to `cwd`) and host what
 * it exports, or the server it calls `listen()` on. Loads run one at a
 * time, because `listen` interception patches `net.Server.prototype`.
 * Throws an {@link M2FleetError} with code `M2F_APP_LOAD` when the file is
 * missing, fails to import, lacks the export, or offers nothing usable.
 */
export function loadApp(
  spec: string,
  opts: LoadAppOptions = {},
): Promise<LoadedApp> {
  const run = loading.then(() => loadNow(spec, opts));
  loading = run.catch(() => undefined);
  return run;
}

async function loadNow(spec: string, opts: LoadAppOptions): Promise<LoadedApp> {
  const cwd = opts.cwd ?? process.cwd();
  const { file, exportName } = await parseSpec(spec, cwd);
  const report = createReporter(opts.logger);
  const hostOptions = {
    interface: opts.interface ?? 'auto',
    fastWebGlobals: opts.fastWebGlobals === true,
    report,
  };

  const capture = captureListen();
  try {
    const namespace = await importFile(file, spec);
    const { value } = await pickExport(namespace, exportName, spec);
    const hosted = await hostExport(value, hostOptions);
    if (hosted !== undefined) return hosted;

    // Nothing usable exported: fall back to a server the module listened
    // on, now or after an await in an async main.
    capture.restoreAfterNextCapture();
    const server = await capture.waitForServer(opts.listenWaitMs ?? 10_000);
    if (server !== undefined) {
      // Let the app's listen callback and 'listening' handlers (queued on
      // the next tick) finish its start-up before requests arrive.
      await new Promise((resolve) => setImmediate(resolve));
      return hostServer(server as http.Server, 'listen-capture', report);
    }
    throw loadError(
      `${spec}: nothing usable exported (${exportLabel(exportName)} is ${describeValue(value)}) and no listen() call within ${opts.listenWaitMs ?? 10_000} ms; expected a fetch handler, an object with fetch, a (req, res) function, an http.Server, or a Fastify/Koa/Nest/Express app${interfaceHint(hostOptions.interface)}`,
      spec,
    );
  } finally {
    // Listens made during the load were all captured; a later one (from
    // app code that also exported a usable value) binds for real.
    capture.restore();
  }
}

/**
 * Split `PATH[:EXPORT]`. The part after the last ':' is an export name
 * only if it is an identifier and the whole spec is not an existing file.
 */
async function parseSpec(spec: string, cwd: string) {
  if (spec.trim() === '') throw loadError('empty app path', spec);
  const colon = spec.lastIndexOf(':');
  const tail = colon > 0 ? spec.slice(colon + 1) : '';
  const whole = path.resolve(cwd, spec);
  if (IDENTIFIER.test(tail) && !(await isFile(whole))) {
    const file = await resolveFile(path.resolve(cwd, spec.slice(0, colon)), spec);
    return { file, exportName: tail };
  }
  return { file: await resolveFile(whole, spec), exportName: undefined };
}

/** The file itself, or the first of `file` + a known extension. */
async function resolveFile(file: string, spec: string): Promise<string> {
  if (await isFile(file)) return file;
  for (const extension of GUESSED_EXTENSIONS) {
    if (await isFile(file + extension)) return file + extension;
  }
  const what = (await isDirectory(file)) ? 'is a directory' : 'does not exist';
  throw loadError(`${spec}: app file ${file} ${what}`, spec);
}

async function importFile(file: string, spec: string): Promise<unknown> {
  const url = pathToFileURL(file).href;
  const isTypeScript = TS_EXTENSIONS.has(path.extname(file));
  if (isTypeScript && (await usesNest(file))) {
    throw loadError(`${spec}: ${file} is a NestJS TypeScript entry; ${BUILD_TO_JS}`, spec);
  }
  try {
    if (!isTypeScript) return await import(url);
    const { tsImport } = await import('tsx/esm/api');
    return await tsImport(url, import.meta.url);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const hint = isTypeScript && looksLikeDecoratorError(message) ? `; ${BUILD_TO_JS}` : '';
    throw loadError(`${spec}: importing ${file} failed: ${message}${hint}`, spec, err);
  }
}

/**
 * The exported value: the named export, else `default`, else the
 * namespace. A CommonJS-compiled `export default` (`__esModule` set)
 * arrives one `default` deeper and is unwrapped. A real Promise is
 * awaited; a mere thenable (itty-router's Proxy) never is.
 */
async function pickExport(namespace: unknown, exportName: string | undefined, spec: string) {
  const ns = namespace as Record<string, unknown>;
  let value: unknown;
  if (exportName === undefined) {
    value = 'default' in ns ? unwrapDefault(ns.default) : ns;
  } else {
    value = exportName === 'default' ? unwrapDefault(ns.default) : ns[exportName];
    const inner = unwrapDefault(ns.default);
    if (value === undefined && isObjectLike(inner)) {
      value = (inner as Record<string, unknown>)[exportName];
    }
    if (value === undefined) {
      const found = exportNames(ns).join(', ') || 'none';
      throw loadError(`${spec}: export "${exportName}" not found; exports: ${found}`, spec);
    }
  }
  // Boxed: an async function returning the bare value would adopt a
  // thenable, and itty-router's `then` registers a route, never settling.
  return { value: types.isPromise(value) ? await value : value };
}

function unwrapDefault(value: unknown): unknown {
  if (!isObjectLike(value)) return value;
  const record = value as Record<string, unknown>;
  return record.__esModule === true && 'default' in record ? record.default : value;
}

function exportNames(ns: Record<string, unknown>): string[] {
  const names = Object.keys(ns).filter((name) => name !== 'default');
  const inner = unwrapDefault(ns.default);
  if (isObjectLike(inner)) names.push(...Object.keys(inner as object));
  if ('default' in ns) names.push('default');
  return [...new Set(names)].filter((name) => name !== '__esModule');
}

function isObjectLike(value: unknown): boolean {
  return (typeof value === 'object' && value !== null) || typeof value === 'function';
}

async function usesNest(file: string): Promise<boolean> {
  const source = await readFile(file, 'utf8').catch(() => '');
  return /from\s+['"]@nestjs\/core['"]|require\(\s*['"]@nestjs\/core['"]\s*\)/.test(source);
}

function looksLikeDecoratorError(message: string): boolean {
  return /decorator|metadata|design:paramtypes|can't resolve dependencies/i.test(message);
}

function exportLabel(exportName: string | undefined): string {
  return exportName === undefined ? 'the default export' : `export "${exportName}"`;
}

function interfaceHint(mode: AppInterface): string {
  return mode === 'auto' ? '' : ` (interface forced to "${mode}")`;
}

function loadError(message: string, spec: string, cause?: unknown): M2FleetError {
  const err = new M2FleetError(APP_LOAD_ERROR, message, { value: spec });
  if (cause !== undefined) err.cause = cause;
  return err;
}

async function isFile(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() === true;
}

async function isDirectory(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isDirectory() === true;
}
