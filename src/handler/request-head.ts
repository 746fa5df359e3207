/**
 * Turns a Mongrel2 request message back into the bytes of an HTTP/1.x
 * request head, which Node's own HTTP parser then reads from the injected
 * connection. Everything stays a latin1 byte string, so header values that
 * are not UTF-8 reach the app exactly as Node would give them from a socket.
 */
import type { HeaderMap } from './types.js';

/** Why a message cannot become a request; the caller answers 400 and closes. */
export class BadRequestHead extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** Options for {@link buildRequestHead}. */
export interface RequestHeadOptions {
  /** Host header to add when the client sent none (HTTP/1.0). */
  defaultHost: string;
  /**
   * Body length to declare: the body netstring's length, the upload file's
   * size, or `undefined` for a streamed body of unknown length (then the head
   * says `transfer-encoding: chunked` and the caller frames the chunks).
   */
  bodyLength: number | undefined;
}

// Keys Mongrel2 spells in uppercase are its own (METHOD, PATH, ...); client
// header names always arrive lowercased, so case alone tells them apart.
function isMongrel2Key(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 65 && c <= 90;
}

// Headers m2fleet sets itself or must not pass on: the body framing is
// re-declared from what Mongrel2 delivered (it de-chunks and spools bodies),
// Mongrel2 already answered any Expect, and the upload paths are internal.
const DROPPED = new Set([
  'content-length',
  'transfer-encoding',
  'expect',
  'x-mongrel2-upload-start',
  'x-mongrel2-upload-done',
]);

// A list here means two different answers to one framing question: the
// request-smuggling shape, refused rather than guessed.
const SINGLE_VALUED = ['content-length', 'host', 'transfer-encoding'];

// CR, LF and NUL would let a value end the head early; Mongrel2 refuses
// them, so seeing one means the message did not come from Mongrel2.
const UNSAFE_VALUE = /[\r\n\0]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const METHOD = /^[A-Z0-9_-]{1,20}$/;
const VERSION = /^HTTP\/1\.[01]$/;

function one(headers: HeaderMap, key: string): string | undefined {
  const v = headers[key];
  return Array.isArray(v) ? v[0] : v;
}

function requestLine(headers: HeaderMap, path: string): string {
  const method = one(headers, 'METHOD') ?? '';
  const version = one(headers, 'VERSION') ?? '';
  if (!METHOD.test(method)) throw new BadRequestHead(`bad method ${method}`);
  if (!VERSION.test(version)) {
    throw new BadRequestHead(`bad version ${version}`);
  }
  let uri = one(headers, 'URI');
  if (uri === undefined) {
    const query = one(headers, 'QUERY');
    uri = query === undefined ? path : `${path}?${query}`;
  }
  if (uri.length === 0 || /[\s\0]/.test(uri)) {
    throw new BadRequestHead('bad request target');
  }
  return `${method} ${uri} ${version}\r\n`;
}

/**
 * Builds `METHOD URI VERSION`, the client's headers (repeated ones as
 * repeated lines, so Node combines them as it would off a socket) and a
 * framing header for the body. Throws {@link BadRequestHead} for a message
 * that must be refused: list-valued content-length, host or
 * transfer-encoding, a value with CR/LF/NUL, or a bad request line.
 */
export function buildRequestHead(
  headers: HeaderMap,
  path: string,
  options: RequestHeadOptions,
): Buffer {
  for (const key of SINGLE_VALUED) {
    if (Array.isArray(headers[key])) {
      throw new BadRequestHead(`repeated ${key}`);
    }
  }
  let head = requestLine(headers, path);
  let hasHost = false;
  for (const key in headers) {
    if (isMongrel2Key(key) || DROPPED.has(key)) continue;
    if (!TOKEN.test(key)) throw new BadRequestHead(`bad header name ${key}`);
    if (key === 'host') hasHost = true;
    const value = headers[key];
    for (const v of Array.isArray(value) ? value : [value]) {
      if (UNSAFE_VALUE.test(v)) {
        throw new BadRequestHead(`control byte in ${key}`);
      }
      head += `${key}: ${v}\r\n`;
    }
  }
  if (!hasHost) head += `host: ${options.defaultHost}\r\n`;
  // A bodiless request the client framed no body for stays that way, as it
  // would off a socket (a GET does not suddenly say content-length: 0).
  const framed = headers['content-length'] !== undefined
    || headers['transfer-encoding'] !== undefined;
  if (options.bodyLength === undefined) head += 'transfer-encoding: chunked\r\n';
  else if (options.bodyLength > 0 || framed) {
    head += `content-length: ${options.bodyLength}\r\n`;
  }
  head += '\r\n';
  return Buffer.from(head, 'latin1');
}
