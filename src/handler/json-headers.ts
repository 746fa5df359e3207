/**
 * Decoder for Mongrel2's JSON header object (`protocol='json'`).
 *
 * Mongrel2 escapes only `"` and `\` inside header strings, so the object can
 * hold raw TAB bytes and bytes that are not UTF-8. Reading it as latin1 keeps
 * every byte as one char; raw control chars are turned into `\u00XX` escapes
 * so that `JSON.parse` accepts them. The decoded strings are then already
 * latin1 byte strings.
 */
import { ProtocolError, excerpt } from './errors.js';
import { latin1Slice } from './tnetstring.js';
import type { HeaderMap, HeaderValue } from './types.js';

// Mongrel2 writes no whitespace between JSON tokens, so a control char can
// only sit inside a string, where an escape means the same byte.
const CONTROL = /[\x00-\x1f]/g;
const WIDE = /[^\x00-\xff]+/g;
const HAS_WIDE = /[^\x00-\xff]/;

function escapeControl(ch: string): string {
  return '\\u00' + ch.charCodeAt(0).toString(16).padStart(2, '0');
}

/**
 * A `\uXXXX` escape above 0xFF (Mongrel2 never writes one) stands for a
 * character, not a byte: keep its UTF-8 bytes, one char each.
 */
function toByteString(s: string): string {
  if (!HAS_WIDE.test(s)) return s;
  return s.replace(WIDE, (run) => {
    const bytes = Buffer.from(run, 'utf8');
    return latin1Slice(bytes, 0, bytes.length);
  });
}

function badValue(key: string, why: string): never {
  throw new ProtocolError(
    'M2F_BAD_HEADER_VALUE',
    `header ${JSON.stringify(key.slice(0, 40))} ${why}`,
    { value: key.slice(0, 40) },
  );
}

function toHeaderValue(key: string, v: unknown): HeaderValue {
  if (typeof v === 'string') return toByteString(v);
  if (!Array.isArray(v)) badValue(key, 'is neither a string nor a list');
  if (v.length === 0) badValue(key, 'is an empty list');
  const out: string[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    if (typeof item !== 'string') badValue(key, 'has a non-string item');
    out[i] = toByteString(item);
  }
  return out;
}

/**
 * Decodes the JSON header object in `buf[start, end)` losslessly: every key
 * and value is a latin1 byte string of the bytes Mongrel2 sent. Values must
 * be strings or non-empty lists of strings. The result has a null prototype;
 * a repeated key keeps its last value.
 * @throws ProtocolError `M2F_BAD_JSON_HEADERS` when the text is not a JSON
 * object, `M2F_BAD_HEADER_VALUE` for a value of another shape.
 */
export function decodeJsonHeaders(
  buf: Buffer,
  start: number,
  end: number,
): HeaderMap {
  const text = latin1Slice(buf, start, end).replace(CONTROL, escapeControl);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(
      'M2F_BAD_JSON_HEADERS',
      `header block is not valid JSON: ${(err as Error).message.slice(0, 80)}`,
      { offset: start, value: excerpt(buf, start, end) },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ProtocolError(
      'M2F_BAD_JSON_HEADERS',
      'header block is not a JSON object',
      { offset: start, value: excerpt(buf, start, end) },
    );
  }

  const headers: HeaderMap = Object.create(null);
  const source = parsed as Record<string, unknown>;
  // Only a \u escape can make a char above 0xFF; without one (the usual
  // case) every string is already a byte string.
  const wide = text.includes('\\u');
  for (const key in source) {
    const v = source[key];
    if (typeof v === 'string' && !wide) headers[key] = v;
    else headers[wide ? toByteString(key) : key] = toHeaderValue(key, v);
  }
  return headers;
}
