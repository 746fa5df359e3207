/**
 * Tnetstrings: `SIZE ":" DATA TAG`, the encoding Mongrel2 uses for
 * `protocol='tnetstring'` headers and for extended (`X`) replies.
 *
 *   "5:hello,"   "2:42#"   "4:true!"   "0:~"   "8:1:a,1:b,]"   "8:1:k,1:v,}"
 *    SIZE DATA TAG
 *
 * The parser is strict (all or nothing) and works on Buffers; strings come
 * back as latin1 byte strings, one char per byte.
 */
import { ProtocolError, excerpt } from './errors.js';

/** A decoded tnetstring value; strings are latin1 byte strings. */
export type TnetValue =
  | string
  | number
  | boolean
  | null
  | TnetValue[]
  | { [key: string]: TnetValue };

/**
 * What {@link encodeTnetstring} accepts: like {@link TnetValue}, but a
 * Buffer is written as raw bytes and a JS string as its UTF-8 bytes.
 */
export type TnetInput =
  | string
  | Buffer
  | number
  | boolean
  | null
  | readonly TnetInput[]
  | { readonly [key: string]: TnetInput };

/** Deepest container nesting either side accepts (Mongrel2 uses 2). */
export const MAX_TNET_DEPTH = 16;

/** SIZE has at most 9 digits, per the tnetstring spec. */
const MAX_SIZE_DIGITS = 9;
const MAX_SIZE = 999_999_999;

const COLON = 0x3a;
const TAG_STRING = 0x2c; // ,
const TAG_NUMBER = 0x23; // #
const TAG_FLOAT = 0x5e; // ^
const TAG_BOOL = 0x21; // !
const TAG_NULL = 0x7e; // ~
const TAG_DICT = 0x7d; // }
const TAG_LIST = 0x5d; // ]

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/**
 * Decodes `buf[start, end)` as latin1 (one char per byte) without the
 * argument checks of `toString`. Callers pass in-range offsets.
 */
export function latin1Slice(buf: Buffer, start: number, end: number): string {
  return (buf as unknown as Latin1Slicer).latin1Slice(start, end);
}

/** Location of one tnetstring inside a buffer. */
interface Frame {
  dataStart: number;
  dataEnd: number;
  tag: number;
}

function fail(buf: Buffer, at: number, what: string): never {
  throw new ProtocolError(
    'M2F_BAD_TNETSTRING',
    `bad tnetstring at byte ${at}: ${what}`,
    { offset: at, value: excerpt(buf, at, at + 24) },
  );
}

/** Reads `SIZE:` and finds DATA and TAG, checking SIZE against `end`. */
function readFrame(buf: Buffer, pos: number, end: number): Frame {
  let size = 0;
  let i = pos;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c === COLON) break;
    if (c < 0x30 || c > 0x39) fail(buf, pos, 'SIZE is not a decimal number');
    if (i - pos >= MAX_SIZE_DIGITS) fail(buf, pos, 'SIZE has over 9 digits');
    size = size * 10 + (c - 0x30);
  }
  if (i >= end) fail(buf, pos, 'missing ":" after SIZE');
  if (i === pos) fail(buf, pos, 'empty SIZE');

  // Checked before any slice is taken: a fake huge SIZE costs nothing.
  const dataStart = i + 1;
  if (size >= end - dataStart) {
    fail(buf, pos, `SIZE ${size} exceeds the ${end - dataStart} bytes left`);
  }
  const dataEnd = dataStart + size;
  return { dataStart, dataEnd, tag: buf[dataEnd]! };
}

/**
 * Parses one tnetstring starting at `start` and ending no later than `end`.
 * `depth` is the nesting level of this value (0 at the top); containers
 * deeper than {@link MAX_TNET_DEPTH} are refused. Dict keys must be strings;
 * a repeated key keeps its last value. Returns the value and the offset just
 * past its tag.
 * @throws ProtocolError `M2F_BAD_TNETSTRING` on any deviation from the spec.
 */
export function parseTnetstring(
  buf: Buffer,
  start = 0,
  end = buf.length,
  depth = 0,
): { value: TnetValue; next: number } {
  const f = readFrame(buf, start, end);
  return { value: decodeFrame(buf, f, depth), next: f.dataEnd + 1 };
}

/**
 * Parses `buf[start, end)` as the payload of a dict (the bytes between
 * `SIZE:` and `}`). Used for Mongrel2's tnetstring header block, whose
 * length prefix is read by the message parser.
 * @throws ProtocolError `M2F_BAD_TNETSTRING`.
 */
export function parseTnetDict(
  buf: Buffer,
  start: number,
  end: number,
  depth = 0,
): { [key: string]: TnetValue } {
  if (depth >= MAX_TNET_DEPTH) fail(buf, start, 'nesting too deep');
  const dict: { [key: string]: TnetValue } = Object.create(null);
  let pos = start;
  while (pos < end) {
    const key = readFrame(buf, pos, end);
    if (key.tag !== TAG_STRING) fail(buf, pos, 'dict key is not a string');
    pos = key.dataEnd + 1;
    if (pos >= end) fail(buf, pos, 'dict key has no value');
    const item = readFrame(buf, pos, end);
    dict[latin1Slice(buf, key.dataStart, key.dataEnd)] =
      decodeFrame(buf, item, depth + 1);
    pos = item.dataEnd + 1;
  }
  return dict;
}

function parseList(
  buf: Buffer,
  start: number,
  end: number,
  depth: number,
): TnetValue[] {
  if (depth >= MAX_TNET_DEPTH) fail(buf, start, 'nesting too deep');
  const list: TnetValue[] = [];
  let pos = start;
  while (pos < end) {
    const item = readFrame(buf, pos, end);
    list.push(decodeFrame(buf, item, depth + 1));
    pos = item.dataEnd + 1;
  }
  return list;
}

const INTEGER = /^-?[0-9]+$/;
const FLOAT = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/;

function decodeFrame(buf: Buffer, f: Frame, depth: number): TnetValue {
  const { dataStart: s, dataEnd: e } = f;
  switch (f.tag) {
    case TAG_STRING:
      return latin1Slice(buf, s, e);
    case TAG_LIST:
      return parseList(buf, s, e, depth);
    case TAG_DICT:
      return parseTnetDict(buf, s, e, depth);
    case TAG_NUMBER: {
      const text = latin1Slice(buf, s, e);
      const n = INTEGER.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n)) fail(buf, s, 'not a safe integer');
      return n + 0; // turns -0 into 0
    }
    case TAG_BOOL: {
      const text = latin1Slice(buf, s, e);
      if (text === 'true') return true;
      if (text === 'false') return false;
      return fail(buf, s, 'boolean is neither true nor false');
    }
    case TAG_NULL:
      if (e !== s) fail(buf, s, 'null with a non-zero SIZE');
      return null;
    case TAG_FLOAT: {
      // Accepted for completeness; Mongrel2 itself cannot parse floats.
      const text = latin1Slice(buf, s, e);
      const n = FLOAT.test(text) ? Number(text) : NaN;
      if (!Number.isFinite(n)) fail(buf, s, 'not a float');
      return n;
    }
    default:
      return fail(buf, e, 'unknown type tag');
  }
}

function refuse(what: string): never {
  throw new ProtocolError('M2F_BAD_TNET_VALUE', `cannot encode ${what}`);
}

const ASCII = 'latin1';

/** Appends the encoding of `value` to `parts`; returns its byte length. */
function encodeInto(value: TnetInput, parts: Buffer[], depth: number): number {
  if (typeof value === 'string' || Buffer.isBuffer(value)) {
    const data = typeof value === 'string' ? Buffer.from(value) : value;
    return wrap(parts, [data], data.length, ',');
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) refuse(`the number ${value}`);
    return wrap(parts, [Buffer.from(String(value), ASCII)], -1, '#');
  }
  if (typeof value === 'boolean') {
    return wrap(parts, [Buffer.from(String(value), ASCII)], -1, '!');
  }
  if (value === null) return wrap(parts, [], 0, '~');
  if (typeof value !== 'object') refuse(`a value of type ${typeof value}`);
  if (depth >= MAX_TNET_DEPTH) refuse('containers nested over 16 deep');

  const inner: Buffer[] = [];
  let size = 0;
  if (Array.isArray(value)) {
    for (const item of value as readonly TnetInput[]) {
      size += encodeInto(item, inner, depth + 1);
    }
    return wrap(parts, inner, size, ']');
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) refuse('a non-plain object');
  const dict = value as { readonly [key: string]: TnetInput };
  for (const key of Object.keys(dict)) {
    size += encodeInto(key, inner, depth + 1);
    const item = dict[key];
    if (item === undefined) refuse(`undefined at key ${JSON.stringify(key)}`);
    size += encodeInto(item, inner, depth + 1);
  }
  return wrap(parts, inner, size, '}');
}

/** Pushes `SIZE:` + data + tag; `size` -1 means "sum the data parts". */
function wrap(
  parts: Buffer[],
  data: Buffer[],
  size: number,
  tag: string,
): number {
  const n = size >= 0 ? size : data.reduce((sum, b) => sum + b.length, 0);
  if (n > MAX_SIZE) refuse(`a payload of ${n} bytes`);
  const head = Buffer.from(`${n}:`, ASCII);
  parts.push(head);
  for (const b of data) parts.push(b);
  parts.push(Buffer.from(tag, ASCII));
  return head.length + n + 1;
}

/**
 * Encodes `value` as one tnetstring that Mongrel2's parser accepts: SIZE
 * without sign or leading zeros, integers only (`#`, safe integers), no
 * floats, nesting at most {@link MAX_TNET_DEPTH}. JS strings are written as
 * UTF-8, Buffers as their raw bytes.
 * @throws ProtocolError `M2F_BAD_TNET_VALUE` for anything else (NaN,
 * fractions, undefined, functions, class instances, cycles).
 */
export function encodeTnetstring(value: TnetInput): Buffer {
  const parts: Buffer[] = [];
  const total = encodeInto(value, parts, 0);
  return Buffer.concat(parts, total);
}
