/**
 * The uwsgi binary protocol, request side, as nginx's `uwsgi_pass` speaks
 * it: a 4-byte header (modifier1, a little-endian 16-bit size, modifier2),
 * then `size` bytes of variables, each a little-endian 16-bit length and
 * the key, then the same for the value. The request body (CONTENT_LENGTH
 * bytes) follows on the same connection, and the response is raw HTTP
 * ended by closing the connection.
 */

/** A packet that cannot be a request; the connection is closed. */
export class UwsgiError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** One parsed request packet. */
export interface UwsgiPacket {
  readonly modifier1: number;
  readonly modifier2: number;
  /** Variables in packet order; bytes read as latin1. */
  readonly vars: [string, string][];
  /** Bytes the packet took (header and variables). */
  readonly size: number;
}

/** modifier1 of a WSGI/HTTP request, the only kind m2fleet serves. */
export const UWSGI_REQUEST = 0;

/**
 * Parses the packet at the start of `buf`. Returns null while more bytes
 * are needed; throws {@link UwsgiError} when the packet is larger than
 * `maxSize` bytes of variables or its variables do not add up.
 */
export function parseUwsgiPacket(buf: Buffer, maxSize = 65535): UwsgiPacket | null {
  if (buf.length < 4) return null;
  const modifier1 = buf[0]!;
  const size = buf.readUInt16LE(1);
  const modifier2 = buf[3]!;
  if (size > maxSize) throw new UwsgiError(`variables of ${size} bytes exceed ${maxSize}`);
  if (buf.length < 4 + size) return null;
  const vars: [string, string][] = [];
  let at = 4;
  const end = 4 + size;
  const field = (what: string): string => {
    if (at + 2 > end) throw new UwsgiError(`${what} length runs past the packet`);
    const length = buf.readUInt16LE(at);
    at += 2;
    if (at + length > end) throw new UwsgiError(`${what} runs past the packet`);
    const text = buf.toString('latin1', at, at + length);
    at += length;
    return text;
  };
  while (at < end) {
    const key = field('key');
    if (key === '') throw new UwsgiError('empty variable name');
    vars.push([key, field('value')]);
  }
  return { modifier1, modifier2, vars, size: end };
}

/** Builds a request packet (tests and tools; nginx builds the real ones). */
export function encodeUwsgiPacket(vars: readonly (readonly [string, string])[], modifier1 = 0, modifier2 = 0): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of vars) {
    for (const text of [k, v]) {
      const bytes = Buffer.from(text, 'latin1');
      const len = Buffer.alloc(2);
      len.writeUInt16LE(bytes.length);
      parts.push(len, bytes);
    }
  }
  const body = Buffer.concat(parts);
  if (body.length > 65535) throw new UwsgiError('variables exceed 65535 bytes');
  const head = Buffer.alloc(4);
  head[0] = modifier1;
  head.writeUInt16LE(body.length, 1);
  head[3] = modifier2;
  return Buffer.concat([head, body]);
}
