/**
 * What the uwsgi and FastCGI sockets share: turning a web server's CGI
 * variables into the HTTP request Node's parser reads, and running one
 * request through the app with its response handed back de-chunked.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { AppSocket, type SocketPeer } from './app-socket.js';
import { BadRequestHead, buildRequestHead } from './request-head.js';
import { ResponseReframer, ReframeError } from './response-reframer.js';
import type { HeaderMap, Logger } from './types.js';

/** How a request reached the unit. */
export type Transport = 'zeromq' | 'http' | 'uwsgi' | 'fastcgi';
/** The standard sockets (everything but ZeroMQ). */
export type SocketKind = Exclude<Transport, 'zeromq'>;
/** Every transport, in the order metrics list them. */
export const TRANSPORTS: readonly Transport[] = ['zeromq', 'http', 'uwsgi', 'fastcgi'];

/** Limits of the standard sockets (they face clients Mongrel2 never saw). */
export interface SocketLimits {
  /** Bytes of a request head (HTTP), or of all variables (uwsgi, FastCGI). */
  readonly maxHeaderSize: number;
  /** Header fields per request. */
  readonly maxHeaders: number;
  /** Body bytes per request; 0 for no limit. */
  readonly maxBody: number;
  /** Time for a request's head to arrive (slow clients). */
  readonly headerTimeoutMs: number;
  /** Time for a whole request, body included, to arrive. */
  readonly requestTimeoutMs: number;
  /** An idle connection (between requests, or a stalled body) is closed after this. */
  readonly idleTimeoutMs: number;
}

/** Defaults of {@link SocketLimits}. */
export const DEFAULT_SOCKET_LIMITS: SocketLimits = Object.freeze({
  maxHeaderSize: 16 * 1024,
  maxHeaders: 100,
  maxBody: 64 * 1024 * 1024,
  headerTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 15_000,
});

/** What the gateway servers need from their unit. */
export interface GatewayContext {
  readonly server: Server;
  readonly limits: SocketLimits;
  readonly defaultHost: string;
  readonly log: Logger;
  /** A connection or request refused for bad input or a limit. */
  refused(kind: SocketKind, reason: string): void;
  /** True while the unit drains: finish the request, keep no connection. */
  readonly draining: () => boolean;
}

/**
 * The two deadlines of a gateway request: its head must arrive within
 * headerTimeoutMs, the whole request within requestTimeoutMs. Starting a
 * timer again replaces it; clear() stops both.
 */
export class RequestTimers {
  #head: NodeJS.Timeout | null = null;
  #request: NodeJS.Timeout | null = null;

  constructor(private readonly limits: SocketLimits) {}

  startHead(onTimeout: () => void): void {
    this.headArrived();
    this.#head = setTimeout(onTimeout, this.limits.headerTimeoutMs);
  }

  /** Stops the head timer. */
  headArrived(): void {
    if (this.#head) clearTimeout(this.#head);
    this.#head = null;
  }

  startRequest(onTimeout: () => void): void {
    if (this.#request) clearTimeout(this.#request);
    this.#request = setTimeout(onTimeout, this.limits.requestTimeoutMs);
  }

  clear(): void {
    this.headArrived();
    if (this.#request) clearTimeout(this.#request);
    this.#request = null;
  }
}

/** A request refused before the app saw it, with the status to answer. */
export class GatewayRefusal extends Error {
  constructor(readonly status: number, readonly reason: string) {
    super(reason);
  }
}

/** A request rebuilt from CGI variables. */
export interface GatewayRequest {
  readonly head: Buffer;
  /** Declared body bytes; undefined when the body length is unknown (chunked). */
  readonly bodyLength: number | undefined;
  readonly method: string;
  readonly remote: string;
  readonly remotePort: number;
  readonly tls: boolean;
}

// Hop-by-hop headers of the client's connection to the web server; the
// gateway connection has its own framing.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer',
  'content-length', 'content-type',
]);

/**
 * Builds the request from CGI variables as nginx sends them (REQUEST_METHOD,
 * REQUEST_URI, SERVER_PROTOCOL, CONTENT_*, HTTP_*, REMOTE_ADDR, HTTPS ...).
 * `chunkedAllowed`: the protocol can carry a body of unknown length
 * (FastCGI). Throws {@link GatewayRefusal}.
 */
export function requestFromVars(
  vars: readonly (readonly [string, string])[], limits: SocketLimits, defaultHost: string,
  chunkedAllowed: boolean,
): GatewayRequest {
  const cgi = new Map<string, string>();
  const headers: HeaderMap = Object.create(null) as HeaderMap;
  let count = 0;
  for (const [key, value] of vars) {
    if (key.startsWith('HTTP_')) {
      const name = key.slice(5).toLowerCase().replace(/_/g, '-');
      if (HOP_BY_HOP.has(name)) continue;
      if (++count > limits.maxHeaders) throw new GatewayRefusal(431, 'too many headers');
      const prev = headers[name];
      headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    } else {
      cgi.set(key, value);
    }
  }
  const method = cgi.get('REQUEST_METHOD') ?? '';
  headers['METHOD'] = method;
  // nginx passes $server_protocol, which says HTTP/2.0 for an h2 client;
  // the app sees the HTTP/1.x semantics it is served with.
  headers['VERSION'] = cgi.get('SERVER_PROTOCOL') === 'HTTP/1.0' ? 'HTTP/1.0' : 'HTTP/1.1';
  let uri = cgi.get('REQUEST_URI');
  if (uri === undefined || uri === '') {
    const query = cgi.get('QUERY_STRING') ?? '';
    uri = `${cgi.get('SCRIPT_NAME') ?? ''}${cgi.get('PATH_INFO') ?? ''}` || '/';
    if (query !== '') uri += `?${query}`;
  }
  headers['URI'] = uri;
  const contentType = cgi.get('CONTENT_TYPE');
  if (contentType) headers['content-type'] = contentType;
  if (headers['host'] === undefined) {
    headers['host'] = cgi.get('SERVER_NAME') || defaultHost;
  }
  const lengthText = cgi.get('CONTENT_LENGTH') ?? '';
  let bodyLength: number | undefined = 0;
  if (lengthText !== '') {
    if (!/^\d{1,15}$/.test(lengthText)) throw new GatewayRefusal(400, 'bad CONTENT_LENGTH');
    bodyLength = Number(lengthText);
    // The content-length header is only re-declared when a body exists
    // or was declared, as buildRequestHead does for Mongrel2.
    headers['content-length'] = lengthText;
  } else if (chunkedAllowed && /(^|,)\s*chunked\s*$/i.test(String(headers['transfer-encoding'] ?? ''))) {
    bodyLength = undefined;
  }
  if (limits.maxBody > 0 && bodyLength !== undefined && bodyLength > limits.maxBody) {
    throw new GatewayRefusal(413, `body of ${bodyLength} bytes over the limit`);
  }
  let head: Buffer;
  try {
    head = buildRequestHead(headers, uri, { defaultHost, bodyLength });
  } catch (err) {
    if (err instanceof BadRequestHead) throw new GatewayRefusal(400, err.reason);
    throw err;
  }
  const https = (cgi.get('HTTPS') ?? '').toLowerCase();
  return {
    head,
    bodyLength,
    method,
    remote: cgi.get('REMOTE_ADDR') ?? '',
    remotePort: Number(cgi.get('REMOTE_PORT') ?? 0) || 0,
    tls: https === 'on' || https === '1' || cgi.get('REQUEST_SCHEME') === 'https'
      || cgi.get('UWSGI_SCHEME') === 'https',
  };
}

/** The app socket of a request that came through uwsgi or FastCGI. */
export class GatewaySocket extends AppSocket {
  constructor(peer: SocketPeer, readonly via: SocketKind, request: GatewayRequest) {
    super(peer, request.remote, request.tls);
    this.remotePort = request.remotePort;
  }
}

/** How an exchange writes its response in the gateway's own protocol. */
export interface GatewayOutput {
  head(status: number, reason: string, lines: string): void;
  body(chunk: Buffer): void;
  /** The response ended; `complete` is false when it was cut short. */
  end(complete: boolean): void;
}

/**
 * One request on its way through the app: the head and body go into a
 * {@link GatewaySocket} on the app's server, and what Node writes back is
 * re-framed for the gateway's peer. Writes wait for the peer's socket to
 * drain, so a slow web server holds a large download back.
 */
export class GatewayExchange implements SocketPeer {
  readonly socket: GatewaySocket;
  /** The request body as it arrives, or null for a request without one. */
  readonly body: PassThrough | null;
  readonly #reframer: ResponseReframer;
  readonly #out: GatewayOutput;
  readonly #downstream: Socket;
  readonly #log: Logger;
  #ended = false;
  #chunked: boolean;
  #bodyLeft: number;

  constructor(
    server: Server, request: GatewayRequest, via: SocketKind,
    downstream: Socket, out: GatewayOutput, log: Logger,
  ) {
    this.#out = out;
    this.#downstream = downstream;
    this.#log = log;
    this.socket = new GatewaySocket(this, via, request);
    this.#chunked = request.bodyLength === undefined;
    this.#bodyLeft = request.bodyLength ?? Infinity;
    this.body = request.bodyLength === 0 ? null : new PassThrough();
    this.#reframer = new ResponseReframer({
      head: (status, reason, lines) => out.head(status, reason, lines),
      body: (chunk) => {
        if (chunk.length > 0) out.body(chunk);
      },
      end: (complete) => this.#finish(complete),
    }, request.method === 'HEAD');
    server.emit('connection', this.socket);
    this.socket.feed(request.head);
    if (this.body) this.socket.feed(this.body);
  }

  /** True once the response has been handed to the gateway's peer in full. */
  get ended(): boolean {
    return this.#ended;
  }

  /** True once the response head went out (a refusal can no longer replace it). */
  get headSent(): boolean {
    return this.#reframer.headSent;
  }

  /** True once the whole request body has been passed on (or there is none). */
  get bodyDone(): boolean {
    return this.body === null || this.body.writableEnded;
  }

  /**
   * Passes request body bytes on; returns false when the app is not
   * reading (pause the source until the body's 'drain'). Bytes past the
   * declared length are dropped.
   */
  feedBody(chunk: Buffer): boolean {
    if (!this.body || this.body.writableEnded) return true;
    const piece = chunk.subarray(0, Math.min(chunk.length, this.#bodyLeft));
    if (this.#bodyLeft !== Infinity) this.#bodyLeft -= piece.length;
    let ok = true;
    if (piece.length > 0) {
      ok = this.#chunked
        ? this.body.write(Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]))
        : this.body.write(piece);
    }
    if (this.#bodyLeft === 0) this.body.end();
    return ok;
  }

  /**
   * Pauses `source` until the app has read what it was given: the body
   * drained, was finished, or the exchange ended. Call after feedBody()
   * returned false.
   */
  holdBack(source: Socket): void {
    const body = this.body;
    if (!body || this.bodyDone || this.#ended) return;
    source.pause();
    const go = (): void => {
      body.off('drain', go);
      body.off('finish', go);
      body.off('close', go);
      source.resume();
    };
    body.on('drain', go);
    body.on('finish', go);
    body.on('close', go);
  }

  /**
   * The web server says the body is complete (FastCGI's empty stdin).
   * Returns false when a declared length was not reached.
   */
  endBody(): boolean {
    if (!this.body || this.body.writableEnded) return true;
    if (this.#chunked) this.body.end('0\r\n\r\n');
    else return false;
    return true;
  }

  /** The web server went away: abort the request on the app's side. */
  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.socket.destroy();
  }

  // SocketPeer: what Node writes.
  write(chunks: Buffer[], done: (err?: Error | null) => void): void {
    try {
      for (const c of chunks) this.#reframer.write(c);
    } catch (err) {
      if (!(err instanceof ReframeError)) throw err;
      this.#log.error({ reason: err.message }, 'app response unreadable; connection closed');
      this.#reframer.finish();
      done();
      return;
    }
    if (this.#downstream.writableNeedDrain && !this.#downstream.destroyed) {
      const go = (): void => {
        this.#downstream.off('drain', go);
        this.#downstream.off('close', go);
        done();
      };
      this.#downstream.on('drain', go);
      this.#downstream.on('close', go);
    } else {
      done();
    }
  }

  end(done: (err?: Error | null) => void): void {
    this.#reframer.finish();
    done();
  }

  destroyed(): void {
    this.#reframer.finish();
  }

  #finish(complete: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#out.end(complete);
    // Node would keep the in-memory connection for a next request that
    // never comes: release it once the write callbacks have run.
    setImmediate(() => this.socket.destroy());
  }
}
