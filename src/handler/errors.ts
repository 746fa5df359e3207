/**
 * Errors raised by the handler codec. Every error carries a stable `code`
 * with the `M2F_` prefix so callers and logs can match on it without parsing
 * the message text.
 */

/** Optional facts about where an error happened; all fields are short. */
export interface ErrorContext {
  /** Wire: the sender token of the message, when it was readable. */
  sender?: string;
  /** Wire: the connection id of the message, when it was readable. */
  connId?: string;
  /** Byte offset into the frame where the problem was found. */
  offset?: number;
  /** A short, escaped excerpt of the offending bytes or value. */
  value?: string;
}

/** Codes of {@link ProtocolError}: one per way a frame can be malformed. */
export type ProtocolErrorCode =
  | 'M2F_BAD_ENVELOPE'
  | 'M2F_BAD_NETSTRING'
  | 'M2F_BAD_TNETSTRING'
  | 'M2F_BAD_JSON_HEADERS'
  | 'M2F_BAD_HEADER_VALUE'
  | 'M2F_TRAILING_BYTES'
  | 'M2F_BAD_TNET_VALUE'
  | 'M2F_BAD_REPLY';

/** Every protocol error code, for catalogue checks and log filters. */
export const PROTOCOL_ERROR_CODES: readonly ProtocolErrorCode[] = [
  'M2F_BAD_ENVELOPE',
  'M2F_BAD_NETSTRING',
  'M2F_BAD_TNETSTRING',
  'M2F_BAD_JSON_HEADERS',
  'M2F_BAD_HEADER_VALUE',
  'M2F_TRAILING_BYTES',
  'M2F_BAD_TNET_VALUE',
  'M2F_BAD_REPLY',
];

/** Base class of all m2fleet errors: a stable `code` plus context fields. */
export class M2FleetError extends Error {
  /** Stable identifier, always starting with `M2F_`. */
  readonly code: string;
  readonly sender?: string;
  readonly connId?: string;
  readonly offset?: number;
  readonly value?: string;

  constructor(code: string, message: string, context: ErrorContext = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    if (context.sender !== undefined) this.sender = context.sender;
    if (context.connId !== undefined) this.connId = context.connId;
    if (context.offset !== undefined) this.offset = context.offset;
    if (context.value !== undefined) this.value = context.value;
  }
}

/**
 * A frame that breaks the Mongrel2 wire grammar, received or about to be
 * sent. `M2F_BAD_TNET_VALUE` and `M2F_BAD_REPLY` mean we refused to build a
 * frame Mongrel2 would reject (or crash on); the others describe input.
 */
export class ProtocolError extends M2FleetError {
  declare readonly code: ProtocolErrorCode;

  constructor(
    code: ProtocolErrorCode,
    message: string,
    context: ErrorContext = {},
  ) {
    super(code, message, context);
  }
}

const EXCERPT_MAX = 24;

/**
 * Renders at most 24 bytes of `buf[start, end)` as printable text (`\xNN`
 * for the rest) so a message can name an offending value without dumping
 * the whole frame.
 */
export function excerpt(buf: Buffer, start: number, end: number): string {
  const stop = Math.min(end, start + EXCERPT_MAX, buf.length);
  let out = '';
  for (let i = Math.max(0, start); i < stop; i++) {
    const b = buf[i]!;
    out += b >= 0x20 && b < 0x7f && b !== 0x5c
      ? String.fromCharCode(b)
      : '\\x' + b.toString(16).padStart(2, '0');
  }
  return stop < end ? out + '...' : out;
}
