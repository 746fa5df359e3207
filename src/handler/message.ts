/**
 * Parser and classifier for the messages Mongrel2 PUSHes to a handler:
 *
 *   SENDER SP CONN_ID SP PATH SP LEN ":" HEADERS TAG LEN ":" BODY ","
 *                                        TAG "," = JSON object
 *                                        TAG "}" = tnetstring dict payload
 *
 * Works on the frame's bytes; only the small tokens become strings and the
 * body stays a view into the frame.
 */
import { ProtocolError, excerpt, type ErrorContext } from './errors.js';
import { decodeJsonHeaders } from './json-headers.js';
import { latin1Slice, parseTnetDict, type TnetValue } from './tnetstring.js';
import type {
  HeaderMap,
  HeaderProtocol,
  MessageKind,
  Mongrel2Message,
} from './types.js';

const SP = 0x20;
const COLON = 0x3a;
const COMMA = 0x2c;
const BRACE = 0x7d;

/** A netstring LEN has at most 10 digits (bodies may pass 1 GB). */
const MAX_LEN_DIGITS = 10;
/** Connection ids are uint32 on Mongrel2's side. */
const MAX_CONN_ID = 0xffff_ffff;

/** True when every byte of `buf[start, end)` is in `[A-Za-z0-9-]`. */
function isSenderBytes(buf: Buffer, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) || c === 0x2d;
    if (!ok) return false;
  }
  return true;
}

function envelopeError(
  buf: Buffer,
  at: number,
  what: string,
  ctx: ErrorContext = {},
): never {
  throw new ProtocolError('M2F_BAD_ENVELOPE', `bad envelope: ${what}`, {
    ...ctx,
    offset: at,
    value: excerpt(buf, at, at + 24),
  });
}

/** Reads `LEN:` at `pos`; returns the payload bounds (tag at `end`). */
function readNetstring(
  buf: Buffer,
  pos: number,
  name: string,
  ctx: ErrorContext,
): { start: number; end: number } {
  let len = 0;
  let i = pos;
  for (; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === COLON) break;
    if (c < 0x30 || c > 0x39 || i - pos >= MAX_LEN_DIGITS) {
      netstringError(buf, pos, `${name} LEN is not 1-10 digits`, ctx);
    }
    len = len * 10 + (c - 0x30);
  }
  if (i === pos || i >= buf.length) {
    netstringError(buf, pos, `${name} has no LEN ":"`, ctx);
  }

  // Checked before anything is sliced: a fake huge LEN costs nothing.
  const start = i + 1;
  if (len >= buf.length - start) {
    netstringError(buf, pos, `${name} LEN ${len} exceeds the frame`, ctx);
  }
  return { start, end: start + len };
}

function netstringError(
  buf: Buffer,
  at: number,
  what: string,
  ctx: ErrorContext,
): never {
  throw new ProtocolError('M2F_BAD_NETSTRING', `bad netstring: ${what}`, {
    ...ctx,
    offset: at,
    value: excerpt(buf, at, at + 24),
  });
}

/** Reads the connection id token; digits only, no leading zero, <= 2^32-1. */
function readConnId(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  let ok = n >= 1 && n <= 10 && !(n > 1 && buf[start] === 0x30);
  for (let i = start; ok && i < end; i++) {
    const c = buf[i]!;
    ok = c >= 0x30 && c <= 0x39;
  }
  const text = ok ? latin1Slice(buf, start, end) : '';
  if (!ok || Number(text) > MAX_CONN_ID) {
    envelopeError(buf, start, 'connection id is not an unsigned 32-bit number');
  }
  return text;
}

function toTnetHeaders(dict: { [key: string]: TnetValue }): HeaderMap {
  for (const key of Object.keys(dict)) {
    const v = dict[key];
    if (typeof v === 'string') continue;
    const ok = Array.isArray(v) && v.length > 0 &&
      v.every((item) => typeof item === 'string');
    if (!ok) {
      throw new ProtocolError(
        'M2F_BAD_HEADER_VALUE',
        `header ${JSON.stringify(key.slice(0, 40))} is not a string or ` +
          'a non-empty list of strings',
        { value: key.slice(0, 40) },
      );
    }
  }
  return dict as HeaderMap;
}

/**
 * Parses one Mongrel2 request frame. Header encoding is detected from the
 * tag after the header payload (`,` JSON, `}` tnetstring). The body must be
 * a `,` netstring ending exactly at the end of the frame; `body` is a view
 * into `frame`, not a copy.
 * @throws ProtocolError `M2F_BAD_ENVELOPE`, `M2F_BAD_NETSTRING`,
 * `M2F_BAD_TNETSTRING`, `M2F_BAD_JSON_HEADERS`, `M2F_BAD_HEADER_VALUE` or
 * `M2F_TRAILING_BYTES`; never any other error.
 */
export function parseMessage(frame: Buffer): Mongrel2Message {
  // 1. Three single-space-separated tokens: sender, conn id, path.
  const s1 = frame.indexOf(SP);
  if (s1 < 0) envelopeError(frame, 0, 'no space after the sender');
  if (!isSenderBytes(frame, 0, s1)) {
    envelopeError(frame, 0, 'sender is not [A-Za-z0-9-]+');
  }
  const sender = latin1Slice(frame, 0, s1);
  const s2 = frame.indexOf(SP, s1 + 1);
  if (s2 < 0) envelopeError(frame, s1 + 1, 'no space after the conn id', { sender });
  const connId = readConnId(frame, s1 + 1, s2);
  const ctx: ErrorContext = { sender, connId };
  const s3 = frame.indexOf(SP, s2 + 1);
  if (s3 < 0) envelopeError(frame, s2 + 1, 'no space after the path', ctx);
  if (s3 === s2 + 1) envelopeError(frame, s3, 'empty path', ctx);
  const path = latin1Slice(frame, s2 + 1, s3);

  // 2. Header netstring; its tag picks the protocol.
  const h = readNetstring(frame, s3 + 1, 'header', ctx);
  const tag = frame[h.end];
  let protocol: HeaderProtocol;
  let headers: HeaderMap;
  if (tag === COMMA) {
    protocol = 'json';
    headers = decodeJsonHeaders(frame, h.start, h.end);
  } else if (tag === BRACE) {
    protocol = 'tnetstring';
    headers = toTnetHeaders(parseTnetDict(frame, h.start, h.end));
  } else {
    netstringError(frame, h.end, 'header tag is neither "," nor "}"', ctx);
  }

  // 3. Body netstring, which must close the frame.
  const b = readNetstring(frame, h.end + 1, 'body', ctx);
  if (frame[b.end] !== COMMA) {
    netstringError(frame, b.end, 'body tag is not ","', ctx);
  }
  if (b.end + 1 !== frame.length) {
    throw new ProtocolError(
      'M2F_TRAILING_BYTES',
      `${frame.length - b.end - 1} bytes after the body netstring`,
      { ...ctx, offset: b.end + 1, value: excerpt(frame, b.end + 1, frame.length) },
    );
  }
  const body = frame.subarray(b.start, b.end);
  return { sender, connId, path, headers, body, protocol };
}

/** The value of `key`, or its first value when the header was repeated. */
export function headerString(h: HeaderMap, key: string): string | undefined {
  const v = h[key];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

const DIGITS = /^[0-9]{1,15}$/;

/**
 * Wire: `DOWNLOAD_CREDITS`. The byte count Mongrel2 grants (102400 on a
 * connection's first request) or just wrote (credits notices); undefined
 * when absent or not a plain decimal number.
 */
export function creditsOf(m: Mongrel2Message): number | undefined {
  const v = headerString(m.headers, 'DOWNLOAD_CREDITS');
  return v !== undefined && DIGITS.test(v) ? Number(v) : undefined;
}

/** Notice bodies are tiny JSON objects; anything bigger is not a notice. */
const MAX_NOTICE_BODY = 1024;

/** Wire: the `type` field of a notice body, or undefined. Never throws. */
function noticeType(body: Buffer): string | undefined {
  if (body.length === 0 || body.length > MAX_NOTICE_BODY) return undefined;
  try {
    const v: unknown = JSON.parse(latin1Slice(body, 0, body.length));
    if (typeof v !== 'object' || v === null) return undefined;
    const type = (v as { type?: unknown }).type;
    return typeof type === 'string' ? type : undefined;
  } catch {
    return undefined;
  }
}

function classifyNotice(m: Mongrel2Message): MessageKind {
  const type = noticeType(m.body);
  if (type === 'disconnect') return 'notice-disconnect';
  if (type === 'credits' || m.headers['DOWNLOAD_CREDITS'] !== undefined) {
    return 'notice-credits';
  }
  return 'notice-other';
}

/**
 * Says what a parsed message means. Only trusted signals are used: a notice
 * needs path `@*`, `METHOD` `JSON` and no `VERSION` (an HTTP client can send
 * the method JSON but never drops VERSION); a WebSocket frame needs `FLAGS`,
 * a key clients cannot produce. Anything else with an HTTP shape is `http`.
 * Pure; never throws.
 */
export function classifyMessage(m: Mongrel2Message): MessageKind {
  const h = m.headers;
  const method = headerString(h, 'METHOD');
  const isHttp = h['VERSION'] !== undefined;

  if (m.path.charCodeAt(0) === 0x40 && !isHttp) {
    // `@*` notices carry no PATH; a client socket message always does.
    if (m.path === '@*' && method === 'JSON' && h['PATH'] === undefined) {
      return classifyNotice(m);
    }
    if (method === 'JSON' || method === 'XML') return 'socket';
    return 'notice-other';
  }

  if (method === 'WEBSOCKET_HANDSHAKE') return 'websocket-handshake';
  if (method === 'WEBSOCKET' && h['FLAGS'] !== undefined) {
    return 'websocket-frame';
  }
  if (method === undefined && h['UPLOAD_STREAM'] !== undefined) {
    return 'upload-chunk';
  }
  return 'http';
}
