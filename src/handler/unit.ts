/**
 * A handler unit: one Mongrel2 consumer. It owns a PULL/PUB pair per
 * endpoint, turns each request into bytes on an in-memory connection of the
 * app's http.Server, and turns what Node writes back into reply frames.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Connection, type ConnectionOwner } from './connection.js';
import { DOWNLOAD_CREDITS } from './flow-gate.js';
import {
  BAD_REQUEST, HANDLER_TIMED_OUT, NOT_ALLOWED, TOO_LARGE,
} from './canned-responses.js';
import { DeferredQueue } from './deferred-queue.js';
import { DRAIN_MARKER, Endpoint } from './endpoint.js';
import { DEFAULT_SOCKET_LIMITS, GatewaySocket, type SocketKind } from './gateway.js';
import { startSocketServer, type SocketServer } from './socket-servers.js';
import type {
  ActiveRequest, FlowControl, UnitCounters, UnitOptions,
} from './unit-options.js';
import { M2FleetError } from './errors.js';
import { classifyMessage, creditsOf, headerString, parseMessage } from './message.js';
import { Mongrel2Socket } from './mongrel2-socket.js';
import { PUBLISH_MARKER, PushHub } from './push-hub.js';
import { pushHubs } from './push.js';
import { encodeClose, encodeCtl, encodeReply, splitTargets } from './reply.js';
import { BadRequestHead, buildRequestHead } from './request-head.js';
import { StreamedUpload } from './streamed-upload.js';
import type { Logger, Mongrel2Message } from './types.js';
import { discardUpload, openUpload, UploadRefused } from './upload.js';
import { CLOSE_CODE, clientFrame, closeFrame, parseFlags } from './websocket-frame.js';

export type {
  ActiveRequest, CompletedRequest, FlowControl, UnitCounters, UnitOptions,
} from './unit-options.js';

/** A message held back while the unit is at its in-flight cap. */
interface Deferred {
  endpoint: Endpoint;
  key: string;
  msg: Mongrel2Message;
  kind: 'http' | 'upload-chunk';
}

/** How a request is handed to the app (see #dispatch). */
interface DispatchOptions {
  /** Request-line method instead of METHOD (a handshake is a GET). */
  method?: string;
  /** Count it against the in-flight cap (not an upgrade, which never ends as a request). */
  counted: boolean;
}

const NO_BODY = Buffer.alloc(0);
const KEEPALIVE_MS = 5000;

/** Deferred messages beyond which the unit stops reading. */
const DEFER_LIMIT = 1024;

function mongrel2Keys(m: Mongrel2Message): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key in m.headers) {
    const c = key.charCodeAt(0);
    if (c >= 65 && c <= 90) out[key] = headerString(m.headers, key) ?? '';
  }
  return out;
}

/** One Mongrel2 consumer serving one app. */
export class HandlerUnit {
  readonly counters: UnitCounters = {
    requests: 0, malformed: 0, refused: 0, notices: 0,
    transports: { zeromq: 0, http: 0, uwsgi: 0, fastcgi: 0 },
    socketRefused: { http: 0, uwsgi: 0, fastcgi: 0 },
  };
  readonly #options: UnitOptions;
  readonly #log: Logger;
  readonly #endpoints: Endpoint[];
  readonly #conns = new Map<string, Connection>();
  /** Per app socket, how to end each response not closed yet (see #track). */
  readonly #openResponses = new WeakMap<object, Set<() => void>>();
  /** Requests the app is working on (from 'request' until it ends them). */
  #inflight = 0;
  /** Requests handed to Node that the app has not seen yet. */
  #unstarted = 0;
  readonly #deferred = new DeferredQueue<Deferred>();
  #capacityWaiters: (() => void)[] = [];
  #loops: Promise<void>[] = [];
  #socketServers: SocketServer[] = [];
  #sweeper: NodeJS.Timeout | null = null;
  #keepAlive: NodeJS.Timeout | null = null;
  readonly #hub: PushHub;
  #stopping = false;
  #lastReceived = 0;
  #flowControl: FlowControl;
  // Insertion order is start order, so the first entry is the oldest.
  readonly #active = new Set<ActiveRequest>();

  constructor(options: UnitOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#flowControl = options.flowControl;
    this.#endpoints = options.endpoints.map((spec) => new Endpoint(spec, {
      ...options, identity: options.identity,
    }, options.log));
    this.#endpoints.forEach((endpoint, index) => {
      endpoint.onMongrel2Gone = () => this.#mongrel2Gone(index);
    });
    options.server.prependListener('request', (req, res) => this.#track(req, res));
    this.#hub = new PushHub({
      endpoints: this.#endpoints,
      log: this.#log,
      connection: (key) => this.#conns.get(key),
      relay: options.onRelay ? (frame) => options.onRelay!(0, frame) : undefined,
    });
    pushHubs().add(this.#hub);
    // Node drops a CONNECT that no listener wants without a word; answer
    // it, unless the app listens for it itself. (Not 'upgrade': a listener
    // there would turn every Upgrade header into an upgrade.)
    options.server.on('connect', (_req: IncomingMessage, socket: Mongrel2Socket) => {
      if (options.server.listenerCount('connect') > 1) return;
      socket.end(NOT_ALLOWED);
    });
  }

  /** Requests handed to the app and not yet answered. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Connections with state (keep-alive ones included). */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Connects every endpoint (subscription first) and starts pulling, then
   * starts the standard sockets.
   */
  async start(): Promise<void> {
    await Promise.all(this.#endpoints.map((e) => e.connect(this.#options.subscribeTimeoutMs)));
    this.#loops = this.#endpoints.map((e, i) => this.#receiveLoop(e, i));
    const context = {
      server: this.#options.server,
      limits: this.#options.socketLimits ?? DEFAULT_SOCKET_LIMITS,
      defaultHost: this.#options.defaultHost,
      log: this.#log,
      draining: () => this.#stopping,
      refused: (kind: SocketKind) => {
        this.counters.socketRefused[kind]++;
      },
    };
    for (const listener of this.#options.sockets ?? []) {
      this.#socketServers.push(await startSocketServer(listener, context));
    }
    const sweepMs = Math.max(1000, Math.min(30_000, this.#options.idleTimeoutMs / 2));
    this.#sweeper = setInterval(() => this.#sweep(), sweepMs);
    this.#sweeper.unref();
    const keepAliveMs = this.#options.websocketKeepAliveMs ?? KEEPALIVE_MS;
    // Checked twice per period, so no socket stays silent much longer than it.
    this.#keepAlive = setInterval(() => this.#keepWebSocketsAlive(keepAliveMs / 2), keepAliveMs / 2);
    this.#keepAlive.unref();
  }

  /**
   * Graceful stop: take no more requests, let those in flight finish (up to
   * `graceMs`), flush their replies, close the sockets.
   *
   * In a fleet the master feeds the unit (pullSpec) and ends with a drain
   * marker, so the unit reads exactly what was meant for it. A unit
   * connected to Mongrel2 directly cannot know that: closing a PULL throws
   * away whatever Mongrel2 had already pushed into it. It goes on taking
   * requests until its PULLs have been quiet for `quietMs` with nothing in
   * flight, then closes them.
   * Known shortcoming of that direct mode: a request Mongrel2 sends in the
   * instant of the close is lost (its client waits for Mongrel2's
   * timeout); under steady load the unit closes when half the grace time
   * is spent. m2fleet's own CLI always uses the fed mode.
   */
  async stop(graceMs: number, quietMs = 100): Promise<void> {
    this.#stopping = true;
    for (const s of this.#socketServers) s.close();
    // Connections accepted just before the close get this long to send
    // their request before idle ones are closed.
    const settledBy = Date.now() + Math.min(500, graceMs / 4);
    const deadline = Date.now() + graceMs;
    const quietBy = Date.now() + graceMs / 2;
    // Fed by the master (inbox.ts): read up to its drain marker, which
    // comes after the last message meant for this unit.
    const fed = this.#endpoints.every((e) => e.spec.pullSpec);
    while (Date.now() < quietBy && (fed
      ? this.#endpoints.some((e) => !e.drained)
      : this.#inflight > 0 || this.#deferred.length > 0
        || Date.now() - this.#lastReceived < quietMs)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const e of this.#endpoints) e.stopPulling();
    this.#wakeCapacity();
    // Open WebSockets would outlive the unit: tell their clients to come
    // back (1001 going away; they reconnect to a unit that stays).
    pushHubs().delete(this.#hub);
    for (const conn of this.#conns.values()) {
      if (conn.websocket && conn.open) conn.goAway(closeFrame(CLOSE_CODE.goingAway, 'server restarting'));
    }
    const busy = (): boolean => this.#inflight > 0 || this.#deferred.length > 0
      || [...this.#conns.values()].some((c) => (c.pending > 0 || c.flushing) && !c.peerGone)
      || this.#socketServers.some((s) => s.connections > 0);
    while (busy() && Date.now() < deadline) {
      if (Date.now() >= settledBy) for (const s of this.#socketServers) s.closeIdle();
      await new Promise((r) => setTimeout(r, 20));
    }
    if (busy()) {
      this.#log.warn({ inflight: this.#inflight, deferred: this.#deferred.length },
        'stop: requests still running; abandoning');
    }
    for (const s of this.#socketServers) s.closeAll();
    if (this.#sweeper) clearInterval(this.#sweeper);
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    await Promise.all(this.#loops);
    await Promise.all(this.#endpoints.map((e) => e.close()));
  }

  async #receiveLoop(endpoint: Endpoint, index: number): Promise<void> {
    for (;;) {
      // At the in-flight cap the unit still reads: the notices and upload
      // pieces that let its requests finish come on this same socket.
      // New requests wait in order in #deferred; only a very long backlog
      // stops the reading (and lets Mongrel2's queue fill instead).
      if (this.#deferred.length >= DEFER_LIMIT && !endpoint.pull.closed) {
        await new Promise<void>((r) => { this.#capacityWaiters.push(r); });
        continue;
      }
      let frames: Buffer[];
      try {
        frames = await endpoint.pull.receive();
      } catch (err) {
        if (endpoint.pull.closed) return;
        this.#log.error({ err: String(err) }, 'receive failed');
        continue;
      }
      this.#lastReceived = Date.now();
      if (endpoint.spec.pullSpec && frames.length === 1 && frames[0]!.equals(DRAIN_MARKER)) {
        endpoint.drained = true;
        endpoint.stopPulling();
        return;
      }
      if (frames.length !== 1) {
        this.counters.malformed++;
        this.#log.warn({ parts: frames.length }, 'malformed message: multi-part; skipped');
        continue;
      }
      this.#onFrame(endpoint, index, frames[0]!);
    }
  }

  #onFrame(endpoint: Endpoint, index: number, frame: Buffer, relayed = false): void {
    let msg: Mongrel2Message;
    const max = this.#options.maxMessageSize;
    if (max >= 0 && frame.length > max) {
      this.#tooLarge(endpoint, index, frame);
      return;
    }
    try {
      msg = parseMessage(frame);
    } catch (err) {
      this.counters.malformed++;
      const e = err as M2FleetError;
      this.#log.warn({ code: e.code, bytes: frame.length, reason: e.message },
        'malformed message skipped');
      return;
    }
    const key = `${index} ${msg.sender} ${msg.connId}`;
    const kind = classifyMessage(msg);
    if (this.#log.isDebug()) {
      this.#log.debug({ kind, connId: msg.connId, path: msg.path, bytes: msg.body.length,
        stream: headerString(msg.headers, 'UPLOAD_STREAM') }, 'message');
    }
    // In a fleet the master routes every message of a connection to the
    // unit holding it (src/node/inbox.ts). A notice, upload piece or
    // WebSocket frame can still reach a unit that does not hold the
    // connection: units fed by Mongrel2 directly, the unit that replaced
    // the holder in a reload, another host in cluster mode. Hand those to
    // the sibling units (once; a relayed message is never relayed again)
    // so that the owner's credits, streams and sockets keep moving.
    // Known shortcoming: a relayed WebSocket frame can reach its owner
    // after a later one that came directly, so frames relayed around a
    // reload can be reordered (Mongrel2's messages carry no sequence
    // number to put them back in order).
    const held = kind === 'websocket-frame'
      ? this.#conns.get(key)?.websocket === true
      : this.#conns.has(key) || this.#deferred.has(key);
    if ((kind === 'notice-credits' || kind === 'notice-disconnect' || kind === 'upload-chunk'
      || kind === 'websocket-frame') && !held) {
      if (!relayed) this.#options.onRelay?.(index, frame);
      if (kind !== 'notice-disconnect') return;
    }
    // Order matters within a connection only: a message waits if an
    // earlier one of its connection waits, and a new request waits at the
    // cap; the pieces of uploads already running always go through. A
    // handshake is not held at the cap: the WebSocket it opens is no
    // request in flight.
    const request = kind === 'http' || kind === 'websocket-handshake';
    if ((request || kind === 'upload-chunk')
      && (this.#deferred.has(key) || (kind === 'http' && this.#atCap()))) {
      this.#deferred.push({ endpoint, key, msg, kind: request ? 'http' : 'upload-chunk' });
      return;
    }
    switch (kind) {
      case 'http':
      case 'websocket-handshake':
        this.#onRequest(endpoint, key, msg);
        return;
      case 'websocket-frame':
        this.#onWebSocketFrame(key, msg);
        return;
      case 'notice-disconnect':
        this.counters.notices++;
        this.#deferred.drop(key);
        this.#conns.get(key)?.disconnect();
        return;
      case 'notice-credits':
        this.counters.notices++;
        this.#conns.get(key)?.credit(creditsOf(msg) ?? 0);
        return;
      case 'upload-chunk':
        this.#onUploadChunk(key, msg);
        return;
      default:
        this.counters.notices++;
        this.#log.debug({ path: msg.path, connId: msg.connId }, 'message ignored');
    }
  }

  // The size limit is enforced here rather than by ZeroMQ: libzmq drops
  // the whole connection to Mongrel2 on an oversize frame and does not
  // come back. The client gets a 413 when the frame is readable at all.
  #tooLarge(endpoint: Endpoint, index: number, frame: Buffer): void {
    this.counters.refused++;
    let msg: Mongrel2Message;
    try {
      msg = parseMessage(frame);
    } catch {
      this.#log.warn({ bytes: frame.length }, 'oversize malformed message skipped');
      return;
    }
    this.#log.warn({ connId: msg.connId, bytes: frame.length }, 'request too large; refused');
    const key = `${index} ${msg.sender} ${msg.connId}`;
    const kind = classifyMessage(msg);
    if (kind === 'http') {
      this.#connection(endpoint, key, msg).refuse(TOO_LARGE);
    } else if (kind === 'websocket-frame') {
      // 1009 to the client; a frame this big is never relayed. Any unit
      // may close any connection of its Mongrel2: when another unit holds
      // it, that unit learns of the close from the notice its next write
      // or keep-alive brings back.
      const conn = this.#conns.get(key);
      const close = closeFrame(CLOSE_CODE.tooBig, 'message too big');
      if (conn?.websocket) conn.goAway(close);
      else this.#closeFor(endpoint, msg.sender, msg.connId, close);
    }
  }

  // Writes a last frame and closes a connection this unit does not hold.
  #closeFor(endpoint: Endpoint, sender: string, connId: string, last: Buffer): void {
    if (endpoint.pub.closed) return;
    endpoint.replies.enqueue(encodeReply(sender, [connId], last));
    endpoint.replies.enqueue(encodeClose(sender, [connId]));
  }

  #connection(endpoint: Endpoint, key: string, msg: Mongrel2Message): Connection {
    let conn = this.#conns.get(key);
    // A request on an id that ended means Mongrel2 restarted and reuses ids.
    if (!conn || conn.peerGone || conn.closed) {
      conn = new Connection(this.#owner(endpoint), msg.sender, msg.connId, key);
      this.#conns.set(key, conn);
    }
    conn.lastActive = Date.now();
    // DOWNLOAD_CREDITS comes only with the first request a connection sends
    // to any handler. A later request of that connection can reach another
    // endpoint (another route), and a restarted m2fleet sees old
    // connections, so once flow control is known to be on it is assumed
    // for every connection, with the full credit (what went before was
    // answered in full).
    const credits = creditsOf(msg);
    if (credits !== undefined && this.#flowControl !== 'off') {
      if (this.#flowControl === 'auto') {
        this.#flowControl = 'on';
        this.#options.onFlowControl?.();
      }
      conn.flow.useCredits(credits);
    } else if (this.#flowControl === 'on') {
      conn.flow.useCredits(DOWNLOAD_CREDITS);
    }
    return conn;
  }

  #onRequest(endpoint: Endpoint, key: string, msg: Mongrel2Message): void {
    if (classifyMessage(msg) === 'websocket-handshake') {
      this.#onHandshake(endpoint, key, msg);
      return;
    }
    const conn = this.#connection(endpoint, key, msg);
    const start = msg.headers['x-mongrel2-upload-start'];
    const done = msg.headers['x-mongrel2-upload-done'];
    if (start !== undefined && done === undefined && msg.body.length === 0) {
      // Mongrel2 is spooling the body; the done message follows.
      conn.uploadStart = typeof start === 'string' ? start : null;
      return;
    }
    if (start !== undefined || done !== undefined) {
      void this.#onUploadDone(endpoint, conn, msg, start, done);
      return;
    }
    const streamed = headerString(msg.headers, 'UPLOAD_STREAM');
    if (streamed !== undefined) {
      this.#onStreamStart(endpoint, conn, msg);
      return;
    }
    this.#dispatch(endpoint, conn, msg, msg.body, msg.body.length);
  }

  // Mongrel2 checked the upgrade headers and computed the accept key (the
  // body), but the 101 is the handler's to send. The app gets the
  // handshake as the GET it was, through Node's parser: an app listening
  // for 'upgrade' (ws's handleUpgrade) writes the 101 and then frames
  // into the socket; an app that does not sees an ordinary request.
  #onHandshake(endpoint: Endpoint, key: string, msg: Mongrel2Message): void {
    const conn = this.#connection(endpoint, key, msg);
    conn.websocket = true;
    conn.lastHeard = Date.now();
    const upgrades = this.#options.server.listenerCount('upgrade') > 0;
    this.#dispatch(endpoint, conn, msg, NO_BODY, 0, { method: 'GET', counted: !upgrades });
  }

  // One client frame, unmasked and whole (Mongrel2 joins fragments): it
  // goes to the app's socket re-framed as the client sent it, for the
  // app's WebSocket library to read.
  #onWebSocketFrame(key: string, msg: Mongrel2Message): void {
    const conn = this.#conns.get(key)!;
    conn.lastHeard = Date.now();
    conn.lastActive = conn.lastHeard;
    const first = parseFlags(headerString(msg.headers, 'FLAGS'));
    if (first === undefined) {
      this.counters.malformed++;
      this.#log.warn({ connId: msg.connId, flags: headerString(msg.headers, 'FLAGS') },
        'websocket frame with bad FLAGS; connection closed');
      if (conn.open) conn.goAway(closeFrame(CLOSE_CODE.protocolError));
      return;
    }
    if (!conn.open) return;
    for (const part of clientFrame(first, msg.body)) conn.socket!.feed(part);
  }

  async #onUploadDone(
    endpoint: Endpoint, conn: Connection, msg: Mongrel2Message,
    start: unknown, done: unknown,
  ): Promise<void> {
    const upload = this.#options.upload;
    try {
      const body = await openUpload(upload, start, done, msg.headers['content-length'],
        msg.headers['transfer-encoding'], msg.body.length);
      conn.uploadStart = null;
      this.#dispatch(endpoint, conn, msg, body.stream, body.size);
    } catch (err) {
      const reason = err instanceof UploadRefused ? err.reason : String(err);
      this.counters.refused++;
      this.#log.warn({ connId: msg.connId, reason }, 'upload refused');
      if (conn.uploadStart !== null && conn.uploadStart === start) {
        await discardUpload(upload, start, done);
      }
      conn.refuse(BAD_REQUEST);
    }
  }

  #onStreamStart(endpoint: Endpoint, conn: Connection, msg: Mongrel2Message): void {
    const length = headerString(msg.headers, 'content-length');
    const grant = (bytes: number): void => {
      this.#log.debug({ connId: msg.connId, credits: bytes }, 'upload credits');
      endpoint.replies.enqueue(encodeCtl(msg.sender, [msg.connId], { credits: bytes }));
    };
    const body = new StreamedUpload(grant, length === undefined);
    conn.upload = body;
    const last = headerString(msg.headers, 'UPLOAD_STREAM_DONE') === '1';
    body.add(0, msg.body, last);
    const size = length === undefined ? undefined : Number(length);
    this.#dispatch(endpoint, conn, msg, body, size);
  }

  #onUploadChunk(key: string, msg: Mongrel2Message): void {
    const conn = this.#conns.get(key);
    const body = conn?.upload;
    const offset = Number(headerString(msg.headers, 'UPLOAD_STREAM'));
    const last = headerString(msg.headers, 'UPLOAD_STREAM_DONE') === '1';
    if (!conn || !body) {
      this.counters.malformed++;
      this.#log.warn({ connId: msg.connId, offset }, 'upload piece without a stream; skipped');
      return;
    }
    if (!body.add(offset, msg.body, last)) {
      this.counters.refused++;
      this.#log.warn({ connId: msg.connId, offset, expected: body.received },
        'upload piece out of order; request refused');
      conn.upload = null;
      conn.refuse(BAD_REQUEST);
      return;
    }
    if (body.complete) conn.upload = null;
  }

  #dispatch(
    endpoint: Endpoint, conn: Connection, msg: Mongrel2Message,
    body: Buffer | Readable, length: number | undefined,
    how: DispatchOptions = { counted: true },
  ): void {
    let head: Buffer;
    const headers = how.method === undefined ? msg.headers : { ...msg.headers, METHOD: how.method };
    try {
      head = buildRequestHead(headers, msg.path, {
        defaultHost: this.#options.defaultHost, bodyLength: length,
      });
    } catch (err) {
      if (!(err instanceof BadRequestHead)) throw err;
      this.counters.refused++;
      this.#log.warn({ connId: msg.connId, reason: err.reason }, 'request refused');
      conn.refuse(BAD_REQUEST);
      return;
    }
    const fresh = conn.socket === null || conn.socket.destroyed;
    const socket = fresh
      ? conn.openSocket({
        sender: msg.sender, connId: msg.connId, endpoint: endpoint.spec.sendSpec,
        mongrel2Headers: {},
      }, headerString(msg.headers, 'REMOTE_ADDR') ?? '',
      headerString(msg.headers, 'URL_SCHEME') === 'https')
      : conn.socket!;
    socket.mongrel2.mongrel2Headers = mongrel2Keys(msg);
    if (fresh) this.#options.server.emit('connection', socket);
    this.counters.requests++;
    conn.flow.newRequest();
    if (how.counted) {
      conn.pending++;
      conn.unstarted++;
      this.#unstarted++;
    }
    socket.feed(head);
    socket.feed(body);
  }

  // Counts a response as done when Node closes it (finished or aborted),
  // and reports it (access log, metrics, harakiri bookkeeping). Requests
  // from the standard sockets are counted the same way.
  #track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const m2 = socket instanceof Mongrel2Socket ? socket : null;
    const conn = m2 ? m2.peer as Connection : null;
    // Known shortcoming (cluster mode, or units fed by Mongrel2 directly):
    // without the master's routing by connection, a later request on the
    // same Mongrel2 connection may reach another unit, and Mongrel2's
    // credits notices carry no hint of whose bytes they count, so the two
    // units' accounting would drift until Mongrel2 cuts the client off or
    // a response stalls. Each credited connection is then closed after its
    // response (as uWSGI's plugin does for every connection).
    if (conn?.flow.credited && this.#options.units > 1 && !this.#options.affinity) {
      res.shouldKeepAlive = false;
    }
    // A draining unit's connections move to the next process, whose credit
    // count starts full: end credited ones here.
    if (conn?.flow.credited && this.#stopping) res.shouldKeepAlive = false;
    // A handshake the app answered as a plain request: the client expects
    // frames or nothing on this connection, so it ends with the response.
    if (conn?.websocket) res.shouldKeepAlive = false;
    // A draining unit keeps no client: the next request goes elsewhere.
    if (!m2 && this.#stopping) res.shouldKeepAlive = false;
    const via = m2 ? 'zeromq' : socket instanceof GatewaySocket ? socket.via : 'http';
    this.counters.transports[via]++;
    const started = performance.now();
    const written = (): number => (socket instanceof Mongrel2Socket || socket instanceof GatewaySocket
      ? socket.written : socket.bytesWritten);
    const before = written();
    const active: ActiveRequest = {
      startedAt: Date.now(), method: req.method ?? '', url: req.url ?? '',
      connId: conn?.connId ?? '', sender: conn?.sender ?? '', via,
      endpoint: conn ? Number(conn.key.slice(0, conn.key.indexOf(' '))) : -1,
      remote: socket.remoteAddress ?? '',
    };
    this.#active.add(active);
    if (conn && conn.unstarted > 0) {
      conn.unstarted--;
      this.#unstarted--;
    }
    this.#inflight++;
    this.#options.onRequestStart?.(active);
    // The app's work ends when it ends the response; what follows is
    // transport (credits, a slow client) and must not hold the cap.
    let appDone = false;
    const done = (): void => {
      if (appDone) return;
      appDone = true;
      this.#active.delete(active);
      this.#inflight--;
      this.#drainDeferred();
    };
    res.once('prefinish', done);
    // A response Node never starts (a pipelined request behind one that
    // closed the connection) emits neither 'prefinish' nor 'close': the
    // socket's close ends it, or it would hold its in-flight slot forever.
    const unfinished = this.#openResponsesOf(socket);
    const end = (): void => {
      if (!unfinished.delete(end)) return;
      done();
      if (conn && conn.pending > 0) conn.pending--;
      // Spelled out: V8 (Node 20) builds `{ ...active, status }` through a
      // slow path that cost about 2 µs per request here.
      this.#options.onResponse?.({
        startedAt: active.startedAt, method: active.method, url: active.url,
        connId: active.connId, endpoint: active.endpoint, sender: active.sender, via: active.via,
        remote: active.remote,
        status: res.statusCode,
        bytes: written() - before,
        durationMs: performance.now() - started,
        completed: res.writableFinished,
      });
    };
    unfinished.add(end);
    res.once('close', end);
  }

  // The responses of one app socket not closed yet; its close ends them.
  #openResponsesOf(socket: object & { once(event: 'close', fn: () => void): unknown }):
    Set<() => void> {
    let open = this.#openResponses.get(socket);
    if (!open) {
      const responses = new Set<() => void>();
      this.#openResponses.set(socket, responses);
      socket.once('close', () => {
        for (const end of [...responses]) end();
      });
      open = responses;
    }
    return open;
  }

  /**
   * A notice or upload piece another unit received for a connection it
   * does not hold (see UnitOptions.onRelay); handled only if this unit
   * holds that connection.
   */
  deliverRelayed(index: number, frame: Buffer): void {
    if (frame.length >= PUBLISH_MARKER.length
      && frame.subarray(0, PUBLISH_MARKER.length).equals(PUBLISH_MARKER)) {
      this.#hub.deliverRelayed(frame);
      return;
    }
    // A draining unit no longer pulls but still finishes its responses,
    // and those need their credits.
    const endpoint = this.#endpoints[index];
    if (endpoint && !endpoint.pub.closed) this.#onFrame(endpoint, index, frame, true);
  }

  /**
   * Answers a request that another unit can no longer answer (its process
   * was killed by harakiri): a 503, then the connection is closed. Any
   * unit connected to the same Mongrel2 can reply to any of its
   * connections.
   */
  answerFor(index: number, sender: string, connId: string): void {
    const endpoint = this.#endpoints[index];
    if (!endpoint || endpoint.pub.closed) return;
    try {
      endpoint.replies.enqueue(encodeReply(sender, [connId], Buffer.from(HANDLER_TIMED_OUT)));
      endpoint.replies.enqueue(encodeClose(sender, [connId]));
    } catch {
      // A sender or id that does not fit the grammar is never sent.
    }
  }

  /** Another unit learned that Mongrel2 runs download.flow_control. */
  assumeFlowControl(): void {
    if (this.#flowControl === 'auto') this.#flowControl = 'on';
  }

  /** The request in flight that started first, if any (for harakiri). */
  oldestRequest(): ActiveRequest | undefined {
    for (const r of this.#active) return r;
    return undefined;
  }

  // The connection to an endpoint's Mongrel2 dropped: it stopped or
  // restarts, and its clients went with it. A restarted Mongrel2 numbers
  // connections from the start again, so a late reply to an old one would
  // reach a new client: abort them all (their replies are dropped).
  // Known shortcoming: requests the old Mongrel2 sent just before it went
  // away and that still wait in the master's or this unit's queues are
  // served afterwards, and their replies can reach the new Mongrel2's
  // clients of the same connection ids; Mongrel2's messages carry nothing
  // that tells one of its lives from the next.
  #mongrel2Gone(index: number): void {
    let gone = 0;
    for (const [key, conn] of [...this.#conns]) {
      if (!key.startsWith(`${index} `)) continue;
      this.#deferred.drop(key);
      conn.disconnect();
      gone++;
    }
    this.#log.info({ endpoint: this.#endpoints[index]?.spec.recvSpec, connections: gone },
      'lost mongrel2; its connections are closed');
  }

  // A connection ended with requests Node never handed to the app (a parse
  // error, a disconnect): they no longer count against the cap.
  #connectionGone(conn: Connection): void {
    this.#unstarted -= conn.unstarted;
    conn.unstarted = 0;
    this.#drainDeferred();
  }

  #atCap(): boolean {
    return this.#inflight + this.#unstarted >= this.#options.maxInflight;
  }

  // Hands deferred messages on, in arrival order, while there is room.
  #drainDeferred(): void {
    while (this.#deferred.length > 0 && (!this.#atCap() || this.#deferred.peek()!.kind !== 'http')) {
      const d = this.#deferred.shift()!;
      if (d.kind === 'http') this.#onRequest(d.endpoint, d.key, d.msg);
      else this.#onUploadChunk(d.key, d.msg);
    }
    if (this.#deferred.length < DEFER_LIMIT) this.#wakeCapacity();
  }

  #wakeCapacity(): void {
    const waiters = this.#capacityWaiters;
    this.#capacityWaiters = [];
    for (const wake of waiters) wake();
  }

  #owner(endpoint: Endpoint): ConnectionOwner {
    return {
      log: this.#log,
      sendFrame: (frame, done) => endpoint.replies.enqueue(frame, done),
      release: (conn) => {
        if (this.#conns.get(conn.key) === conn) this.#conns.delete(conn.key);
      },
      requestDone: (_count, conn) => this.#connectionGone(conn),
    };
  }

  // Mongrel2's idle killer closes a connection that has been silent past
  // limits.min_ping (together with its read and write rates), without a
  // notice. A WebSocket may rightly be silent that long, so every one
  // that heard nothing for `intervalMs` gets a ctl keep-alive, 128 ids
  // to a message. Sent to a client that is gone, it brings back the
  // disconnect notice that ends the app's socket.
  #keepWebSocketsAlive(intervalMs: number): void {
    const now = Date.now();
    const groups = new Map<string, { index: number; sender: string; ids: string[] }>();
    for (const conn of this.#conns.values()) {
      if (!conn.websocket || !conn.open || now - conn.lastHeard < intervalMs) continue;
      conn.lastHeard = now;
      const index = Number(conn.key.slice(0, conn.key.indexOf(' ')));
      const group = `${index} ${conn.sender}`;
      let g = groups.get(group);
      if (!g) groups.set(group, g = { index, sender: conn.sender, ids: [] });
      g.ids.push(conn.connId);
    }
    for (const g of groups.values()) {
      const endpoint = this.#endpoints[g.index];
      if (!endpoint || endpoint.pub.closed) continue;
      for (const ids of splitTargets(g.ids)) {
        endpoint.replies.enqueue(encodeCtl(g.sender, ids, { 'keep-alive': true }));
      }
    }
  }

  // Drops the state of keep-alive connections that have been idle for
  // long (their disconnect notice may have gone to another unit).
  #sweep(): void {
    const cutoff = Date.now() - this.#options.idleTimeoutMs;
    for (const conn of this.#conns.values()) {
      if (conn.lastActive < cutoff && conn.idle) {
        conn.expire();
        this.#conns.delete(conn.key);
      }
    }
  }
}
