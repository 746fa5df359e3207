import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/handler/errors.js';
import {
  MAX_TARGETS,
  encodeClose,
  encodeCtl,
  encodeReply,
  replyPrefix,
  splitTargets,
} from '../../src/handler/reply.js';
import { parseTnetstring } from '../../src/handler/tnetstring.js';
import { loadCapture } from '../helpers/captures.js';

const SENDER = 'a1b2c3d4-tnet-0000-0000-000000000002';
const L = (s: string): Buffer => Buffer.from(s, 'latin1');

function refused(fn: () => unknown, code = 'M2F_BAD_REPLY'): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
    assert.equal(err.code, code);
    return true;
  });
}

describe('reply encoders against the verified captures', () => {
  it('when one target gets an HTTP response then the bytes equal resp-http-single-target', () => {
    const body = L('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    assert.deepEqual(encodeReply(SENDER, ['47'], body), loadCapture('resp-http-single-target'));
  });

  it('when the body comes in chunks then the bytes are the same single frame', () => {
    const chunks = [L('HTTP/1.1 200 OK\r\n'), L(''), L('Content-Length: 2\r\n\r\n'), L('ok')];
    assert.deepEqual(encodeReply(SENDER, ['47'], chunks), loadCapture('resp-http-single-target'));
  });

  it('when three targets share a body then the bytes equal resp-multi-target', () => {
    assert.deepEqual(encodeReply(SENDER, ['49', '50', '51'], L('BROADCAST\n')),
      loadCapture('resp-multi-target'));
  });

  it('when a WebSocket frame is sent then the bytes equal resp-ws-text-frame', () => {
    const frame = Buffer.concat([Buffer.from([0x81, 0x0b]), L('from server')]);
    assert.deepEqual(encodeReply(SENDER, ['327'], frame), loadCapture('resp-ws-text-frame'));
  });

  it('when a connection is closed then the bytes equal resp-close, trailing space included', () => {
    const out = encodeClose(SENDER, ['47']);
    assert.deepEqual(out, loadCapture('resp-close'));
    assert.equal(out[out.length - 1], 0x20);
    assert.deepEqual(encodeReply(SENDER, ['47'], []), out);
  });

  it('when ctl keep-alive, credits and cancel are sent then the bytes equal resp-ext-*', () => {
    assert.deepEqual(encodeCtl(SENDER, ['47'], { 'keep-alive': true }),
      loadCapture('resp-ext-keepalive'));
    assert.deepEqual(encodeCtl(SENDER, ['47'], { credits: 3000 }),
      loadCapture('resp-ext-credits'));
    assert.deepEqual(encodeCtl(SENDER, ['47'], { cancel: true }),
      loadCapture('resp-ext-cancel'));
  });

  it('when replyPrefix is followed by the body then it equals encodeReply', () => {
    const prefix = replyPrefix(SENDER, '47');
    assert.equal(prefix.toString('latin1'), `${SENDER} 2:47, `);
    const body = L('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    assert.deepEqual(Buffer.concat([prefix, body]), encodeReply(SENDER, ['47'], body));
  });
});

describe('reply encoders refuse frames Mongrel2 would drop', () => {
  it('when there are 128 ids then the frame is built; 129 ids are refused', () => {
    const ids = Array.from({ length: MAX_TARGETS + 1 }, (_, i) => String(i + 1));
    const ok = encodeReply(SENDER, ids.slice(0, MAX_TARGETS), L('x'));
    assert.equal(readReply(ok).list, ids.slice(0, MAX_TARGETS).join(' '));
    assert.equal(MAX_TARGETS, 128);
    refused(() => encodeReply(SENDER, ids, L('x')));
    refused(() => encodeClose(SENDER, ids));
    refused(() => encodeCtl(SENDER, ids, { cancel: true }));
  });

  it('when there are no ids then it is refused', () => {
    refused(() => encodeReply(SENDER, [], L('x')));
  });

  it('when the sender is empty or has _ . space or non-ASCII then it is refused', () => {
    for (const s of ['', 'bad_uuid', 'a.b', 'a b', ' a', 'caf\xe9', 'a\n']) {
      refused(() => encodeReply(s, ['1'], L('x')));
      refused(() => replyPrefix(s, '1'));
    }
  });

  it('when an id is not a canonical uint32 then it is refused', () => {
    for (const id of ['', '-1', '+1', '1 2', '01', '1.0', '4294967296', 'x', ' 1']) {
      refused(() => encodeReply(SENDER, [id], L('x')));
      refused(() => replyPrefix(SENDER, id));
    }
    assert.ok(encodeReply(SENDER, ['4294967295', '0'], L('x')).length > 0);
  });

  it('when ctl credits is not a non-negative integer then it is refused', () => {
    refused(() => encodeCtl(SENDER, ['1'], { credits: '3000' }));
    refused(() => encodeCtl(SENDER, ['1'], { credits: 1.5 }));
    refused(() => encodeCtl(SENDER, ['1'], { credits: -1 }));
    refused(() => encodeCtl(SENDER, ['1'], { other: 0.5 }), 'M2F_BAD_TNET_VALUE');
  });
});

describe('splitTargets', () => {
  it('when 300 ids are split then groups of 128, 128 and 44 keep the order', () => {
    const ids = Array.from({ length: 300 }, (_, i) => String(i));
    const groups = splitTargets(ids);
    assert.deepEqual(groups.map((g) => g.length), [128, 128, 44]);
    assert.deepEqual(groups.flat(), ids);
  });

  it('when a custom max is given then it is used; no ids gives no groups', () => {
    assert.deepEqual(splitTargets(['1', '2', '3'], 2), [['1', '2'], ['3']]);
    assert.deepEqual(splitTargets([]), []);
  });

  it('when max is not a positive integer then it throws RangeError', () => {
    assert.throws(() => splitTargets(['1'], 0), RangeError);
    assert.throws(() => splitTargets(['1'], 1.5), RangeError);
  });
});

/**
 * Checks a frame against the reply grammar the way Mongrel2 reads it and
 * returns its parts.
 */
function readReply(frame: Buffer): { sender: string; list: string; body: Buffer } {
  const sp = frame.indexOf(0x20);
  const colon = frame.indexOf(0x3a, sp);
  const lenText = frame.toString('latin1', sp + 1, colon);
  assert.match(lenText, /^[1-9][0-9]*$/);
  const len = Number(lenText);
  const list = frame.toString('latin1', colon + 1, colon + 1 + len);
  assert.equal(frame[colon + 1 + len], 0x2c, 'comma after the id list');
  assert.equal(frame[colon + 2 + len], 0x20, 'space after the comma');
  return {
    sender: frame.toString('latin1', 0, sp),
    list,
    body: frame.subarray(colon + 3 + len),
  };
}

const ids = fc.array(fc.integer({ min: 0, max: 0xffff_ffff }).map(String),
  { minLength: 1, maxLength: MAX_TARGETS });
const sender = fc.stringMatching(/^[A-Za-z0-9-]{1,40}$/);

describe('reply properties', () => {
  it('when any valid reply is encoded then it follows the grammar and carries the body', () => {
    const chunks = fc.array(fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from(a)),
      { maxLength: 4 });
    fc.assert(fc.property(sender, ids, chunks, (s, t, c) => {
      const r = readReply(encodeReply(s, t, c));
      assert.equal(r.sender, s);
      assert.equal(r.list, t.join(' '));
      assert.deepEqual(r.body, Buffer.concat(c));
    }), { numRuns: 300 });
  });

  it('when any ctl reply is encoded then it is X + ids and one ["ctl", dict]', () => {
    const args = fc.dictionary(fc.string({ maxLength: 12 }),
      fc.oneof(fc.maxSafeInteger(), fc.string({ maxLength: 12 }), fc.boolean()),
      { maxKeys: 4 });
    fc.assert(fc.property(sender, ids, args, (s, t, a) => {
      const r = readReply(encodeCtl(s, t, a));
      assert.equal(r.list, 'X ' + t.join(' '));
      const { value, next } = parseTnetstring(r.body);
      assert.equal(next, r.body.length);
      assert.ok(Array.isArray(value) && value.length === 2 && value[0] === 'ctl');
      const dict = value[1] as Record<string, unknown>;
      const expectedKeys = Object.keys(a).map((k) => Buffer.from(k).toString('latin1'));
      assert.deepEqual(Object.keys(dict).sort(), expectedKeys.sort());
    }), { numRuns: 300 });
  });
});
