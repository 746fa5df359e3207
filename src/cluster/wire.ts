/**
 * The cluster envelope (protocol v1): encode and decode one datagram.
 * Pure functions; the decoder never throws, whatever the bytes.
 *
 *   offset  size  field (integers big-endian)
 *   0       4     magic "M2FL"
 *   4       1     protocol version (1)
 *   5       1     kind (1 config, 2 beacon, 3 discover, 4 status, 5 leave)
 *   6       1     flags (0; anything else is malformed)
 *   7       1     auth algorithm (1 hmac-sha256, 2 ed25519)
 *   8       4     key id
 *   12      16    sender node id
 *   28      8     boot id
 *   36      8     seq (uint64, at most 2^53 - 1)
 *   44      8     timestamp, ms since the epoch (same bound)
 *   52      1     cluster name length N (1-64)
 *   53      N     cluster name, [A-Za-z0-9._-]
 *   53+N    2     body length B
 *   55+N    B     body: UTF-8 JSON object
 *   55+N+B  T     tag over bytes 0 .. 55+N+B: 32-byte HMAC or 64-byte signature
 */
import { M2FleetError } from '../handler/errors.js';
import { CLUSTER_KEY_ERROR, type Keyring } from './keys.js';
import type { AuthAlgorithm, Envelope, MessageKind, RejectReason } from './types.js';

/** Largest datagram sent or accepted, in bytes (fits IPv6's 1280 minimum MTU). */
export const MAX_DATAGRAM = 1200;

/** The only envelope version this code speaks. */
export const PROTOCOL_VERSION = 1;

/** Error codes raised by src/cluster, for the error catalogue. */
export const CLUSTER_ERROR_CODES = [
  CLUSTER_KEY_ERROR,
  'M2F_CLUSTER_OVERSIZE',
  'M2F_CLUSTER_ENVELOPE',
] as const;

/** Deepest nesting of a body: the top object counts as 1. */
export const MAX_BODY_DEPTH = 4;

const MAGIC = Buffer.from('M2FL', 'latin1');
const FIXED_HEADER = 53;
const NAME_AT = 52;
const CLUSTER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

const KIND_CODES: Readonly<Record<MessageKind, number>> = {
  config: 1, beacon: 2, discover: 3, status: 4, leave: 5,
};
const KINDS_BY_CODE: readonly (MessageKind | undefined)[] =
  [undefined, 'config', 'beacon', 'discover', 'status', 'leave'];

const AUTH_CODES: Readonly<Record<AuthAlgorithm, number>> = { 'hmac-sha256': 1, ed25519: 2 };
const AUTHS_BY_CODE: readonly (AuthAlgorithm | undefined)[] =
  [undefined, 'hmac-sha256', 'ed25519'];
const TAG_LENGTH: Readonly<Record<AuthAlgorithm, number>> = { 'hmac-sha256': 32, ed25519: 64 };

/** What {@link decodeDatagram} returns. */
export type DecodeResult =
  | { ok: true; envelope: Envelope; body: unknown }
  | { ok: false; reason: RejectReason; detail?: string };

/** Whether `name` is a valid cluster name: 1-64 of [A-Za-z0-9._-]. */
export function isClusterName(name: string): boolean {
  return CLUSTER_NAME.test(name);
}

function envelopeError(message: string): M2FleetError {
  return new M2FleetError('M2F_CLUSTER_ENVELOPE', message);
}

function checkEnvelope(env: Omit<Envelope, 'auth' | 'keyId'>): void {
  if (!isClusterName(env.cluster)) {
    throw envelopeError(`cluster name ${JSON.stringify(env.cluster)} must be 1-64 characters of [A-Za-z0-9._-]`);
  }
  if (!Object.hasOwn(KIND_CODES, env.kind)) {
    throw envelopeError(`unknown message kind ${JSON.stringify(env.kind)}`);
  }
  if (!/^[0-9a-f]{32}$/.test(env.nodeId)) {
    throw envelopeError(`node id ${JSON.stringify(env.nodeId)} must be 32 lowercase hex characters`);
  }
  if (!/^[0-9a-f]{16}$/.test(env.bootId)) {
    throw envelopeError(`boot id ${JSON.stringify(env.bootId)} must be 16 lowercase hex characters`);
  }
  for (const field of ['seq', 'timestamp'] as const) {
    const value = env[field];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw envelopeError(`${field} ${value} must be a safe non-negative integer`);
    }
  }
}

/**
 * Builds one datagram: header, JSON body, then a tag made with the keyring's
 * sending key for `auth`.
 *
 * Throws M2FleetError: M2F_CLUSTER_ENVELOPE for a bad cluster name, kind,
 * id, seq or timestamp, or a body the decoder would refuse (not a JSON
 * object, too deep, forbidden keys); M2F_CLUSTER_OVERSIZE when the
 * datagram would exceed {@link MAX_DATAGRAM}; M2F_CLUSTER_KEY for ed25519
 * without a signing key.
 */
export function encodeDatagram(
  env: Omit<Envelope, 'auth' | 'keyId'>,
  body: unknown,
  keyring: Keyring,
  auth: AuthAlgorithm,
): Buffer {
  checkEnvelope(env);
  if (!Object.hasOwn(AUTH_CODES, auth)) throw envelopeError(`unknown auth algorithm ${JSON.stringify(auth)}`);
  const json = JSON.stringify(body);
  const bodyProblem = typeof json === 'string' ? checkJsonText(json) : 'not JSON-serialisable';
  if (bodyProblem !== null) throw envelopeError(`${env.kind} body refused: ${bodyProblem}`);

  const bodyBytes = Buffer.from(json, 'utf8');
  const name = Buffer.from(env.cluster, 'latin1');
  const signedLength = FIXED_HEADER + name.length + 2 + bodyBytes.length;
  const total = signedLength + TAG_LENGTH[auth];
  if (total > MAX_DATAGRAM) {
    throw new M2FleetError('M2F_CLUSTER_OVERSIZE',
      `${env.kind} datagram would be ${total} bytes (body ${bodyBytes.length} bytes); the limit is ${MAX_DATAGRAM}`);
  }

  const keyId = keyring.sendKeyId(auth);
  const out = Buffer.alloc(signedLength);
  MAGIC.copy(out, 0);
  out.writeUInt8(PROTOCOL_VERSION, 4);
  out.writeUInt8(KIND_CODES[env.kind], 5);
  out.writeUInt8(0, 6);
  out.writeUInt8(AUTH_CODES[auth], 7);
  out.writeUInt32BE(keyId, 8);
  out.write(env.nodeId, 12, 16, 'hex');
  out.write(env.bootId, 28, 8, 'hex');
  out.writeBigUInt64BE(BigInt(env.seq), 36);
  out.writeBigUInt64BE(BigInt(env.timestamp), 44);
  out.writeUInt8(name.length, NAME_AT);
  name.copy(out, FIXED_HEADER);
  out.writeUInt16BE(bodyBytes.length, FIXED_HEADER + name.length);
  bodyBytes.copy(out, FIXED_HEADER + name.length + 2);

  return Buffer.concat([out, keyring.sign(auth, out)]);
}

function reject(reason: RejectReason, detail?: string): DecodeResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail };
}

/**
 * Decodes and authenticates one datagram for cluster `cluster`. Never
 * throws. Checks, in order, each answering with its reject reason:
 *   1. more than MAX_DATAGRAM bytes: oversize (before anything else);
 *   2. no magic, or too short to hold one: malformed;
 *   3. version other than 1: unknown_version;
 *   4. nonzero flags, unknown auth byte, lengths that do not add up to
 *      the datagram's size, bad name bytes, seq or timestamp over 2^53-1:
 *      malformed;
 *   5. unknown kind (uWSGI's reload and log packets never get this far:
 *      they fail the magic): unknown_kind;
 *   6. another cluster's name: foreign_cluster;
 *   7. no key with that id for that algorithm: unknown_key;
 *   8. tag mismatch: bad_auth;
 *   9. signed mode and a CONFIG or BEACON tagged only by HMAC: unsigned_config;
 *  10. body not strict JSON (see checkJsonText) or not an object: bad_body.
 * The version is checked before the lengths so a future layout counts as
 * unknown_version rather than malformed.
 */
export function decodeDatagram(buf: Buffer, keyring: Keyring, cluster: string): DecodeResult {
  try {
    return decodeChecked(buf, keyring, cluster);
  } catch (err) {
    // Unreachable by design; kept so a bug here cannot kill the receiver.
    return reject('malformed', `decoder error: ${(err as Error).message}`);
  }
}

function decodeChecked(buf: Buffer, keyring: Keyring, cluster: string): DecodeResult {
  if (buf.length > MAX_DATAGRAM) return reject('oversize', `${buf.length} bytes`);
  if (buf.length < MAGIC.length + 1 || !buf.subarray(0, 4).equals(MAGIC)) {
    return reject('malformed', 'no M2FL magic');
  }
  if (buf[4] !== PROTOCOL_VERSION) return reject('unknown_version', `version ${buf[4]}`);

  const layout = readLayout(buf);
  if (typeof layout === 'string') return reject('malformed', layout);
  const { kind, auth, keyId, name, signedLength, bodyStart } = layout;
  if (kind === undefined) return reject('unknown_kind', `kind ${buf[5]}`);
  if (name !== cluster) return reject('foreign_cluster', name);
  if (!keyring.hasKey(auth, keyId)) return reject('unknown_key', `${auth} key ${keyId}`);

  const signed = buf.subarray(0, signedLength);
  if (!keyring.verify(auth, keyId, signed, buf.subarray(signedLength))) {
    return reject('bad_auth', `${auth} key ${keyId}`);
  }
  if (keyring.signedMode && auth !== 'ed25519' && (kind === 'config' || kind === 'beacon')) {
    return reject('unsigned_config', kind);
  }

  const body = parseBody(buf.subarray(bodyStart, signedLength));
  if (!body.ok) return reject('bad_body', body.problem);
  const envelope: Envelope = {
    kind, auth, keyId, cluster: name,
    nodeId: buf.toString('hex', 12, 28),
    bootId: buf.toString('hex', 28, 36),
    seq: Number(buf.readBigUInt64BE(36)),
    timestamp: Number(buf.readBigUInt64BE(44)),
  };
  return { ok: true, envelope, body: body.value };
}

interface Layout {
  kind: MessageKind | undefined;
  auth: AuthAlgorithm;
  keyId: number;
  name: string;
  bodyStart: number;
  /** Bytes covered by the tag; the tag follows. */
  signedLength: number;
}

/** Reads the v1 layout, or says why it does not hold together. */
function readLayout(buf: Buffer): Layout | string {
  if (buf.length < FIXED_HEADER) return `header needs ${FIXED_HEADER} bytes, got ${buf.length}`;
  if (buf[6] !== 0) return `flags ${buf[6]} (must be 0)`;
  const auth = AUTHS_BY_CODE[buf[7]!];
  if (auth === undefined) return `auth algorithm ${buf[7]}`;

  const nameLength = buf[NAME_AT]!;
  const bodyStart = FIXED_HEADER + nameLength + 2;
  if (nameLength === 0 || buf.length < bodyStart) return 'truncated cluster name';
  const name = buf.toString('latin1', FIXED_HEADER, FIXED_HEADER + nameLength);
  if (!isClusterName(name)) return 'cluster name has bytes outside [A-Za-z0-9._-]';

  const signedLength = bodyStart + buf.readUInt16BE(bodyStart - 2);
  const expected = signedLength + TAG_LENGTH[auth];
  if (buf.length !== expected) return `lengths add up to ${expected} bytes, got ${buf.length}`;

  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (buf.readBigUInt64BE(36) > max) return 'seq above 2^53-1';
  if (buf.readBigUInt64BE(44) > max) return 'timestamp above 2^53-1';
  return {
    kind: KINDS_BY_CODE[buf[5]!], auth, keyId: buf.readUInt32BE(8),
    name, bodyStart, signedLength,
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function parseBody(bytes: Buffer): { ok: true; value: unknown } | { ok: false; problem: string } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, problem: 'body is not valid UTF-8' };
  }
  const problem = checkJsonText(text);
  if (problem !== null) return { ok: false, problem };
  return { ok: true, value: JSON.parse(text) as unknown };
}

/**
 * Checks that `text` is one strict JSON object (RFC 8259 grammar, no BOM)
 * nested at most MAX_BODY_DEPTH deep, with no duplicate key in any object
 * and no `__proto__`, `constructor` or `prototype` key anywhere. Returns
 * null when it is, else what is wrong. JSON.parse alone cannot tell: it
 * keeps the last of two equal keys.
 */
export function checkJsonText(text: string): string | null {
  return new JsonScanner(text).scanDocument();
}

const LITERAL = /true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;

/** A validating JSON scanner: grammar, depth and keys, no value built. */
class JsonScanner {
  #at = 0;

  constructor(private readonly text: string) {}

  scanDocument(): string | null {
    this.#skipSpace();
    if (this.text[this.#at] !== '{') return 'body must be a JSON object';
    const problem = this.#value(1);
    if (problem !== null) return problem;
    this.#skipSpace();
    return this.#at === this.text.length ? null : `unexpected text at ${this.#at}`;
  }

  #skipSpace(): void {
    while (' \t\n\r'.includes(this.text[this.#at] ?? 'x')) this.#at++;
  }

  #value(depth: number): string | null {
    const c = this.text[this.#at];
    if (c === '{' || c === '[') {
      if (depth > MAX_BODY_DEPTH) return `nested deeper than ${MAX_BODY_DEPTH}`;
      return c === '{' ? this.#object(depth) : this.#array(depth);
    }
    if (c === '"') return this.#string() === null ? `bad string at ${this.#at}` : null;
    const literal = this.#match(LITERAL);
    return literal === null ? `unexpected ${JSON.stringify(c ?? 'end')} at ${this.#at}` : null;
  }

  #object(depth: number): string | null {
    const keys = new Set<string>();
    this.#at++;
    this.#skipSpace();
    if (this.text[this.#at] === '}') { this.#at++; return null; }
    for (;;) {
      this.#skipSpace();
      const keyAt = this.#at;
      const key = this.text[this.#at] === '"' ? this.#string() : null;
      if (key === null) return `expected a key at ${keyAt}`;
      if (FORBIDDEN_KEYS.has(key)) return `forbidden key ${JSON.stringify(key)}`;
      if (keys.has(key)) return `duplicate key ${JSON.stringify(key)}`;
      keys.add(key);

      this.#skipSpace();
      if (this.text[this.#at] !== ':') return `expected ":" at ${this.#at}`;
      this.#at++;
      const problem = this.#member(depth);
      if (problem !== null) return problem;
      const next = this.text[this.#at++];
      if (next === '}') return null;
      if (next !== ',') return `expected "," or "}" at ${this.#at - 1}`;
    }
  }

  #array(depth: number): string | null {
    this.#at++;
    this.#skipSpace();
    if (this.text[this.#at] === ']') { this.#at++; return null; }
    for (;;) {
      const problem = this.#member(depth);
      if (problem !== null) return problem;
      const next = this.text[this.#at++];
      if (next === ']') return null;
      if (next !== ',') return `expected "," or "]" at ${this.#at - 1}`;
    }
  }

  /** One value inside a container, with the space around it. */
  #member(depth: number): string | null {
    this.#skipSpace();
    const problem = this.#value(depth + 1);
    this.#skipSpace();
    return problem;
  }

  /** Scans a string token and returns its decoded value, or null if bad. */
  #string(): string | null {
    const token = this.#match(STRING);
    return token === null ? null : JSON.parse(token) as string;
  }

  /** Matches a sticky pattern at the cursor and moves past it. */
  #match(pattern: RegExp): string | null {
    pattern.lastIndex = this.#at;
    const found = pattern.exec(this.text);
    if (found === null) return null;
    this.#at += found[0].length;
    return found[0];
  }
}
