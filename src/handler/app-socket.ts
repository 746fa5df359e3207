/**
 * The in-memory stream m2fleet hands to Node's HTTP server as a
 * 'connection' when the bytes do not come from a TCP socket Node owns:
 * Mongrel2 over ZeroMQ, or a request unwrapped from the uwsgi or FastCGI
 * protocol. Node reads a re-built request from it and writes the raw HTTP
 * response into it, so apps get Node's own IncomingMessage and
 * ServerResponse (keep-alive, chunking, HEAD, pipelining order).
 */
import { Duplex, type Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';

/** Where an app socket's writes go (a Mongrel2 connection, a gateway). */
export interface SocketPeer {
  write(chunks: Buffer[], done: (err?: Error | null) => void): void;
  end(done: (err?: Error | null) => void): void;
  destroyed(socket: AppSocket): void;
}

type Input = Buffer | Readable;

const WRITE_HIGH_WATER = 256 * 1024;
const READ_HIGH_WATER = 64 * 1024;

/** An in-memory Duplex with the surface frameworks expect of a net.Socket. */
export class AppSocket extends Duplex {
  /** The client's address, as the front server saw it. */
  remoteAddress: string;
  readonly remoteFamily: string;
  remotePort = 0;
  /** The client spoke TLS to the front server (apps then say https). */
  readonly encrypted: boolean;
  /** Response bytes written so far (status line, headers and body). */
  written = 0;
  /** The side this stream writes through. */
  readonly peer: SocketPeer;
  #inputs: Input[] = [];
  #waiting: Readable | null = null;

  constructor(peer: SocketPeer, remote: string, tls: boolean) {
    super({
      allowHalfOpen: true,
      writableHighWaterMark: WRITE_HIGH_WATER,
      readableHighWaterMark: READ_HIGH_WATER,
    });
    this.peer = peer;
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
      // The peer's side is closed now; release the stream too.
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
