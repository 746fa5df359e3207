/**
 * State of one Mongrel2 connection, keyed by (sender, connection id): the
 * stream Node's server reads and writes, the outgoing frame queue and its
 * flow gate, and whether the client is gone.
 */
import { FlowGate } from './flow-gate.js';
import type { StreamedUpload } from './streamed-upload.js';
import { encodeClose, encodeReply } from './reply.js';
import type { AppSocket } from './app-socket.js';
import {
  Mongrel2Socket, type Mongrel2Info, type SocketPeer,
} from './mongrel2-socket.js';
import type { Logger } from './types.js';

/** What a connection needs from the unit that owns it. */
export interface ConnectionOwner {
  readonly log: Logger;
  /** Queues a frame on the PUB of the connection's endpoint. */
  sendFrame(frame: Buffer, done?: (err?: Error | null) => void): void;
  /** The connection is finished; forget it. */
  release(conn: Connection): void;
  /** The stream ended with `count` requests unanswered. */
  requestDone(count: number, conn: Connection): void;
}

type Done = (err?: Error | null) => void;

interface Outgoing {
  chunks: Buffer[];
  /** Bytes of `chunks` already sent (credit mode splits a write). */
  offset: number;
  bytes: number;
  close: boolean;
  done: Done;
}

function sliceChunks(chunks: Buffer[], from: number, size: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = from;
  let left = size;
  for (const c of chunks) {
    if (left === 0) break;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    const piece = c.subarray(skip, skip + left);
    skip = 0;
    left -= piece.length;
    out.push(piece);
  }
  return out;
}

/** One client connection as Mongrel2 numbers it. */
export class Connection implements SocketPeer {
  readonly sender: string;
  readonly connId: string;
  readonly key: string;
  readonly flow = new FlowGate();
  socket: Mongrel2Socket | null = null;
  /** Requests handed to Node and not yet answered. */
  pending = 0;
  /** Of those, requests the app has not started on yet. */
  unstarted = 0;
  /** The client went away (disconnect notice): send nothing more. */
  peerGone = false;
  /** The close frame is queued: the connection is over for Mongrel2. */
  closed = false;
  lastActive = Date.now();
  /** Temp-file path of an upload whose start message arrived here. */
  uploadStart: string | null = null;
  /** The body being streamed in (`upload.stream`), if any. */
  upload: StreamedUpload | null = null;
  /**
   * A WebSocket handshake was handed to the app on this connection: its
   * frames go to the socket, and the connection is never swept as idle.
   */
  websocket = false;
  /** Last time Mongrel2 surely saw life here (a client frame, a keep-alive). */
  lastHeard = Date.now();
  readonly #owner: ConnectionOwner;
  #out: Outgoing[] = [];
  #timer: NodeJS.Timeout | null = null;
  #sending = 0;

  constructor(owner: ConnectionOwner, sender: string, connId: string, key: string) {
    this.#owner = owner;
    this.sender = sender;
    this.connId = connId;
    this.key = key;
  }

  /** The stream for the next request, made on first use. */
  openSocket(info: Mongrel2Info, remote: string, tls: boolean): Mongrel2Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    this.socket = new Mongrel2Socket(this, info, remote, tls);
    return this.socket;
  }

  /** The client is there and the app still has its socket. */
  get open(): boolean {
    return !this.peerGone && !this.closed && this.socket !== null && !this.socket.destroyed;
  }

  /** Replies are queued here or handed to ZeroMQ and not yet sent. */
  get flushing(): boolean {
    return this.#out.length > 0 || this.#sending > 0;
  }

  /** True when nothing is in flight and nothing waits to be sent. */
  get idle(): boolean {
    // An open WebSocket is a long request of its own, however quiet.
    if (this.websocket && this.open) return false;
    return this.pending === 0 && this.#out.length === 0 && this.#sending === 0
      && !(this.socket?.busy ?? false);
  }

  write(chunks: Buffer[], done: Done): void {
    this.lastActive = Date.now();
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    // An empty body means "close" to Mongrel2: never send one by accident.
    if (bytes === 0 || this.peerGone || this.closed) {
      done();
      return;
    }
    this.#out.push({ chunks, offset: 0, bytes, close: false, done });
    this.#pump();
  }

  end(done: Done): void {
    if (this.closed || this.peerGone) {
      done();
      return;
    }
    this.closed = true;
    this.#out.push({ chunks: [], offset: 0, bytes: 0, close: true, done });
    this.#pump();
  }

  destroyed(socket: AppSocket): void {
    if (this.socket === socket) this.socket = null;
    const abandoned = this.pending;
    this.pending = 0;
    this.#owner.requestDone(abandoned, this);
    if ((socket as Mongrel2Socket).quiet || this.peerGone) return;
    // The app (or Node, after a parse error) destroyed the stream: close
    // the client's connection after whatever was already queued.
    if (!this.closed) this.end(() => undefined);
  }

  /** Mongrel2 says the client is gone: abort the request in flight. */
  disconnect(): void {
    this.peerGone = true;
    this.#dropQueued();
    this.socket?.destroy();
    this.#owner.release(this);
  }

  /** A credits notice: Mongrel2 wrote `bytes` to the client. */
  credit(bytes: number): void {
    this.flow.acknowledge(bytes);
    this.#pump();
  }

  /** Forgets an idle connection without closing the client's side. */
  expire(): void {
    if (this.socket) {
      this.socket.quiet = true;
      this.socket.destroy();
    }
    if (this.#timer) clearTimeout(this.#timer);
  }

  /**
   * True, and the frame counted against the flow gate, when `bytes` may go
   * to this connection now in a reply shared with other connections: only
   * when nothing of this connection waits (in the socket or in the queue),
   * so the shared frame neither overtakes nor splits one of its own.
   */
  takeShared(bytes: number, now: number): boolean {
    if (!this.open || this.#out.length > 0 || this.#timer !== null) return false;
    if ((this.socket?.writableLength ?? 0) > 0) return false;
    if (this.flow.allowance(now) < bytes) return false;
    this.lastActive = now;
    this.flow.record(bytes, now);
    return true;
  }

  /**
   * Ends a WebSocket from m2fleet's side: a close frame (`frame`, already
   * encoded) to the client, then the connection is closed; the app's
   * socket is destroyed without a second close.
   */
  goAway(frame: Buffer): void {
    if (this.socket) {
      this.socket.quiet = true;
      this.socket.destroy();
    }
    this.write([frame], () => undefined);
    this.end(() => undefined);
  }

  /** Sends a complete raw response, then closes (used for refusals). */
  refuse(response: string): void {
    if (this.socket) {
      this.socket.quiet = true;
      this.socket.destroy();
    }
    this.write([Buffer.from(response, 'latin1')], () => undefined);
    this.end(() => this.#owner.release(this));
  }

  #dropQueued(): void {
    const dropped = this.#out;
    this.#out = [];
    for (const item of dropped) item.done();
  }

  #pump(): void {
    if (this.#timer) return;
    while (this.#out.length > 0) {
      const item = this.#out[0]!;
      if (item.close) {
        this.#out.shift();
        this.#send(encodeClose(this.sender, [this.connId]), item.done);
        if (!this.peerGone) this.#owner.release(this);
        continue;
      }
      const now = Date.now();
      const allowed = this.flow.allowance(now);
      if (allowed <= 0) {
        this.#waitForGate(now);
        return;
      }
      const size = Math.min(allowed, item.bytes - item.offset);
      // Never an empty frame (that would close the connection), never a
      // loop that makes no progress.
      if (!(size > 0)) {
        this.#waitForGate(now);
        return;
      }
      const body = item.offset === 0 && size === item.bytes
        ? item.chunks
        : sliceChunks(item.chunks, item.offset, size);
      item.offset += size;
      const last = item.offset === item.bytes;
      if (last) this.#out.shift();
      this.flow.record(size, now);
      const frame = encodeReply(this.sender, [this.connId], body);
      this.#send(frame, last ? item.done : undefined);
    }
  }

  #send(frame: Buffer, done: Done | undefined): void {
    this.#sending++;
    this.#owner.sendFrame(frame, (err) => {
      this.#sending--;
      done?.(err);
    });
  }

  // Credit mode waits for a credits notice (credit() pumps); paced mode
  // waits out the pacing window.
  #waitForGate(now: number): void {
    if (this.flow.credited) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#pump();
    }, Math.max(1, this.flow.wait(now)));
  }
}
