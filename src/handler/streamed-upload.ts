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

/** The body stream fed by UPLOAD_STREAM messages. */
export class StreamedUpload extends Readable {
  readonly #grant: (bytes: number) => void;
  readonly #chunked: boolean;
  #received = 0;
  #granted = 0;
  #finished = false;

  /**
   * @param grant sends a ctl credits message for `bytes` more.
   * @param chunked frame pieces as HTTP chunks (the length is unknown).
   */
  constructor(grant: (bytes: number) => void, chunked: boolean) {
    super({ highWaterMark: UPLOAD_WINDOW });
    this.#grant = grant;
    this.#chunked = chunked;
  }

  /** Bytes received so far (the offset the next piece must carry). */
  get received(): number {
    return this.#received;
  }

  /**
   * Adds the piece at `offset`. Returns false, adding nothing, when the
   * offset is not the next byte expected or the body already ended; the
   * caller then refuses the request.
   */
  add(offset: number, piece: Buffer, last: boolean): boolean {
    if (this.#finished || offset !== this.#received) return false;
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
    return true;
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
