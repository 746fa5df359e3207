import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { M2FleetError } from '../../src/handler/errors.js';
import { generateSigningKeyPair, Keyring, type GroupKey } from '../../src/cluster/keys.js';
import {
  checkJsonText,
  decodeDatagram,
  encodeDatagram,
  MAX_DATAGRAM,
  type DecodeResult,
} from '../../src/cluster/wire.js';
import type { AuthAlgorithm, Envelope, MessageKind } from '../../src/cluster/types.js';

const CLUSTER = 'prod.eu-1';
const KINDS: MessageKind[] = ['config', 'beacon', 'discover', 'status', 'leave'];
const AUTHS: AuthAlgorithm[] = ['hmac-sha256', 'ed25519'];

const group: GroupKey = { id: 11, secret: randomBytes(32) };
const pair = generateSigningKeyPair();
const signKey = { id: 7, key: createPrivateKey(pair.privatePem) };
const verifyKey = { id: 7, key: createPublicKey(pair.publicPem) };

/** The main: signs with Ed25519 and the group key. */
const main = Keyring.create({ groupKeys: [group], signKey });
/** A follower in signed mode. */
const follower = Keyring.create({ groupKeys: [group], verifyKeys: [verifyKey] });
/** A node in shared-secret mode. */
const shared = Keyring.create({ groupKeys: [group] });

const header: Omit<Envelope, 'auth' | 'keyId'> = {
  kind: 'discover',
  nodeId: '0123456789abcdef0123456789abcdef',
  bootId: 'fedcba9876543210',
  seq: 42,
  timestamp: 1_700_000_000_123,
  cluster: CLUSTER,
};
const body = { version: 3, digest: 'ab'.repeat(32), list: [1, 'two', null, true] };

function encode(
  kind: MessageKind, auth: AuthAlgorithm = 'hmac-sha256', payload: unknown = body,
): Buffer {
  return encodeDatagram({ ...header, kind }, payload, main, auth);
}

function assertReject(r: DecodeResult, reason: string): void {
  assert.equal(r.ok, false, `expected ${reason}, got accepted`);
  if (!r.ok) assert.equal(r.reason, reason, `detail: ${r.detail}`);
}

/**
 * Builds a datagram by hand with an HMAC made from `group`, so a test can
 * put anything in a field and still carry a valid tag.
 */
function craft(parts: {
  magic?: string; version?: number; kind?: number; flags?: number; auth?: number;
  keyId?: number; seq?: bigint; name?: Buffer; body?: Buffer; secret?: Buffer;
}): Buffer {
  const name = parts.name ?? Buffer.from(CLUSTER);
  const payload = parts.body ?? Buffer.from('{"a":1}');
  const head = Buffer.alloc(53);
  head.write(parts.magic ?? 'M2FL', 0, 'latin1');
  head[4] = parts.version ?? 1;
  head[5] = parts.kind ?? 3;
  head[6] = parts.flags ?? 0;
  head[7] = parts.auth ?? 1;
  head.writeUInt32BE(parts.keyId ?? group.id, 8);
  head.write(header.nodeId, 12, 'hex');
  head.write(header.bootId, 28, 'hex');
  head.writeBigUInt64BE(parts.seq ?? 1n, 36);
  head.writeBigUInt64BE(BigInt(header.timestamp), 44);
  head[52] = name.length;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(payload.length);
  const signed = Buffer.concat([head, name, len, payload]);
  const tag = createHmac('sha256', parts.secret ?? group.secret).update(signed).digest();
  return Buffer.concat([signed, tag]);
}

describe('round trips', () => {
  for (const auth of AUTHS) {
    for (const kind of KINDS) {
      it(`when a ${kind} is encoded with ${auth} then a receiver decodes the same envelope and body`, () => {
        const buf = encode(kind, auth);
        // HMAC config and beacon are for shared-secret mode only.
        const r = decodeDatagram(buf, auth === 'ed25519' ? follower : shared, CLUSTER);
        assert.ok(r.ok, r.ok ? '' : `${r.reason}: ${r.detail}`);
        const keyId = auth === 'ed25519' ? 7 : 11;
        assert.deepEqual(r.envelope, { ...header, kind, auth, keyId });
        assert.deepEqual(r.body, body);
        assert.equal(buf.length, 55 + CLUSTER.length + JSON.stringify(body).length
          + (auth === 'ed25519' ? 64 : 32));
      });
    }
  }

  it('when seq and timestamp are 2^53-1 and zero then they survive the trip', () => {
    const env = { ...header, seq: Number.MAX_SAFE_INTEGER, timestamp: 0 };
    const r = decodeDatagram(encodeDatagram(env, {}, shared, 'hmac-sha256'), shared, CLUSTER);
    assert.ok(r.ok);
    assert.equal(r.envelope.seq, Number.MAX_SAFE_INTEGER);
    assert.equal(r.envelope.timestamp, 0);
    assert.deepEqual(r.body, {});
  });

  it('when a shared-secret node receives an HMAC config then it accepts it', () => {
    assert.equal(decodeDatagram(encode('config'), shared, CLUSTER).ok, true);
  });

  it('when a signed-mode follower receives HMAC discover, status or leave then it accepts them', () => {
    for (const kind of ['discover', 'status', 'leave'] as const) {
      assert.equal(decodeDatagram(encode(kind), follower, CLUSTER).ok, true, kind);
    }
  });
});

describe('reject reasons', () => {
  it('oversize: a datagram over 1200 bytes is refused before any key lookup or crypto', () => {
    const spy = Keyring.create({ groupKeys: [group] });
    let calls = 0;
    spy.verify = () => { calls++; throw new Error('verify must not run'); };
    spy.hasKey = () => { calls++; throw new Error('hasKey must not run'); };

    const big = craft({ body: Buffer.from(`{"a":"${'x'.repeat(1200 - 55 - CLUSTER.length - 32 - 8 + 1)}"}`) });
    assert.equal(big.length, 1201);
    assertReject(decodeDatagram(big, spy, CLUSTER), 'oversize');
    assertReject(decodeDatagram(randomBytes(70_000), spy, CLUSTER), 'oversize');
    assert.equal(calls, 0);
  });

  it('oversize boundary: exactly 1200 bytes is accepted', () => {
    const fit = craft({ body: Buffer.from(`{"a":"${'x'.repeat(1200 - 55 - CLUSTER.length - 32 - 8)}"}`) });
    assert.equal(fit.length, MAX_DATAGRAM);
    assert.equal(decodeDatagram(fit, shared, CLUSTER).ok, true);
  });

  it('malformed: empty, short, or without the M2FL magic', () => {
    const good = encode('status');
    assertReject(decodeDatagram(Buffer.alloc(0), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(Buffer.from('M2FL'), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(good.subarray(0, 40), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(craft({ magic: 'M2FX' }), shared, CLUSTER), 'malformed');
  });

  it('malformed: trailing bytes, a short tag, or a body length that overruns', () => {
    const good = encode('status');
    assertReject(decodeDatagram(Buffer.concat([good, Buffer.from([0])]), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(good.subarray(0, good.length - 1), shared, CLUSTER), 'malformed');
    const overrun = Buffer.from(good);
    overrun.writeUInt16BE(0xffff, 53 + CLUSTER.length);
    assertReject(decodeDatagram(overrun, shared, CLUSTER), 'malformed');
  });

  it('malformed: nonzero flags, unknown auth byte, empty or invalid cluster name', () => {
    assertReject(decodeDatagram(craft({ flags: 1 }), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(craft({ auth: 3 }), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(craft({ auth: 0 }), shared, CLUSTER), 'malformed');
    assertReject(decodeDatagram(craft({ name: Buffer.alloc(0) }), shared, ''), 'malformed');
    assertReject(decodeDatagram(craft({ name: Buffer.from('a b') }), shared, 'a b'), 'malformed');
  });

  it('malformed: a seq above 2^53-1 is refused even with a valid tag', () => {
    assertReject(decodeDatagram(craft({ seq: 2n ** 53n }), shared, CLUSTER), 'malformed');
    assert.equal(decodeDatagram(craft({ seq: 2n ** 53n - 1n }), shared, CLUSTER).ok, true);
  });

  it('unknown_version: version 0, 2 and 255 are refused', () => {
    for (const version of [0, 2, 255]) {
      assertReject(decodeDatagram(craft({ version }), shared, CLUSTER), 'unknown_version');
    }
  });

  it('unknown_kind: kind bytes 0, 6, 255 and uWSGI modifier values are refused even with a valid tag', () => {
    for (const kind of [0, 6, 73, 95, 96, 98, 99, 255]) {
      assertReject(decodeDatagram(craft({ kind }), shared, CLUSTER), 'unknown_kind');
    }
  });

  it('foreign_cluster: another cluster name is refused before any key is looked up', () => {
    const r = decodeDatagram(encode('beacon', 'ed25519'), follower, 'staging');
    assertReject(r, 'foreign_cluster');
  });

  it('unknown_key: an unknown group key id, or ed25519 without verify keys', () => {
    assertReject(decodeDatagram(craft({ keyId: 12 }), shared, CLUSTER), 'unknown_key');
    assertReject(decodeDatagram(encode('config', 'ed25519'), shared, CLUSTER), 'unknown_key');
  });

  it('bad_auth: a datagram forged with another group key under the same id', () => {
    const forged = craft({ secret: randomBytes(32) });
    assertReject(decodeDatagram(forged, shared, CLUSTER), 'bad_auth');
    const other = Keyring.create({ groupKeys: [{ id: group.id, secret: randomBytes(32) }] });
    assertReject(decodeDatagram(encode('status'), other, CLUSTER), 'bad_auth');
  });

  it('bad_auth: a config signed by another Ed25519 key under the same id', () => {
    const rogue = generateSigningKeyPair();
    const rogueRing = Keyring.create({
      groupKeys: [group], signKey: { id: 7, key: createPrivateKey(rogue.privatePem) },
    });
    const buf = encodeDatagram({ ...header, kind: 'config' }, body, rogueRing, 'ed25519');
    assertReject(decodeDatagram(buf, follower, CLUSTER), 'bad_auth');
  });

  it('unsigned_config: in signed mode an HMAC-only config or beacon is refused', () => {
    assertReject(decodeDatagram(encode('config'), follower, CLUSTER), 'unsigned_config');
    assertReject(decodeDatagram(encode('beacon'), follower, CLUSTER), 'unsigned_config');
  });

  const badBodies: [string, Buffer][] = [
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])],
    ['a UTF-8 BOM', Buffer.from('\ufeff{"a":1}')],
    ['an empty body', Buffer.alloc(0)],
    ['an array', Buffer.from('[1,2]')],
    ['a number', Buffer.from('1')],
    ['a string', Buffer.from('"x"')],
    ['depth 5', Buffer.from('{"a":{"b":{"c":{"d":{"e":1}}}}}')],
    ['depth 5 through arrays', Buffer.from('{"a":[[[[1]]]]}')],
    ['a __proto__ key', Buffer.from('{"__proto__":{"x":1}}')],
    ['an escaped __proto__ key', Buffer.from('{"\\u005f_proto__":1}')],
    ['a nested constructor key', Buffer.from('{"a":[{"constructor":1}]}')],
    ['a prototype key', Buffer.from('{"a":{"prototype":null}}')],
    ['duplicate keys', Buffer.from('{"a":1,"b":2,"a":3}')],
    ['duplicate keys spelled with an escape', Buffer.from('{"a":1,"\\u0061":2}')],
    ['nested duplicate keys', Buffer.from('{"x":{"k":1,"k":1}}')],
    ['trailing text', Buffer.from('{"a":1} x')],
    ['two objects', Buffer.from('{}{}')],
    ['a trailing comma', Buffer.from('{"a":1,}')],
    ['single quotes', Buffer.from("{'a':1}")],
    ['a raw control character in a string', Buffer.from('{"a":"x\ny"}')],
    ['a leading-zero number', Buffer.from('{"a":01}')],
    ['NaN', Buffer.from('{"a":NaN}')],
    ['an unterminated object', Buffer.from('{"a":1')],
  ];
  for (const [what, payload] of badBodies) {
    it(`bad_body: ${what} is refused after the tag checks out`, () => {
      assertReject(decodeDatagram(craft({ body: payload }), shared, CLUSTER), 'bad_body');
    });
  }

  it('bad_body boundary: depth 4, equal keys in sibling objects and escapes are accepted', () => {
    const ok = ['{"a":{"b":{"c":{"d":1}}}}', '{"a":{"b":{"c":[1,"\\u00e9\\n",-0.5e+3]}}}', '{"x":{"k":1},"y":{"k":1}}',
      ' {\t"a" : [ ] , "b":{ } }\r\n', '{"é":"ü"}'];
    for (const text of ok) {
      const r = decodeDatagram(craft({ body: Buffer.from(text) }), shared, CLUSTER);
      assert.ok(r.ok, text);
      assert.deepEqual(r.body, JSON.parse(text));
    }
  });
});

describe('uWSGI cluster packets', () => {
  /** uWSGI header: modifier1, datasize (u16 little endian), modifier2. */
  const uwsgi = (m1: number, m2: number, payload: Buffer): Buffer => {
    const h = Buffer.from([m1, 0, 0, m2]);
    h.writeUInt16LE(payload.length, 1);
    return Buffer.concat([h, payload]);
  };
  const packets: [string, Buffer][] = [
    ['new-node announce (73)', uwsgi(73, 0, Buffer.from('host-a'))],
    ['presence (95)', uwsgi(95, 0, Buffer.from('\x08\x00hostname\x06\x00host-a'))],
    ['remote log (96)', uwsgi(96, 0, Buffer.from('rm -rf /\n'))],
    ['graceful reload (98)', uwsgi(98, 0, Buffer.alloc(0))],
    ['config request (99/0)', uwsgi(99, 0, Buffer.alloc(0))],
    ['config reply (99/1)', uwsgi(99, 1, Buffer.from('\x06\x00master\x01\x001'))],
  ];
  for (const [what, packet] of packets) {
    it(`when a uWSGI ${what} packet arrives then it is malformed`, () => {
      assertReject(decodeDatagram(packet, shared, CLUSTER), 'malformed');
    });
  }
});

describe('encodeDatagram refusals', () => {
  function assertCode(fn: () => unknown, code: string, pattern?: RegExp): void {
    assert.throws(fn, (err) => {
      assert.ok(err instanceof M2FleetError);
      assert.equal(err.code, code);
      if (pattern) assert.match(err.message, pattern);
      return true;
    });
  }

  it('when the datagram would be 1201 bytes then it throws M2F_CLUSTER_OVERSIZE saying how big', () => {
    const room = MAX_DATAGRAM - 55 - CLUSTER.length - 32 - JSON.stringify({ a: '' }).length;
    assert.equal(encodeDatagram(header, { a: 'x'.repeat(room) }, shared, 'hmac-sha256').length, 1200);
    assertCode(() => encodeDatagram(header, { a: 'x'.repeat(room + 1) }, shared, 'hmac-sha256'),
      'M2F_CLUSTER_OVERSIZE', /1201 bytes/);
  });

  for (const name of ['', 'a'.repeat(65), 'a b', 'prod/eu', 'zürich', 'x\n']) {
    it(`when the cluster name is ${JSON.stringify(name)} then it is refused`, () => {
      assertCode(() => encodeDatagram({ ...header, cluster: name }, {}, shared, 'hmac-sha256'),
        'M2F_CLUSTER_ENVELOPE', /cluster name/);
    });
  }

  it('when a 64-character cluster name is used then it round-trips', () => {
    const name = 'A-z_0.9'.repeat(9).slice(0, 64);
    const r = decodeDatagram(encodeDatagram({ ...header, cluster: name }, {}, shared, 'hmac-sha256'),
      shared, name);
    assert.ok(r.ok);
    assert.equal(r.envelope.cluster, name);
  });

  it('when ids, seq or timestamp are out of range then it throws M2F_CLUSTER_ENVELOPE', () => {
    const cases: Partial<Envelope>[] = [
      { nodeId: 'ABCDEF0123456789ABCDEF0123456789' }, { nodeId: 'abc' }, { bootId: '0123' },
      { seq: -1 }, { seq: 1.5 }, { seq: 2 ** 53 }, { timestamp: Number.NaN },
      { kind: 'reload' as MessageKind },
    ];
    for (const c of cases) {
      assertCode(() => encodeDatagram({ ...header, ...c }, {}, shared, 'hmac-sha256'),
        'M2F_CLUSTER_ENVELOPE');
    }
  });

  it('when the body is not a strict JSON object then it throws M2F_CLUSTER_ENVELOPE', () => {
    for (const b of [[1], 'x', undefined, JSON.parse('{"__proto__":1}'), { a: { b: { c: { d: {} } } } }]) {
      assertCode(() => encodeDatagram(header, b, shared, 'hmac-sha256'), 'M2F_CLUSTER_ENVELOPE');
    }
  });

  it('when ed25519 is asked of a node without a signing key then it throws M2F_CLUSTER_KEY', () => {
    assertCode(() => encodeDatagram(header, {}, follower, 'ed25519'), 'M2F_CLUSTER_KEY');
  });
});

describe('fuzz: the decoder never throws and never accepts damage', () => {
  const valid = AUTHS.flatMap((auth) => KINDS.map((kind) => encode(kind, auth)));
  const receivers = [follower, shared];

  /** Decodes with both receivers; a reject must come from a check, not the catch-all. */
  function decodeAll(buf: Buffer): DecodeResult[] {
    const results = receivers.map((ring) => decodeDatagram(buf, ring, CLUSTER));
    for (const r of results) {
      if (!r.ok) assert.ok(!r.detail?.startsWith('decoder error'), r.detail);
    }
    return results;
  }

  it('when the undamaged datagrams are decoded then a receiver accepts each', () => {
    for (const buf of valid) assert.ok(decodeAll(buf).some((r) => r.ok));
  });

  it('when random bytes arrive then nothing is accepted', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1400 }), (bytes) => {
      for (const r of decodeAll(Buffer.from(bytes))) assert.equal(r.ok, false);
    }), { numRuns: 2000 });
  });

  it('when random bytes follow a valid M2FL v1 prefix then nothing is accepted', () => {
    const prefix = Buffer.from('M2FL\x01', 'latin1');
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      for (const r of decodeAll(Buffer.concat([prefix, Buffer.from(bytes)]))) {
        assert.equal(r.ok, false);
      }
    }), { numRuns: 2000 });
  });

  it('when a valid datagram is truncated at any length then it is refused as malformed', () => {
    for (const buf of valid) {
      for (let len = 0; len < buf.length; len++) {
        for (const r of decodeAll(buf.subarray(0, len))) {
          assert.equal(r.ok, false);
          if (!r.ok) assert.equal(r.reason, 'malformed', `length ${len}`);
        }
      }
    }
  });

  it('when any single byte of a valid datagram is changed then it is never accepted', () => {
    for (const buf of valid) {
      for (let i = 0; i < buf.length; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const copy = Buffer.from(buf);
          copy[i]! ^= mask;
          for (const r of decodeAll(copy)) assert.equal(r.ok, false, `byte ${i} ^ ${mask}`);
        }
      }
    }
  });

  it('when a random byte is changed to a random value then it is never accepted', () => {
    const arb = fc.record({
      which: fc.nat(valid.length - 1), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }),
    });
    fc.assert(fc.property(arb, ({ which, at, xor }) => {
      const copy = Buffer.from(valid[which]!);
      copy[at % copy.length]! ^= xor;
      for (const r of decodeAll(copy)) assert.equal(r.ok, false);
    }), { numRuns: 3000 });
  });
});

describe('checkJsonText against JSON.parse', () => {
  it('when a random JSON text passes the check then JSON.parse yields a plain object', () => {
    fc.assert(fc.property(fc.json({ maxDepth: 6 }), (text) => {
      if (checkJsonText(text) === null) {
        const value: unknown = JSON.parse(text);
        assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value));
      }
    }), { numRuns: 1000 });
  });

  it('when an object of safe keys is stringified then the check passes', () => {
    const key = fc.string({ maxLength: 8 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k));
    const leaf = fc.oneof(fc.string(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
    const inner = fc.dictionary(key, fc.oneof(leaf, fc.array(leaf, { maxLength: 3 })), { maxKeys: 4 });
    const doc = fc.dictionary(key, fc.oneof(leaf, inner), { maxKeys: 6 });
    fc.assert(fc.property(doc, (value) => {
      assert.equal(checkJsonText(JSON.stringify(value)), null);
    }), { numRuns: 1000 });
  });

  it('when random text is checked then it never throws and a pass implies JSON.parse agrees', () => {
    fc.assert(fc.property(fc.string({ maxLength: 60 }), (text) => {
      const problem = checkJsonText(`{${text}}`);
      if (problem === null) assert.doesNotThrow(() => JSON.parse(`{${text}}`));
    }), { numRuns: 3000 });
  });
});
