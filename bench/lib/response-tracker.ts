/**
 * Tells when an HTTP/1.1 response, arriving in one or more reply frames,
 * is complete: by Content-Length, or by the last chunk of a chunked body.
 * One tracker per connection; the generator keeps one request in flight
 * per connection, so responses never interleave.
 */

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** The outcome of feeding one frame's body. */
export type FeedResult = 'partial' | 'complete' | 'malformed';

/** Reads a response head's status and framing; null if not HTTP. */
export function readHead(head: string): {
  status: number; length: number | null; chunked: boolean; close: boolean;
} | null {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!m) return null;
  const lower = head.toLowerCase();
  const cl = /\r\ncontent-length: *(\d+)/.exec(lower);
  return {
    status: Number(m[1]),
    length: cl ? Number(cl[1]) : null,
    chunked: /\r\ntransfer-encoding: *chunked/.test(lower),
    close: /\r\nconnection: *close/.test(lower),
  };
}

/** Collects one connection's response bytes until the response ends. */
export class ResponseTracker {
  #parts: Buffer[] = [];
  #bytes = 0;
  #headLength = -1;
  #bodyLength: number | null = null;
  #chunked = false;
  /** Frames that made up the last completed response. */
  frames = 0;
  /** Status of the last completed response. */
  status = 0;
  /** The last completed response said `Connection: close`. */
  close = false;

  /** Feeds one reply body; says whether the response is now complete. */
  feed(body: Buffer): FeedResult {
    this.#parts.push(body);
    this.#bytes += body.length;
    this.frames++;
    if (this.#headLength < 0 && !this.#findHead()) {
      return this.#bytes > 65536 ? 'malformed' : 'partial';
    }
    if (this.#headLength < 0) return 'malformed';
    const done = this.#chunked ? this.#endsWithLastChunk()
      : this.#bytes >= this.#headLength + (this.#bodyLength ?? 0);
    return done ? 'complete' : 'partial';
  }

  /** Forgets the finished response; `frames` restarts for the next one. */
  reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#headLength = -1;
    this.#bodyLength = null;
    this.#chunked = false;
    this.frames = 0;
  }

  #joined(): Buffer {
    if (this.#parts.length > 1) this.#parts = [Buffer.concat(this.#parts)];
    return this.#parts[0]!;
  }

  #findHead(): boolean {
    const all = this.#joined();
    const at = all.indexOf(HEAD_END);
    if (at < 0) return false;
    const head = readHead(all.toString('latin1', 0, at + 2));
    if (head === null || (head.length === null && !head.chunked)) {
      this.#headLength = -1;
      this.#parts = [];
      return true;
    }
    this.#headLength = at + 4;
    this.#bodyLength = head.length;
    this.#chunked = head.chunked;
    this.status = head.status;
    this.close = head.close;
    return true;
  }

  #endsWithLastChunk(): boolean {
    const last = this.#parts[this.#parts.length - 1]!;
    if (last.length >= LAST_CHUNK.length) {
      return last.subarray(last.length - LAST_CHUNK.length).equals(LAST_CHUNK);
    }
    const all = this.#joined();
    return all.length - this.#headLength >= LAST_CHUNK.length &&
      all.subarray(all.length - LAST_CHUNK.length).equals(LAST_CHUNK);
  }
}
