/**
 * FastCGI 1.0 records, as nginx's `fastcgi_pass` sends and expects them:
 * an 8-byte header (version 1, type, a big-endian 16-bit request id and
 * content length, a padding length, a reserved byte), the content, then
 * the padding. Name-value pairs (PARAMS, GET_VALUES) give each length in
 * one byte below 128, or in four bytes with the top bit set.
 */

/** Record types. */
export const FCGI = {
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
} as const;

/** The role of a web server's ordinary request. */
export const FCGI_RESPONDER = 1;
/** BEGIN_REQUEST flag: keep the connection open after the request. */
export const FCGI_KEEP_CONN = 1;
/** END_REQUEST protocol statuses. */
export const FCGI_STATUS = {
  REQUEST_COMPLETE: 0, CANT_MPX_CONN: 1, OVERLOADED: 2, UNKNOWN_ROLE: 3,
} as const;

const HEADER = 8;
const MAX_CONTENT = 65535;

/** A byte stream that is not FastCGI; the connection is closed. */
export class FastCgiError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** One record. */
export interface FcgiRecord {
  readonly type: number;
  readonly requestId: number;
  readonly content: Buffer;
}

/** Splits a byte stream into records, across reads. */
export class FcgiReader {
  #pending: Buffer = Buffer.alloc(0);

  /** Bytes held for an incomplete record. */
  get buffered(): number {
    return this.#pending.length;
  }

  /** Adds bytes; returns the records now complete. Throws {@link FastCgiError}. */
  push(chunk: Buffer): FcgiRecord[] {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    const out: FcgiRecord[] = [];
    while (data.length >= HEADER) {
      if (data[0] !== 1) throw new FastCgiError(`version ${data[0]} (expected 1)`);
      const length = data.readUInt16BE(4);
      const total = HEADER + length + data[6]!;
      if (data.length < total) break;
      out.push({
        type: data[1]!,
        requestId: data.readUInt16BE(2),
        // A copy, so that a held body does not pin the whole read buffer.
        content: Buffer.from(data.subarray(HEADER, HEADER + length)),
      });
      data = data.subarray(total);
    }
    this.#pending = data.length > 0 ? Buffer.from(data) : Buffer.alloc(0);
    return out;
  }
}

/**
 * Encodes a record; content longer than one record holds is split into
 * several of the same type. Empty content gives one empty record (the end
 * of a stream).
 */
export function encodeRecords(type: number, requestId: number, content: Buffer = Buffer.alloc(0)): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  do {
    const piece = content.subarray(at, at + MAX_CONTENT);
    const padding = (8 - (piece.length % 8)) % 8;
    const head = Buffer.alloc(HEADER);
    head[0] = 1;
    head[1] = type;
    head.writeUInt16BE(requestId, 2);
    head.writeUInt16BE(piece.length, 4);
    head[6] = padding;
    parts.push(head, piece, Buffer.alloc(padding));
    at += piece.length;
  } while (at < content.length);
  return Buffer.concat(parts);
}

function readLength(buf: Buffer, at: number): [number, number] {
  if (at >= buf.length) throw new FastCgiError('name-value length runs past the record');
  const first = buf[at]!;
  if (first < 128) return [first, at + 1];
  if (at + 4 > buf.length) throw new FastCgiError('name-value length runs past the record');
  return [buf.readUInt32BE(at) & 0x7fffffff, at + 4];
}

/** Decodes name-value pairs (latin1). Throws {@link FastCgiError}. */
export function decodePairs(buf: Buffer): [string, string][] {
  const out: [string, string][] = [];
  let at = 0;
  while (at < buf.length) {
    const [nameLength, a] = readLength(buf, at);
    const [valueLength, b] = readLength(buf, a);
    if (b + nameLength + valueLength > buf.length) {
      throw new FastCgiError('name-value pair runs past the stream');
    }
    const name = buf.toString('latin1', b, b + nameLength);
    if (name === '') throw new FastCgiError('empty parameter name');
    out.push([name, buf.toString('latin1', b + nameLength, b + nameLength + valueLength)]);
    at = b + nameLength + valueLength;
  }
  return out;
}

/** Encodes name-value pairs (latin1). */
export function encodePairs(pairs: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  const length = (n: number): Buffer => {
    if (n < 128) return Buffer.from([n]);
    const b = Buffer.alloc(4);
    b.writeUInt32BE((n | 0x80000000) >>> 0);
    return b;
  };
  for (const [name, value] of pairs) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(length(n.length), length(v.length), n, v);
  }
  return Buffer.concat(parts);
}

/** BEGIN_REQUEST content: the role and whether to keep the connection. */
export function parseBeginRequest(content: Buffer): { role: number; keepConn: boolean } {
  if (content.length < 8) throw new FastCgiError('short BEGIN_REQUEST');
  return { role: content.readUInt16BE(0), keepConn: (content[2]! & FCGI_KEEP_CONN) !== 0 };
}

/** BEGIN_REQUEST content (tests and tools). */
export function encodeBeginRequest(role: number, keepConn: boolean): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(role, 0);
  b[2] = keepConn ? FCGI_KEEP_CONN : 0;
  return b;
}

/** An END_REQUEST record. */
export function encodeEndRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(appStatus >>> 0, 0);
  b[4] = protocolStatus;
  return encodeRecords(FCGI.END_REQUEST, requestId, b);
}
