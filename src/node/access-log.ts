/**
 * The access log: one record per answered request, written by a unit's
 * logger at level info with msg `'access'`, so that one filter
 * (`msg == "access"`) separates it from operational lines. A record reads
 *
 *   {"time":...,"level":30,...,"msg":"access","m":"GET","path":"/x",
 *    "st":200,"b":512,"ms":3.2,"unit":"0f1e2d3c-...","conn":"42","ip":"..."}
 *
 * Bodies, headers and query strings are never logged.
 */

/** The msg of every access-log record. */
export const ACCESS_MSG = 'access';

/** One answered request, as the unit knows it when the reply is done. */
export interface AccessRecord {
  method: string;
  /** The request target; its query string is cut off before logging. */
  path: string;
  status: number;
  /** Response bytes sent to the client, head and body. */
  bytes: number;
  /** Time from request received to reply sent, in milliseconds. */
  durationMs: number;
  /** Identity of the unit that answered. */
  unit: string;
  /** Wire: Mongrel2's connection id of the client. */
  connId: string;
  /** The client address (Mongrel2's REMOTE_ADDR, or the socket's peer), when known. */
  remote?: string;
  /** How the request arrived, when not over ZeroMQ (http, uwsgi, fastcgi). */
  via?: string;
}

/**
 * Returns the structured fields of an access-log record, with short keys:
 * `m` method, `path` without its query string, `st` status, `b` response
 * bytes (head and body), `ms` duration rounded to
 * 0.1 ms, `unit`, `conn` connection id, `ip` only when `remote` is known,
 * and `via` for requests from a standard socket. Log it as `log.info(formatAccessLine(r), ACCESS_MSG)`.
 */
export function formatAccessLine(r: AccessRecord): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    m: r.method,
    path: r.path.includes('?') ? r.path.slice(0, r.path.indexOf('?')) : r.path,
    st: r.status,
    b: r.bytes,
    ms: Math.round(r.durationMs * 10) / 10,
    unit: r.unit,
    conn: r.connId,
  };
  if (r.remote !== undefined && r.remote !== '') fields['ip'] = r.remote;
  if (r.via !== undefined && r.via !== 'zeromq') fields['via'] = r.via;
  return fields;
}
