/**
 * The cluster keyring: group keys (HMAC-SHA256) that prove membership, and
 * the Ed25519 config key that proves a CONFIG or BEACON came from a main.
 *
 * Group key text, from a file or the M2FLEET_CLUSTER_KEY variable:
 *
 *   # comment
 *   2 BASE64-OF-32-OR-MORE-RANDOM-BYTES   <- first key: used to send
 *   1 BASE64-OF-32-OR-MORE-RANDOM-BYTES   <- still accepted
 *
 * Rotation: add the new key second everywhere, then move it first, then
 * drop the old one. Every listed key is accepted; only the first signs.
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as signData,
  timingSafeEqual,
  verify as verifyData,
  type KeyObject,
} from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { M2FleetError } from '../handler/errors.js';
import type { AuthAlgorithm } from './types.js';

/** Error code of every key problem: bad text, bad file mode, missing key. */
export const CLUSTER_KEY_ERROR = 'M2F_CLUSTER_KEY';

/** Fewest secret bytes a group key may have. */
export const MIN_GROUP_KEY_BYTES = 32;

/** One HMAC-SHA256 group key. */
export interface GroupKey {
  /** Key id sent in the envelope (uint32). */
  readonly id: number;
  readonly secret: Buffer;
}

/** An Ed25519 key with its id: private on a main, public on followers. */
export interface IdentifiedKey {
  /** Key id sent in the envelope (uint32). */
  readonly id: number;
  readonly key: KeyObject;
}

/** `ID:FILE`, as given to `--cluster-sign-key` / `--cluster-verify-key`. */
export interface KeySpec {
  readonly id: number;
  readonly file: string;
}

/** What {@link Keyring.create} takes. */
export interface KeyringOptions {
  /** At least one; the first is used to send. */
  groupKeys: readonly GroupKey[];
  /** Ed25519 private key, on a main in signed mode. */
  signKey?: IdentifiedKey;
  /** Ed25519 public keys; any given turns signed mode on. */
  verifyKeys?: readonly IdentifiedKey[];
}

function keyError(message: string): M2FleetError {
  return new M2FleetError(CLUSTER_KEY_ERROR, message);
}

/** Parses a key id: canonical decimal uint32, or null. */
function parseKeyId(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text)) return null;
  const id = Number(text);
  return id <= 0xffffffff ? id : null;
}

function isKeyId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffffffff;
}

/** Decodes canonical base64 (padding required), or null. */
function decodeBase64(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

/**
 * Parses one group key entry; `where` names it in errors ("FILE line 3").
 * Messages never repeat the secret.
 */
function parseGroupKeyEntry(entry: string, where: string): GroupKey {
  const fields = entry.split(/[ \t]+/);
  if (fields.length !== 2) {
    throw keyError(`${where}: expected "ID BASE64", found ${fields.length} field(s)`);
  }

  const id = parseKeyId(fields[0]!);
  if (id === null) {
    throw keyError(`${where}: key id must be a decimal number from 0 to 4294967295`);
  }

  const secret = decodeBase64(fields[1]!);
  if (secret === null) throw keyError(`${where}: key ${id} is not valid base64`);
  if (secret.length < MIN_GROUP_KEY_BYTES) {
    throw keyError(`${where}: key ${id} has ${secret.length} bytes, at least ${MIN_GROUP_KEY_BYTES} are required`);
  }
  return { id, secret };
}

function parseGroupKeyEntries(
  entries: readonly string[], source: string, unit: string,
): GroupKey[] {
  const keys: GroupKey[] = [];
  const seen = new Set<number>();
  entries.forEach((raw, index) => {
    const entry = raw.trim();
    if (entry === '' || entry.startsWith('#')) return;

    const key = parseGroupKeyEntry(entry, `${source} ${unit} ${index + 1}`);
    if (seen.has(key.id)) {
      throw keyError(`${source} ${unit} ${index + 1}: key id ${key.id} is listed twice`);
    }
    seen.add(key.id);
    keys.push(key);
  });

  if (keys.length === 0) throw keyError(`${source}: no group key found`);
  return keys;
}

/**
 * Parses group key text: one `ID BASE64` per line, `#` comments and blank
 * lines allowed. The first key sends; all are accepted. `source` names the
 * text in errors. Throws M2FleetError M2F_CLUSTER_KEY naming source and line.
 */
export function parseGroupKeys(text: string, source: string): GroupKey[] {
  return parseGroupKeyEntries(text.split(/\r?\n/), source, 'line');
}

/**
 * Parses the M2FLEET_CLUSTER_KEY form: the same entries separated by `;`
 * or newlines (`1 BASE64;2 BASE64`). The caller reads the environment.
 * Throws M2FleetError M2F_CLUSTER_KEY naming the entry.
 */
export function parseGroupKeysEnv(value: string): GroupKey[] {
  return parseGroupKeyEntries(value.split(/;|\r?\n/), 'M2FLEET_CLUSTER_KEY', 'entry');
}

/**
 * Reads a secret file that only its owner may access: refuses a file whose
 * mode grants anything to group or others (mode & 0o077).
 */
function readSecretFile(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw keyError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }

  try {
    // Check the opened file, not the path, so a swap cannot slip past.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw keyError(`${what} ${file} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw keyError(`${what} ${file} is accessible by group or others (mode ${mode}); run chmod 600 ${file}`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a group key file (format of {@link parseGroupKeys}). Throws
 * M2FleetError M2F_CLUSTER_KEY if it is missing, unparsable, or readable
 * by group or others (the message says `chmod 600 FILE`).
 */
export function readGroupKeys(file: string): GroupKey[] {
  return parseGroupKeys(readSecretFile(file, 'cluster key file'), file);
}

/**
 * Parses `ID:FILE` (`7:/etc/m2fleet/config-sign.pem`). Throws
 * M2FleetError M2F_CLUSTER_KEY when the id or the file is missing.
 */
export function parseKeySpec(spec: string): KeySpec {
  const colon = spec.indexOf(':');
  const id = colon < 0 ? null : parseKeyId(spec.slice(0, colon));
  const file = spec.slice(colon + 1);
  if (id === null || file === '') {
    throw keyError(`key spec ${JSON.stringify(spec)}: expected ID:FILE with ID a decimal number from 0 to 4294967295`);
  }
  return { id, file };
}

/**
 * Reads the Ed25519 private key of a main (PEM, mode 0600 like group key
 * files). Throws M2FleetError M2F_CLUSTER_KEY on any problem.
 */
export function readSignKey(spec: KeySpec): IdentifiedKey {
  const pem = readSecretFile(spec.file, 'config signing key');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw keyError(`config signing key ${spec.file}: not a PEM private key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw keyError(`config signing key ${spec.file}: expected an ed25519 key, found ${key.asymmetricKeyType}`);
  }
  return { id: spec.id, key };
}

/**
 * Reads an Ed25519 public key (PEM). Refuses a private key, which has no
 * business on a follower. Throws M2FleetError M2F_CLUSTER_KEY.
 */
export function readVerifyKey(spec: KeySpec): IdentifiedKey {
  let pem: string;
  try {
    pem = readFileSync(spec.file, 'utf8');
  } catch (err) {
    throw keyError(`cannot read config verify key ${spec.file}: ${(err as Error).message}`);
  }
  if (/PRIVATE KEY-----/.test(pem)) {
    throw keyError(`config verify key ${spec.file} holds a private key; give the public half`);
  }

  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw keyError(`config verify key ${spec.file}: not a PEM public key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw keyError(`config verify key ${spec.file}: expected an ed25519 key, found ${key.asymmetricKeyType}`);
  }
  return { id: spec.id, key };
}

/** A new group key line, `ID BASE64` of 32 random bytes. */
export function generateGroupKeyLine(id: number): string {
  if (!isKeyId(id)) throw keyError(`key id ${id} is not a uint32`);
  return `${id} ${randomBytes(MIN_GROUP_KEY_BYTES).toString('base64')}`;
}

/** A new Ed25519 pair: PKCS#8 private PEM and SPKI public PEM. */
export function generateSigningKeyPair(): { privatePem: string; publicPem: string } {
  const pair = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privatePem: pair.privateKey, publicPem: pair.publicKey };
}

function checkIds(ids: readonly number[], what: string): void {
  const seen = new Set<number>();
  for (const id of ids) {
    if (!isKeyId(id)) throw keyError(`${what} id ${id} is not a uint32`);
    if (seen.has(id)) throw keyError(`${what} id ${id} is given twice`);
    seen.add(id);
  }
}

function checkEd25519(key: KeyObject, type: 'private' | 'public', what: string): void {
  if (key.type !== type || key.asymmetricKeyType !== 'ed25519') {
    throw keyError(`${what} must be an ed25519 ${type} key`);
  }
}

/** Keys by algorithm and id; signs and verifies envelope tags. */
export class Keyring {
  readonly #groupKeys: ReadonlyMap<number, Buffer>;
  readonly #sendGroupKeyId: number;
  readonly #signKey: IdentifiedKey | undefined;
  readonly #verifyKeys: ReadonlyMap<number, KeyObject>;

  private constructor(opts: KeyringOptions) {
    this.#groupKeys = new Map(opts.groupKeys.map((k) => [k.id, Buffer.from(k.secret)]));
    this.#sendGroupKeyId = opts.groupKeys[0]!.id;
    this.#signKey = opts.signKey;
    this.#verifyKeys = new Map((opts.verifyKeys ?? []).map((k) => [k.id, k.key]));
  }

  /**
   * Checks and builds a keyring. Throws M2FleetError M2F_CLUSTER_KEY when
   * no group key is given, an id repeats or is not a uint32, a secret is
   * shorter than 32 bytes, or an Ed25519 key has the wrong type.
   */
  static create(opts: KeyringOptions): Keyring {
    if (opts.groupKeys.length === 0) throw keyError('at least one group key is required');
    checkIds(opts.groupKeys.map((k) => k.id), 'group key');
    for (const k of opts.groupKeys) {
      if (k.secret.length < MIN_GROUP_KEY_BYTES) {
        throw keyError(`group key ${k.id} has ${k.secret.length} bytes, at least ${MIN_GROUP_KEY_BYTES} are required`);
      }
    }

    if (opts.signKey !== undefined) {
      checkIds([opts.signKey.id], 'signing key');
      checkEd25519(opts.signKey.key, 'private', `signing key ${opts.signKey.id}`);
    }
    const verifyKeys = opts.verifyKeys ?? [];
    checkIds(verifyKeys.map((k) => k.id), 'verify key');
    for (const k of verifyKeys) checkEd25519(k.key, 'public', `verify key ${k.id}`);
    return new Keyring(opts);
  }

  /** True when verify keys are set: CONFIG and BEACON must be Ed25519-signed. */
  get signedMode(): boolean {
    return this.#verifyKeys.size > 0;
  }

  /** True when this node holds the Ed25519 private key. */
  canSign(): boolean {
    return this.#signKey !== undefined;
  }

  /** Group key ids accepted, the sending one first. */
  get groupKeyIds(): number[] {
    const rest = [...this.#groupKeys.keys()].filter((id) => id !== this.#sendGroupKeyId);
    return [this.#sendGroupKeyId, ...rest];
  }

  /** Ed25519 key ids accepted. */
  get verifyKeyIds(): number[] {
    return [...this.#verifyKeys.keys()];
  }

  /** Whether a tag from key `keyId` under `auth` can be checked here. */
  hasKey(auth: AuthAlgorithm, keyId: number): boolean {
    return auth === 'hmac-sha256' ? this.#groupKeys.has(keyId) : this.#verifyKeys.has(keyId);
  }

  /**
   * The key id this node sends with under `auth`. Throws M2FleetError
   * M2F_CLUSTER_KEY for ed25519 without a signing key.
   */
  sendKeyId(auth: AuthAlgorithm): number {
    if (auth === 'hmac-sha256') return this.#sendGroupKeyId;
    if (this.#signKey === undefined) throw keyError('no config signing key: cannot sign with ed25519');
    return this.#signKey.id;
  }

  /** Tags `data` with the sending key of `auth` (32-byte HMAC or 64-byte signature). */
  sign(auth: AuthAlgorithm, data: Buffer): Buffer {
    if (auth === 'hmac-sha256') {
      const secret = this.#groupKeys.get(this.#sendGroupKeyId)!;
      return createHmac('sha256', secret).update(data).digest();
    }
    if (this.#signKey === undefined) throw keyError('no config signing key: cannot sign with ed25519');
    return signData(null, data, this.#signKey.key);
  }

  /** Checks a tag in constant time (HMAC) or by Ed25519 verify; never throws. */
  verify(auth: AuthAlgorithm, keyId: number, data: Buffer, tag: Buffer): boolean {
    try {
      if (auth === 'hmac-sha256') {
        const secret = this.#groupKeys.get(keyId);
        if (secret === undefined) return false;
        const expected = createHmac('sha256', secret).update(data).digest();
        return tag.length === expected.length && timingSafeEqual(tag, expected);
      }
      const key = this.#verifyKeys.get(keyId);
      return key !== undefined && tag.length === 64 && verifyData(null, data, key, tag);
    } catch {
      return false;
    }
  }
}
