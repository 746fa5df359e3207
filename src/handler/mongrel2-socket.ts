/**
 * The in-memory stream m2fleet hands to Node's HTTP server as a
 * 'connection'. Node reads the re-built request from it and writes the raw
 * HTTP response into it, so apps get Node's own IncomingMessage and
 * ServerResponse (keep-alive, chunking, HEAD, pipelining order) while the
 * bytes travel over ZeroMQ.
 */
import { Duplex, type Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';

/** What the app can learn about the Mongrel2 side of its request. */
export interface Mongrel2Info {
  /** Wire: the request's sender token (the handler's send_ident). */
  readonly sender: string;
  /** Wire: Mongrel2's connection id. */
  readonly connId: string;
  /** The send_spec this request came in on. */
  readonly endpoint: string;
  /** Mongrel2's own header keys of the latest request (METHOD, PATTERN, ...). */
  mongrel2Headers: Record<string, string>;
}

/** The side of a connection that turns writes into Mongrel2 frames. */
export interface SocketPeer {
  write(chunks: Buffer[], done: (err?: Error | null) => void): void;
  end(done: (err?: Error | null) => void): void;
  destroyed(socket: Mongrel2Socket): void;
}

type Input = Buffer | Readable;

const WRITE_HIGH_WATER = 256 * 1024;
const READ_HIGH_WATER = 64 * 1024;

/** An in-memory Duplex with the surface frameworks expect of a net.Socket. */
export class Mongrel2Socket extends Duplex {
  /** Wire: REMOTE_ADDR, the client's address as Mongrel2 saw it. */
  remoteAddress: string;
  readonly remoteFamily: string;
  readonly remotePort = 0;
  /** Wire: URL_SCHEME is `https` (so Express/Koa/Fastify/Hono say https). */
  readonly encrypted: boolean;
  readonly mongrel2: Mongrel2Info;
  /** Set before destroy() when the end must not close the client. */
  quiet = false;
  /** Response bytes written so far (status line, headers and body). */
  written = 0;
  /** The connection state this stream writes through. */
  readonly peer: SocketPeer;
  #inputs: Input[] = [];
  #waiting: Readable | null = null;

  constructor(peer: SocketPeer, info: Mongrel2Info, remote: string, tls: boolean) {
    super({
      allowHalfOpen: true,
      writableHighWaterMark: WRITE_HIGH_WATER,
      readableHighWaterMark: READ_HIGH_WATER,
    });
    this.peer = peer;
    this.mongrel2 = info;
    this.remoteAddress = remote;
    this.remoteFamily = remote.includes(':') ? 'IPv6' : 'IPv4';
    this.encrypted = tls;
  }

  /** Appends request bytes (a head, a body, or a body stream) in order. */
  feed(input: Input): void {
    // A body that fails to read (a vanished upload file) ends the
    // connection: the app would otherwise wait for bytes forever.
    if (!Buffer.isBuffer(input)) input.once('error', () => this.destroy());
    this.#inputs.push(input);
    this.#pumpInput();
  }

  /** True while a response is being written (Node's own bookkeeping). */
  get busy(): boolean {
    return (this as unknown as { _httpMessage?: unknown })._httpMessage != null
      || this.#inputs.length > 0;
  }

  override _read(): void {
    this.#pumpInput();
  }

  override _write(chunk: Buffer, _enc: string, cb: (e?: Error | null) => void): void {
    this.written += chunk.length;
    this.peer.write([chunk], cb);
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    cb: (e?: Error | null) => void,
  ): void {
    const list = chunks.map((c) => c.chunk);
    for (const c of list) this.written += c.length;
    this.peer.write(list, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.peer.end((err) => {
      cb(err);
      // The Mongrel2 connection is closed now; release the stream too.
      setImmediate(() => this.destroy());
    });
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    for (const input of this.#inputs) {
      if (!Buffer.isBuffer(input)) input.destroy();
    }
    this.#inputs = [];
    this.peer.destroyed(this);
    cb(err);
  }

  // Feeds queued inputs while Node's side wants more. A stream input is
  // read with read() so that a slow app holds the file or upload back.
  #pumpInput(): void {
    while (this.#inputs.length > 0 && !this.destroyed) {
      const input = this.#inputs[0]!;
      if (Buffer.isBuffer(input)) {
        this.#inputs.shift();
        if (input.length > 0 && !this.push(input)) return;
        continue;
      }
      let chunk: Buffer | null;
      while ((chunk = input.read() as Buffer | null) !== null) {
        if (!this.push(chunk)) return;
      }
      if (input.readableEnded || input.destroyed) {
        this.#inputs.shift();
        continue;
      }
      this.#waitFor(input);
      return;
    }
  }

  #waitFor(input: Readable): void {
    if (this.#waiting === input) return;
    this.#waiting = input;
    const wake = (): void => {
      input.off('readable', wake);
      input.off('end', wake);
      input.off('close', wake);
      this.#waiting = null;
      this.#pumpInput();
    };
    input.on('readable', wake);
    input.once('end', wake);
    input.once('close', wake);
  }

  // Frameworks call these on real sockets; m2fleet owns timeouts itself.
  setTimeout(_ms: number, _cb?: () => void): this {
    return this;
  }
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }
  setKeepAlive(_enable?: boolean, _delay?: number): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  address(): AddressInfo {
    return { address: '127.0.0.1', family: 'IPv4', port: 0 };
  }
}
