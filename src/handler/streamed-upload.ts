/**
 * A request body that Mongrel2 streams in pieces (`upload.stream=1`).
 * Mongrel2 sends the next piece only when the handler grants credits, so
 * credits are granted as the app reads: a slow reader holds the client back
 * instead of filling memory. Pieces carry their byte offset; they must be
 * contiguous.
 */
import { Readable } from 'node:stream';

/** Bytes granted ahead of what the app has read. */
export const UPLOAD_WINDOW = 64 * 1024;
/** Out-of-order bytes held at most (pieces only come against credits). */
const EARLY_LIMIT = 4 * UPLOAD_WINDOW;

/** The body stream fed by UPLOAD_STREAM messages. */
export class StreamedUpload extends Readable {
  readonly #grant: (bytes: number) => void;
  readonly #chunked: boolean;
  #received = 0;
  #granted = 0;
  #finished = false;
  readonly #early = new Map<number, { piece: Buffer; last: boolean }>();
  #earlyBytes = 0;

  /**
   * @param grant sends a ctl credits message for `bytes` more.
   * @param chunked frame pieces as HTTP chunks (the length is unknown).
   */
  constructor(grant: (bytes: number) => void, chunked: boolean) {
    super({ highWaterMark: UPLOAD_WINDOW });
    this.#grant = grant;
    this.#chunked = chunked;
  }

  /** True once the last piece has been added (in order). */
  get complete(): boolean {
    return this.#finished;
  }

  /** Bytes received so far (the offset the next piece must carry). */
  get received(): number {
    return this.#received;
  }

  /**
   * Adds the piece at `offset`; a piece ahead of its turn is held until the
   * gap fills. Returns false, adding nothing, for a piece behind the ones
   * received, a repeat, too much held, or a body already ended; the caller
   * then refuses the request.
   */
  add(offset: number, piece: Buffer, last: boolean): boolean {
    if (this.#finished || offset < this.#received) return false;
    if (offset > this.#received) return this.#stash(offset, piece, last);
    this.#apply(piece, last);
    // Pieces relayed by a sibling unit can arrive after later ones.
    for (let next; (next = this.#early.get(this.#received)) !== undefined;) {
      this.#early.delete(this.#received);
      this.#earlyBytes -= next.piece.length;
      this.#apply(next.piece, next.last);
    }
    return true;
  }

  // Holds a piece that came before its turn, within a bound.
  #stash(offset: number, piece: Buffer, last: boolean): boolean {
    if (this.#early.has(offset) || this.#earlyBytes + piece.length > EARLY_LIMIT) return false;
    this.#early.set(offset, { piece: Buffer.from(piece), last });
    this.#earlyBytes += piece.length;
    return true;
  }

  #apply(piece: Buffer, last: boolean): void {
    if (this.#finished) return;
    this.#received += piece.length;
    if (piece.length > 0) {
      if (this.#chunked) this.push(`${piece.length.toString(16)}\r\n`);
      this.push(piece);
      if (this.#chunked) this.push('\r\n');
    }
    if (last) {
      this.#finished = true;
      if (this.#chunked) this.push('0\r\n\r\n');
      this.push(null);
    } else {
      this.#topUp();
    }
  }

  override _read(): void {
    this.#topUp();
  }

  // Node calls _read() before it takes the data out of the buffer, and not
  // again until the next push; checking after every read() is what keeps
  // the grants flowing once the app has drained the buffer.
  override read(size?: number): Buffer | null {
    const chunk = super.read(size) as Buffer | null;
    this.#topUp();
    return chunk;
  }

  // Keeps about one window granted beyond what was received, but only
  // while the app's side has room: a full buffer stops the grants.
  #topUp(): void {
    if (this.#finished || this.destroyed) return;
    if (this.readableLength >= UPLOAD_WINDOW) return;
    const ahead = this.#granted - this.#received;
    if (ahead > UPLOAD_WINDOW / 2) return;
    const more = UPLOAD_WINDOW - ahead;
    this.#granted += more;
    this.#grant(more);
  }
}
