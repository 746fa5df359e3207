/**
 * Reads back the HTTP/1.1 response Node's server writes for one request and
 * hands it on as a status, header lines and a de-chunked body. The uwsgi
 * and FastCGI gateways need this: their peers (nginx) frame the body
 * themselves (uwsgi by closing the connection, FastCGI by an empty stdout
 * record) and do not expect chunked encoding from the application.
 *
 * The bytes come from Node's own ServerResponse, so the parser is strict
 * about shape but small: a head up to CRLF CRLF, then a body delimited by
 * Content-Length, by chunked encoding, or by the end of the stream.
 */

/** Where the pieces of the response go, in order. */
export interface ResponseSink {
  /**
   * The final (non-1xx) status and the header block as `Name: value\r\n`
   * lines, without Transfer-Encoding, Connection and Keep-Alive, which
   * belong to the hop between Node and m2fleet.
   */
  head(status: number, reason: string, lines: string): void;
  body(chunk: Buffer): void;
  /**
   * The response ended, once: `complete` is false when Node's stream ended
   * before the response did (no head, or a body shorter than declared).
   */
  end(complete: boolean): void;
}

/** Node wrote something that is not an HTTP response. */
export class ReframeError extends Error {}

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'close' | 'done';

const MAX_HEAD = 1024 * 1024;
const MAX_LINE = 4096;
const HOP_BY_HOP = new Set(['transfer-encoding', 'connection', 'keep-alive']);
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/;

/** Incremental response parser; see the module comment. */
export class ResponseReframer {
  readonly #sink: ResponseSink;
  readonly #bodiless: boolean;
  #state: State = 'head';
  #pending: Buffer = Buffer.alloc(0);
  #remaining = 0;
  /** Status of the final response, once its head has been read. */
  status = 0;

  /** `headRequest`: the request was HEAD, so no response carries a body. */
  constructor(sink: ResponseSink, headRequest: boolean) {
    this.#sink = sink;
    this.#bodiless = headRequest;
  }

  /** True once the whole response has been handed on. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /** True once the final head has been handed on. */
  get headSent(): boolean {
    return this.status !== 0;
  }

  /** Feeds bytes Node wrote. Throws {@link ReframeError} on a broken head. */
  write(chunk: Buffer): void {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = Buffer.alloc(0);
    while (data.length > 0 && this.#state !== 'done') {
      const used = this.#step(data);
      if (used < 0) {
        this.#pending = data;
        if (data.length > (this.#state === 'head' ? MAX_HEAD : MAX_LINE)) {
          throw new ReframeError(`response ${this.#state} too long`);
        }
        return;
      }
      data = data.subarray(used);
    }
  }

  /**
   * Node ended the stream. A body delimited by the end is complete now; a
   * response cut short (no head yet, or a body shorter than declared)
   * ends here too and the caller decides how to tell its peer.
   */
  finish(): void {
    if (this.#state === 'done') return;
    const complete = this.#state === 'close';
    this.#state = 'done';
    this.#sink.end(complete);
  }

  /** True when the stream's end is how this response's body ends. */
  get endsAtClose(): boolean {
    return this.#state === 'close';
  }

  // Consumes from the start of `data`; returns bytes used, or -1 when a
  // line (or the head) is incomplete.
  #step(data: Buffer): number {
    switch (this.#state) {
      case 'head': return this.#readHead(data);
      case 'length': {
        const n = Math.min(this.#remaining, data.length);
        this.#sink.body(data.subarray(0, n));
        this.#remaining -= n;
        if (this.#remaining === 0) this.#complete();
        return n;
      }
      case 'chunk-size': {
        const eol = data.indexOf('\r\n');
        if (eol < 0) return -1;
        const text = data.toString('latin1', 0, eol).split(';')[0]!.trim();
        if (!/^[0-9a-fA-F]{1,8}$/.test(text)) throw new ReframeError('bad chunk size');
        this.#remaining = parseInt(text, 16);
        this.#state = this.#remaining === 0 ? 'trailer' : 'chunk-data';
        return eol + 2;
      }
      case 'chunk-data': {
        const n = Math.min(this.#remaining, data.length);
        this.#sink.body(data.subarray(0, n));
        this.#remaining -= n;
        if (this.#remaining === 0) this.#state = 'chunk-crlf';
        return n;
      }
      case 'chunk-crlf': {
        if (data.length < 2) return -1;
        if (data[0] !== 13 || data[1] !== 10) throw new ReframeError('chunk not followed by CRLF');
        this.#state = 'chunk-size';
        return 2;
      }
      case 'trailer': {
        // Trailers are dropped: neither gateway protocol carries them.
        const eol = data.indexOf('\r\n');
        if (eol < 0) return -1;
        if (eol === 0) this.#complete();
        return eol + 2;
      }
      case 'close':
        this.#sink.body(data);
        return data.length;
      default:
        return data.length;
    }
  }

  #readHead(data: Buffer): number {
    const end = data.indexOf('\r\n\r\n');
    if (end < 0) return -1;
    const lines = data.toString('latin1', 0, end).split('\r\n');
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) throw new ReframeError('bad status line');
    const status = Number(m[1]);
    if (status < 200) return end + 4; // 100 Continue, 103 Early Hints: dropped
    let kept = '';
    let chunked = false;
    let length: number | undefined;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new ReframeError('bad header line');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'transfer-encoding') chunked = /\bchunked\b/i.test(value);
      if (name === 'content-length') length = Number(value);
      if (!HOP_BY_HOP.has(name)) kept += `${line}\r\n`;
    }
    this.status = status;
    this.#sink.head(status, m[2] ?? '', kept);
    if (this.#bodiless || status === 204 || status === 304) this.#complete();
    else if (chunked) this.#state = 'chunk-size';
    else if (length !== undefined && Number.isSafeInteger(length) && length >= 0) {
      this.#remaining = length;
      if (length === 0) this.#complete();
      else this.#state = 'length';
    } else this.#state = 'close';
    return end + 4;
  }

  #complete(): void {
    this.#state = 'done';
    this.#sink.end(true);
  }
}
