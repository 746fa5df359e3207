/**
 * Keeps a hosted app's mistakes inside one response: a handler that throws
 * (or rejects) answers 500 and the server goes on serving, and a fetch
 * handler that returns nothing answers 404.
 */
import http from 'node:http';
import { types } from 'node:util';
import type { Logger } from './types.js';

/** A Node request listener, optionally taking Connect/Express's `next`. */
export type NodeHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  next?: (err?: unknown) => void,
) => unknown;

/** A fetch-style handler as called by @hono/node-server's listener. */
export type FetchHandler = (request: Request, env: unknown) => unknown;

/** Reports an error thrown by app code; defaults to {@link reportToStderr}. */
export type AppErrorReporter = (err: unknown) => void;

const GUARDED = Symbol('m2fleet.guarded');

/** Writes one short line to stderr; used when no logger was given. */
export function reportToStderr(err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`m2fleet: app error: ${text}\n`);
}

/** Builds a reporter that logs through `logger` when one is given. */
export function createReporter(logger?: Logger): AppErrorReporter {
  if (logger === undefined) return reportToStderr;
  return (err) => logger.error({ err }, 'app handler failed');
}

/**
 * Wrap a Node `(req, res[, next])` handler. A synchronous throw or a
 * rejected returned promise becomes a 500 (or, when headers already went
 * out, a destroyed response). With `withNext`, the handler also receives a
 * final `next`: `next()` answers 404, `next(err)` answers the error's
 * 4xx/5xx `status`/`statusCode` or 500.
 */
export function guardNodeHandler(
  handler: NodeHandler,
  report: AppErrorReporter,
  withNext: boolean,
): NodeHandler {
  if ((handler as { [GUARDED]?: true })[GUARDED]) return handler;
  const guarded = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const fail = (err: unknown): void => {
      // The client went away mid-request: the app's read failing with
      // "aborted" is the expected end of that request, not an app error.
      if (req.destroyed && (err as { code?: unknown } | null)?.code === 'ECONNRESET') return;
      report(err);
      answerError(res, statusOf(err));
    };
    const next = (err?: unknown): void => {
      if (err === undefined || err === null) answerError(res, 404);
      else fail(err);
    };
    try {
      const out = withNext ? handler(req, res, next) : handler(req, res);
      if (types.isPromise(out)) out.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
  Object.defineProperty(guarded, GUARDED, { value: true });
  return guarded;
}

/**
 * Replace each `'request'` listener of `server` by a guarded one, keeping
 * their order. Listeners added later are not wrapped.
 */
export function guardServerListeners(
  server: http.Server,
  report: AppErrorReporter,
): void {
  const listeners = server.listeners('request') as NodeHandler[];
  server.removeAllListeners('request');
  for (const listener of listeners) {
    server.on('request', guardNodeHandler(listener, report, false));
  }
}

/**
 * Wrap a fetch handler for @hono/node-server's `getRequestListener`:
 * `undefined`/`null` becomes a 404 and a throw or rejection a 500 (that
 * listener would otherwise answer 500 for `undefined` and print a stack).
 * A synchronous `Response` stays synchronous, keeping its fast path.
 */
export function guardFetchHandler(
  handler: FetchHandler,
  report: AppErrorReporter,
): FetchHandler {
  const fail = (err: unknown): Response => {
    report(err);
    return new Response('Internal Server Error', {
      status: 500,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    });
  };
  const orNotFound = (out: unknown): unknown =>
    out === undefined || out === null
      ? new Response('Not Found', {
          status: 404,
          headers: { 'content-type': 'text/plain; charset=utf-8' },
        })
      : out;

  return (request, env) => {
    let out: unknown;
    try {
      out = handler(request, env);
    } catch (err) {
      return fail(err);
    }
    if (types.isPromise(out)) return out.then(orNotFound, fail);
    return orNotFound(out);
  };
}

/** Answer `status` with a short text body, or cut a response under way. */
function answerError(res: http.ServerResponse, status: number): void {
  if (res.writableEnded) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // Headers the app set before failing (cookies, caching) describe a
  // response that will not be sent; drop them.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const body = http.STATUS_CODES[status] ?? 'Error';
  res.statusCode = status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}

/** An error's own 4xx/5xx `status`/`statusCode`, else 500. */
function statusOf(err: unknown): number {
  if (typeof err !== 'object' || err === null) return 500;
  const { status, statusCode } = err as { status?: unknown; statusCode?: unknown };
  const code = typeof status === 'number' ? status : statusCode;
  return typeof code === 'number' && code >= 400 && code < 600 ? code : 500;
}
