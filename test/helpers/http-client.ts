/**
 * Raw-TCP HTTP/1.1 clients for byte-exact tests: the bytes written are
 * exactly the bytes given, and responses are parsed from Buffers here (no
 * HTTP library normalises anything in between). Only 127.0.0.1.
 */
import { connect, type Socket } from 'node:net';

/** Options of rawRequest. */
export interface RawRequestOptions {
  /** Give up after this many ms and resolve with what arrived. Default 5000. */
  timeoutMs?: number;
  /** Stop early once this returns true for all bytes received so far. */
  until?: (data: Buffer) => boolean;
}

/** What rawRequest collected. */
export interface RawRequestResult {
  data: Buffer;
  /** The server closed (or reset) the connection. */
  closed: boolean;
  /** Neither `until` nor a close happened within timeoutMs. */
  timedOut: boolean;
}

/** One parsed HTTP response. */
export interface RawResponse {
  /** e.g. 'HTTP/1.1'. */
  version: string;
  status: number;
  reason: string;
  /** Lowercased names; a repeated header becomes an array in arrival order. */
  headers: Record<string, string | string[]>;
  /** Decoded body: chunked framing removed, bytes untouched otherwise. */
  body: Buffer;
  /** Trailer fields of a chunked body (lowercased), else empty. */
  trailers: Record<string, string | string[]>;
  /** Every byte of the response as it came off the wire. */
  raw: Buffer;
}

/** Options of RawConnection.readResponse. */
export interface ReadResponseOptions {
  /** Default 5000 ms; throws on timeout. */
  timeoutMs?: number;
  /** The request was HEAD (or the status forbids a body): read no body. */
  noBody?: boolean;
}

/**
 * Connects to 127.0.0.1:port, writes `bytes`, and collects the reply until
 * `until` says stop, the socket closes, or timeoutMs passes. Never rejects
 * for a timeout or reset; rejects only when the connection is refused.
 */
export async function rawRequest(
  port: number, bytes: Buffer | string, opts: RawRequestOptions = {},
): Promise<RawRequestResult> {
  const conn = await RawConnection.connect(port);
  try {
    await conn.write(bytes);
    const until = opts.until;
    const matched = await conn.waitUntil(
      (data, closed) => closed || (until !== undefined && until(data)),
      opts.timeoutMs ?? 5000,
    );
    return { data: conn.received(), closed: conn.closed, timedOut: !matched };
  } finally {
    conn.close();
  }
}

/**
 * One keep-alive client connection. Bytes that arrive are buffered; each
 * readResponse() consumes one response from the front of the buffer, so
 * pipelined responses can be read one after another.
 */
export class RawConnection {
  /** True once the peer closed or reset the connection. */
  closed = false;
  private buffer = Buffer.alloc(0);
  private consumed = 0;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.notify();
    });
    const onClose = (): void => { this.closed = true; this.notify(); };
    socket.on('end', onClose);
    socket.on('close', onClose);
    socket.on('error', onClose);
  }

  /** Opens a TCP connection to 127.0.0.1:port (rejects on refusal or after timeoutMs, default 5000). */
  static connect(port: number, timeoutMs = 5000): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect 127.0.0.1:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => { clearTimeout(timer); reject(err); });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawConnection(socket));
      });
    });
  }

  /** Writes bytes exactly as given; resolves when handed to the kernel. */
  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** All bytes not yet consumed by readResponse(). */
  received(): Buffer {
    return this.buffer.subarray(this.consumed);
  }

  /**
   * Waits until `check(unconsumed, closed)` is true; resolves false after
   * timeoutMs instead of throwing.
   */
  async waitUntil(check: (data: Buffer, closed: boolean) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this.received(), this.closed)) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.nextEvent(left);
    }
    return true;
  }

  /** Resolves true once the peer has closed, false after ms. */
  waitClosed(ms: number): Promise<boolean> {
    return this.waitUntil((_data, closed) => closed, ms);
  }

  /**
   * Reads one response: body framed by Content-Length, chunked encoding, or
   * (neither) the connection closing. 1xx, 204 and 304 have no body.
   * Throws on a timeout, a close mid-response, or a malformed head.
   */
  async readResponse(opts: ReadResponseOptions = {}): Promise<RawResponse> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    let parsed: ParseResult | undefined;
    const done = await this.waitUntil((data, closed) => {
      parsed = parseResponse(data, closed, opts.noBody ?? false);
      return parsed !== undefined || closed;
    }, timeoutMs);

    if (parsed === undefined) {
      const got = JSON.stringify(this.received().toString('latin1').slice(0, 300));
      const why = done ? 'connection closed' : `timed out after ${timeoutMs} ms`;
      throw new Error(`readResponse: ${why} before a complete response; have ${got}`);
    }
    this.consumed += parsed.length;
    return parsed.response;
  }

  /** Destroys the socket. */
  close(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  private nextEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(wake, ms);
      function wake(): void { clearTimeout(timer); resolve(); }
      this.waiters.add(wake);
    });
  }
}

interface ParseResult { response: RawResponse; length: number }

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Parses one response from the front of `data`; undefined while incomplete.
 * Throws on a malformed status line or framing.
 */
function parseResponse(data: Buffer, closed: boolean, noBody: boolean): ParseResult | undefined {
  const headEnd = data.indexOf(HEAD_END);
  if (headEnd < 0) return undefined;
  const lines = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const match = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!match) throw new Error(`readResponse: bad status line ${JSON.stringify(lines[0])}`);
  const status = Number(match[2]);
  const headers = parseFields(lines.slice(1));
  const bodyStart = headEnd + 4;

  const framed = readBody(data, bodyStart, headers, status, closed, noBody);
  if (framed === undefined) return undefined;
  const response: RawResponse = {
    version: match[1]!, status, reason: match[3] ?? '', headers,
    body: framed.body, trailers: framed.trailers,
    raw: Buffer.from(data.subarray(0, framed.end)),
  };
  return { response, length: framed.end };
}

interface Framed { body: Buffer; trailers: RawResponse['headers']; end: number }

/** Finds the body after the head; undefined while incomplete. */
function readBody(
  data: Buffer, start: number, headers: RawResponse['headers'],
  status: number, closed: boolean, noBody: boolean,
): Framed | undefined {
  if (noBody || status < 200 || status === 204 || status === 304) {
    return { body: Buffer.alloc(0), trailers: {}, end: start };
  }
  const encoding = String(headers['transfer-encoding'] ?? '').toLowerCase();
  if (encoding.includes('chunked')) return readChunked(data, start);

  const lengthField = headers['content-length'];
  if (lengthField !== undefined) {
    const length = Number(Array.isArray(lengthField) ? lengthField[0] : lengthField);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new Error(`readResponse: bad content-length ${JSON.stringify(lengthField)}`);
    }
    if (data.length < start + length) return undefined;
    return { body: Buffer.from(data.subarray(start, start + length)), trailers: {}, end: start + length };
  }
  // No framing: the body runs to the close.
  if (!closed) return undefined;
  return { body: Buffer.from(data.subarray(start)), trailers: {}, end: data.length };
}

/** Decodes a chunked body starting at `start`; undefined while incomplete. */
function readChunked(data: Buffer, start: number): Framed | undefined {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = data.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const sizeText = data.subarray(at, lineEnd).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,15}$/.test(sizeText)) {
      throw new Error(`readResponse: bad chunk size ${JSON.stringify(sizeText)}`);
    }
    const size = parseInt(sizeText, 16);
    at = lineEnd + 2;
    if (size === 0) break;
    if (data.length < at + size + 2) return undefined;
    parts.push(data.subarray(at, at + size));
    at += size + 2;
  }

  // Trailer section: fields up to an empty line.
  const trailerLines: string[] = [];
  for (;;) {
    const lineEnd = data.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const line = data.subarray(at, lineEnd).toString('latin1');
    at = lineEnd + 2;
    if (line === '') break;
    trailerLines.push(line);
  }
  return { body: Buffer.concat(parts), trailers: parseFields(trailerLines), end: at };
}

/** Parses `Name: value` lines into lowercased keys; repeats become arrays. */
function parseFields(lines: string[]): RawResponse['headers'] {
  const fields: RawResponse['headers'] = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`readResponse: bad header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prior = fields[name];
    if (prior === undefined) fields[name] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else fields[name] = [prior, value];
  }
  return fields;
}
