/**
 * Builds the request frames Mongrel2 PUSHes to a handler and splits the
 * reply frames a handler PUBlishes, for the handler-only load generator:
 *
 *   request = SENDER SP CONN_ID SP PATH SP LEN ":" HEADERS TAG LEN ":" BODY ","
 *             TAG "," = JSON object, "}" = tnetstring dict payload
 *   reply   = SENDER SP LEN ":" IDS "," SP BODY      (empty BODY = close)
 *
 * Header values are strings or lists of strings, as Mongrel2 sends them.
 */

/** Header values as Mongrel2 sends them. */
export type WireHeaders = Record<string, string | readonly string[]>;

/** The parts of one request frame. */
export interface RequestFrameParts {
  /** Wire: send_ident, the first token. */
  sender: string;
  /** Wire: the decimal connection id. */
  connId: number;
  /** The envelope path (the request path, without the query). */
  path: string;
  headers: WireHeaders;
  body?: Buffer;
  /** Header encoding; default 'json' (Mongrel2's default protocol). */
  protocol?: 'json' | 'tnetstring';
}

/** An HTTP request, filled in the way Mongrel2 fills it. */
export interface HttpRequestParts {
  sender: string;
  connId: number;
  method?: string;
  /** Path plus an optional `?query`; default '/'. */
  uri?: string;
  /** Client headers, lowercase; `host` defaults to 'localhost'. */
  headers?: WireHeaders;
  body?: Buffer;
  /** Mongrel2's own uppercase extras (DOWNLOAD_CREDITS, ...). */
  extra?: Record<string, string>;
  /** Wire: PATTERN, the route that matched; default '/'. */
  pattern?: string;
  protocol?: 'json' | 'tnetstring';
}

function tnetString(text: string): string {
  return `${Buffer.byteLength(text, 'latin1')}:${text},`;
}

/** A tnetstring dict payload (without its LEN and tag). */
function tnetDictPayload(headers: WireHeaders): string {
  let out = '';
  for (const [key, value] of Object.entries(headers)) {
    out += tnetString(key);
    if (typeof value === 'string') {
      out += tnetString(value);
    } else {
      const items = value.map(tnetString).join('');
      out += `${Buffer.byteLength(items, 'latin1')}:${items}]`;
    }
  }
  return out;
}

/** One request frame as Mongrel2 would send it. */
export function buildRequestFrame(parts: RequestFrameParts): Buffer {
  const body = parts.body ?? Buffer.alloc(0);
  const json = (parts.protocol ?? 'json') === 'json';
  const payload = json ? JSON.stringify(parts.headers) : tnetDictPayload(parts.headers);
  const headerBytes = Buffer.from(payload, json ? 'utf8' : 'latin1');
  const head = `${parts.sender} ${parts.connId} ${parts.path} ${headerBytes.length}:`;
  return Buffer.concat([
    Buffer.from(head, 'latin1'),
    headerBytes,
    Buffer.from(json ? `,${body.length}:` : `}${body.length}:`, 'latin1'),
    body,
    Buffer.from(',', 'latin1'),
  ]);
}

/**
 * An HTTP/1.1 request frame with Mongrel2's own keys (PATH, METHOD,
 * VERSION, URI, QUERY, PATTERN, URL_SCHEME, REMOTE_ADDR, x-forwarded-for).
 */
export function buildHttpRequestFrame(parts: HttpRequestParts): Buffer {
  const uri = parts.uri ?? '/';
  const q = uri.indexOf('?');
  const path = q < 0 ? uri : uri.slice(0, q);
  const body = parts.body ?? Buffer.alloc(0);
  const headers: Record<string, string | readonly string[]> = { PATH: path };
  headers['x-forwarded-for'] = '127.0.0.1';
  Object.assign(headers, { host: 'localhost' }, parts.headers);
  if (body.length > 0 && headers['content-length'] === undefined) {
    headers['content-length'] = String(body.length);
  }
  headers['METHOD'] = parts.method ?? 'GET';
  headers['VERSION'] = 'HTTP/1.1';
  headers['URI'] = uri;
  if (q >= 0) headers['QUERY'] = uri.slice(q + 1);
  headers['PATTERN'] = parts.pattern ?? '/';
  headers['URL_SCHEME'] = 'http';
  headers['REMOTE_ADDR'] = '127.0.0.1';
  Object.assign(headers, parts.extra);
  return buildRequestFrame({
    sender: parts.sender, connId: parts.connId, path, headers, body,
    protocol: parts.protocol ?? 'json',
  });
}

/**
 * A `download.flow_control` credits notice: Mongrel2 wrote `bytes` bytes
 * of a reply to connection `connId`.
 *
 *   SENDER SP ID SP "@*" SP LEN:{"METHOD":"JSON","DOWNLOAD_CREDITS":"N"},18:{"type":"credits"},
 */
export function buildCreditsNotice(sender: string, connId: number, bytes: number): Buffer {
  return buildRequestFrame({
    sender, connId, path: '@*',
    headers: { METHOD: 'JSON', DOWNLOAD_CREDITS: String(bytes) },
    body: Buffer.from('{"type":"credits"}'),
  });
}

/** One reply frame, split. */
export interface ReplyFrame {
  sender: string;
  ids: number[];
  /** Offset of the body in the frame (the body is `frame.subarray(bodyAt)`). */
  bodyAt: number;
  /** True for an `X` (extended, ctl) reply. */
  extended: boolean;
}

/**
 * Splits a reply frame. Returns null when it breaks the grammar (the
 * generator counts those as malformed; Mongrel2 would drop them).
 */
export function parseReplyFrame(frame: Buffer): ReplyFrame | null {
  const sp = frame.indexOf(0x20);
  const colon = sp < 0 ? -1 : frame.indexOf(0x3a, sp + 1);
  if (sp <= 0 || colon < 0 || colon - sp > 11) return null;
  const len = Number(frame.toString('latin1', sp + 1, colon));
  const idsEnd = colon + 1 + len;
  if (!Number.isInteger(len) || len <= 0 || frame[idsEnd] !== 0x2c || frame[idsEnd + 1] !== 0x20) {
    return null;
  }
  let idText = frame.toString('latin1', colon + 1, idsEnd);
  const extended = idText.startsWith('X ');
  if (extended) idText = idText.slice(2);
  const ids = idText.trim().split(' ').map(Number);
  if (ids.some((id) => !Number.isInteger(id) || id < 0)) return null;
  return { sender: frame.toString('latin1', 0, sp), ids, bodyAt: idsEnd + 2, extended };
}
