/**
 * The few RFC 6455 frames m2fleet builds itself. Mongrel2 hands a
 * handler each client frame as one message (FLAGS = the frame's first
 * byte with FIN set, body = the unmasked payload, fragments already
 * joined) and expects whole server frames back as raw replies:
 *
 *    0                   1                   2                   3
 *   +-+-+-+-+-------+-+-------------+-------------------------------+
 *   |F|R|R|R| opcode|M| length 7    | length 16 or 64 (if 126/127)  |
 *   |I|S|S|S|  (4)  |A|             |                               |
 *   |N|V|V|V|       |S|             |                               |
 *   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *   | masking key (4 bytes, only if MASK)   |  payload ...          |
 *   +---------------------------------------+-----------------------+
 *
 * A WebSocket server library in the app (ws) reads client frames, which
 * must be masked, so the payload is handed back to it re-framed with a
 * mask; server frames (publish, close) are unmasked.
 */

/** Wire: opcodes of RFC 6455 section 5.2. */
export const OPCODE = {
  continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa,
} as const;

/** Close codes m2fleet sends itself (RFC 6455 section 7.4.1). */
export const CLOSE_CODE = {
  goingAway: 1001, protocolError: 1002, tooBig: 1009,
} as const;

const FIN = 0x80;
const MASK = 0x80;
const FLAGS = /^0x[0-9A-Fa-f]{1,2}$/;
// Mongrel2 writes FLAGS as the first byte OR 0x80, so FIN is always set.
// The mask key m2fleet puts on re-framed client frames: all zero, which
// leaves the payload as it is (no copy, no XOR pass). The random key of
// RFC 6455 protects proxies on the client's network; these frames never
// leave the process.
const ZERO_MASK = Buffer.alloc(4);

/**
 * Wire: the `FLAGS` header of a WEBSOCKET message (`0x81` text, `0x82`
 * binary, `0x88` close, `0x89` ping, `0x8A` pong). Returns the frame's
 * first byte, or undefined when the value is not `0x` + one or two hex
 * digits or lacks the FIN bit Mongrel2 always sets.
 */
export function parseFlags(value: string | undefined): number | undefined {
  if (value === undefined || !FLAGS.test(value)) return undefined;
  const byte = Number.parseInt(value.slice(2), 16);
  return (byte & FIN) === FIN ? byte : undefined;
}

/** The frame header for `length` payload bytes, with a zero mask key if `masked`. */
export function frameHeader(firstByte: number, length: number, masked: boolean): Buffer {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`frameHeader: bad payload length ${length}`);
  }
  const mask = masked ? MASK : 0;
  let head: Buffer;
  if (length < 126) {
    head = Buffer.allocUnsafe(2);
    head[1] = mask | length;
  } else if (length < 0x10000) {
    head = Buffer.allocUnsafe(4);
    head[1] = mask | 126;
    head.writeUInt16BE(length, 2);
  } else {
    head = Buffer.allocUnsafe(10);
    head[1] = mask | 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  head[0] = firstByte & 0xff;
  return masked ? Buffer.concat([head, ZERO_MASK]) : head;
}

/**
 * A client frame as a server library expects it on the wire: `firstByte`
 * (from FLAGS), masked with the zero key, then the payload untouched.
 * Two buffers, so the payload (a view into the ZeroMQ message) is not copied.
 */
export function clientFrame(firstByte: number, payload: Buffer): [Buffer, Buffer] {
  return [frameHeader(firstByte, payload.length, true), payload];
}

/** A whole unmasked server frame with FIN set, in one buffer. */
export function serverFrame(opcode: number, payload: Uint8Array): Buffer {
  const head = frameHeader(FIN | (opcode & 0x0f), payload.length, false);
  const out = Buffer.allocUnsafe(head.length + payload.length);
  head.copy(out, 0);
  out.set(payload, head.length);
  return out;
}

/**
 * A server close frame with `code` and an optional UTF-8 `reason`; the
 * reason is cut (at a character boundary) to fit the 125 bytes a control
 * frame may carry.
 */
export function closeFrame(code: number, reason = ''): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  let end = Math.min(bytes.length, 123);
  // Never cut inside a UTF-8 sequence (the client would fail with 1007).
  while (end < bytes.length && end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  const text = bytes.subarray(0, end);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return serverFrame(OPCODE.close, payload);
}
