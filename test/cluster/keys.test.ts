import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { M2FleetError } from '../../src/handler/errors.js';
import {
  generateGroupKeyLine,
  generateSigningKeyPair,
  Keyring,
  parseGroupKeys,
  parseGroupKeysEnv,
  parseKeySpec,
  readGroupKeys,
  readSignKey,
  readVerifyKey,
  type GroupKey,
} from '../../src/cluster/keys.js';

const dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeKeyFile(text: string, mode: number): string {
  const file = path.join(dir, `key-${fileCount++}`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

const b64 = (n: number): string => randomBytes(n).toString('base64');

/** Asserts `fn` throws M2F_CLUSTER_KEY with a message matching every pattern. */
function assertKeyError(fn: () => unknown, ...patterns: RegExp[]): M2FleetError {
  let caught: unknown;
  assert.throws(fn, (err) => { caught = err; return true; });
  assert.ok(caught instanceof M2FleetError, `expected M2FleetError, got ${String(caught)}`);
  assert.equal(caught.code, 'M2F_CLUSTER_KEY');
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

describe('parseGroupKeys', () => {
  it('when the text has comments and blank lines then keys come back in order, first one first', () => {
    const k2 = b64(32);
    const k1 = b64(48);
    const keys = parseGroupKeys(`# cluster keys\n\n2 ${k2}\n  # old key\n1\t${k1}\r\n`, 'f');
    assert.deepEqual(keys.map((k) => k.id), [2, 1]);
    assert.deepEqual(keys[0]!.secret, Buffer.from(k2, 'base64'));
    assert.equal(keys[1]!.secret.length, 48);
  });

  it('when the id is 4294967295 then it is accepted, and 4294967296 is refused', () => {
    assert.equal(parseGroupKeys(`4294967295 ${b64(32)}`, 'f')[0]!.id, 4294967295);
    assertKeyError(() => parseGroupKeys(`4294967296 ${b64(32)}`, 'f'), /f line 1/, /key id/);
  });

  const bad: [string, string, RegExp][] = [
    ['a non-numeric id', `x1 ${b64(32)}`, /key id/],
    ['a negative id', `-1 ${b64(32)}`, /key id/],
    ['a leading-zero id', `07 ${b64(32)}`, /key id/],
    ['a missing secret', '3', /expected "ID BASE64"/],
    ['a third field', `3 ${b64(32)} extra`, /expected "ID BASE64"/],
    ['invalid base64', '3 not*base64!!', /not valid base64/],
    ['unpadded base64', `3 ${b64(32).replace(/=+$/, '')}`, /not valid base64/],
    ['a 31-byte secret', `3 ${b64(31)}`, /31 bytes, at least 32/],
  ];
  for (const [what, line, pattern] of bad) {
    it(`when a line has ${what} then the error names the source and line`, () => {
      assertKeyError(() => parseGroupKeys(`# header\n1 ${b64(32)}\n${line}\n`, '/etc/k'),
        /^\/etc\/k line 3: /, pattern);
    });
  }

  it('when an id is listed twice then it is refused', () => {
    assertKeyError(() => parseGroupKeys(`1 ${b64(32)}\n1 ${b64(32)}`, 'f'), /line 2/, /listed twice/);
  });

  it('when the text holds no key then it is refused', () => {
    assertKeyError(() => parseGroupKeys('# nothing\n\n', 'empty.key'), /empty\.key: no group key/);
  });

  it('when a key is too short then the message does not repeat the secret', () => {
    const secret = b64(16);
    const err = assertKeyError(() => parseGroupKeys(`1 ${secret}`, 'f'));
    assert.ok(!err.message.includes(secret));
  });
});

describe('parseGroupKeysEnv', () => {
  it('when keys are separated by ";" or newlines then all are read in order', () => {
    const [a, b, c] = [b64(32), b64(32), b64(32)];
    const keys = parseGroupKeysEnv(`1 ${a}; 2 ${b}\n3 ${c};`);
    assert.deepEqual(keys.map((k) => k.id), [1, 2, 3]);
    assert.deepEqual(keys[1]!.secret, Buffer.from(b, 'base64'));
  });

  it('when an entry is bad then the error names the variable and the entry', () => {
    assertKeyError(() => parseGroupKeysEnv(`1 ${b64(32)};2 short`),
      /^M2FLEET_CLUSTER_KEY entry 2: /);
  });
});

describe('readGroupKeys', () => {
  it('when the file is mode 0600 then its keys are read', () => {
    const file = writeKeyFile(`5 ${b64(32)}\n`, 0o600);
    assert.deepEqual(readGroupKeys(file).map((k) => k.id), [5]);
  });

  for (const mode of [0o640, 0o604, 0o620, 0o700 | 0o001]) {
    it(`when the file is mode 0${mode.toString(8)} then it is refused with a chmod 600 hint`, () => {
      const file = writeKeyFile(`5 ${b64(32)}\n`, mode);
      assertKeyError(() => readGroupKeys(file), new RegExp(`chmod 600 ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    });
  }

  it('when the file is missing then the error names it', () => {
    const file = path.join(dir, 'absent.key');
    assertKeyError(() => readGroupKeys(file), /absent\.key/);
  });

  it('when a line is bad then the error names the file and line', () => {
    const file = writeKeyFile(`5 ${b64(32)}\n6 nope\n`, 0o600);
    assertKeyError(() => readGroupKeys(file), new RegExp(`${path.basename(file)} line 2`));
  });
});

describe('parseKeySpec', () => {
  it('when given ID:FILE then it returns both', () => {
    assert.deepEqual(parseKeySpec('7:/etc/x.pem'), { id: 7, file: '/etc/x.pem' });
    assert.deepEqual(parseKeySpec('0:C:/keys/a.pem'), { id: 0, file: 'C:/keys/a.pem' });
  });

  for (const spec of ['/etc/x.pem', '7:', ':/etc/x.pem', 'x:/a', '-1:/a', '4294967296:/a']) {
    it(`when given ${JSON.stringify(spec)} then it is refused`, () => {
      assertKeyError(() => parseKeySpec(spec), /ID:FILE/);
    });
  }
});

describe('signing key files', () => {
  const pair = generateSigningKeyPair();

  it('when the private key file is 0600 and the public one 0644 then both load as ed25519', () => {
    const sign = readSignKey({ id: 3, file: writeKeyFile(pair.privatePem, 0o600) });
    const verify = readVerifyKey({ id: 3, file: writeKeyFile(pair.publicPem, 0o644) });
    assert.equal(sign.id, 3);
    assert.equal(sign.key.type, 'private');
    assert.equal(verify.key.type, 'public');
    assert.equal(verify.key.asymmetricKeyType, 'ed25519');
  });

  it('when the private key file is readable by others then it is refused with a chmod 600 hint', () => {
    const file = writeKeyFile(pair.privatePem, 0o644);
    assertKeyError(() => readSignKey({ id: 1, file }), /chmod 600/);
  });

  it('when a verify key file holds a private key then it is refused', () => {
    const file = writeKeyFile(pair.privatePem, 0o600);
    assertKeyError(() => readVerifyKey({ id: 1, file }), /private key/);
  });

  it('when a key file holds an x25519 key or no PEM then it is refused', () => {
    const x = generateKeyPairSync('x25519', {
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    assertKeyError(() => readSignKey({ id: 1, file: writeKeyFile(x.privateKey, 0o600) }), /ed25519/);
    assertKeyError(() => readVerifyKey({ id: 1, file: writeKeyFile(x.publicKey, 0o644) }), /ed25519/);
    assertKeyError(() => readVerifyKey({ id: 1, file: writeKeyFile('junk', 0o644) }), /not a PEM/);
  });
});

describe('generators', () => {
  it('when a group key line is generated then it parses back to 32 fresh bytes', () => {
    const a = parseGroupKeys(generateGroupKeyLine(9), 'gen')[0]!;
    const b = parseGroupKeys(generateGroupKeyLine(9), 'gen')[0]!;
    assert.equal(a.id, 9);
    assert.equal(a.secret.length, 32);
    assert.notDeepEqual(a.secret, b.secret);
    assertKeyError(() => generateGroupKeyLine(-1), /uint32/);
  });
});

describe('Keyring', () => {
  const gk = (id: number, bytes = 32): GroupKey => ({ id, secret: randomBytes(bytes) });
  const pair = generateSigningKeyPair();
  const signKey = { id: 4, key: readSignKey({ id: 4, file: writeKeyFile(pair.privatePem, 0o600) }).key };
  const verifyKey = { id: 4, key: readVerifyKey({ id: 4, file: writeKeyFile(pair.publicPem, 0o644) }).key };
  const data = Buffer.from('datagram bytes');

  it('when only group keys are given then it is not in signed mode and cannot sign', () => {
    const ring = Keyring.create({ groupKeys: [gk(2), gk(1)] });
    assert.equal(ring.signedMode, false);
    assert.equal(ring.canSign(), false);
    assert.deepEqual(ring.groupKeyIds, [2, 1]);
    assert.equal(ring.sendKeyId('hmac-sha256'), 2);
    assertKeyError(() => ring.sendKeyId('ed25519'), /signing key/);
    assertKeyError(() => ring.sign('ed25519', data), /signing key/);
  });

  it('when verify keys are given then it is in signed mode; a sign key lets it sign', () => {
    const follower = Keyring.create({ groupKeys: [gk(1)], verifyKeys: [verifyKey] });
    const main = Keyring.create({ groupKeys: [gk(1)], signKey });
    assert.equal(follower.signedMode, true);
    assert.equal(follower.canSign(), false);
    assert.equal(main.signedMode, false);
    assert.equal(main.canSign(), true);

    const sig = main.sign('ed25519', data);
    assert.equal(sig.length, 64);
    assert.equal(follower.verify('ed25519', 4, data, sig), true);
    assert.equal(follower.verify('ed25519', 5, data, sig), false);
    assert.equal(follower.verify('ed25519', 4, Buffer.from('other'), sig), false);
    assert.equal(follower.hasKey('ed25519', 4), true);
    assert.equal(follower.hasKey('hmac-sha256', 4), false);
  });

  it('when keys rotate then a tag from either listed key verifies and the first key sends', () => {
    const [oldKey, newKey] = [gk(1), gk(2)];
    const installed = Keyring.create({ groupKeys: [oldKey, newKey] });
    const switched = Keyring.create({ groupKeys: [newKey, oldKey] });
    const removed = Keyring.create({ groupKeys: [newKey] });

    const oldTag = installed.sign('hmac-sha256', data);
    const newTag = switched.sign('hmac-sha256', data);
    assert.equal(newTag.length, 32);
    assert.equal(switched.verify('hmac-sha256', 1, data, oldTag), true);
    assert.equal(installed.verify('hmac-sha256', 2, data, newTag), true);
    assert.equal(removed.hasKey('hmac-sha256', 1), false);
    assert.equal(removed.verify('hmac-sha256', 1, data, oldTag), false);
    assert.equal(removed.verify('hmac-sha256', 2, data, newTag.subarray(0, 31)), false);
  });

  it('when the options are wrong then create refuses them', () => {
    assertKeyError(() => Keyring.create({ groupKeys: [] }), /at least one group key/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(1), gk(1)] }), /given twice/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(1, 16)] }), /16 bytes/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(-3)] }), /uint32/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(1)], signKey: verifyKey }), /private key/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(1)], verifyKeys: [signKey] }), /public key/);
    assertKeyError(() => Keyring.create({ groupKeys: [gk(1)], verifyKeys: [verifyKey, verifyKey] }),
      /given twice/);
  });
});
