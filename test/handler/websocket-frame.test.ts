import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import * as wsModule from 'ws';
import {
  clientFrame, closeFrame, frameHeader, OPCODE, parseFlags, serverFrame,
} from '../../src/handler/websocket-frame.js';

type Parsed = { kind: string; data: Buffer; binary?: boolean; code?: number };

/** Feeds bytes to ws's own frame parser (server or client side) and collects what it emits. */
function parseWith(isServer: boolean, chunks: Buffer[]): Promise<Parsed[]> {
  // ws exports its frame parser, though its type declarations do not say so.
  const Receiver = (wsModule as unknown as { Receiver: new (o: object) => Writable }).Receiver;
  const receiver = new Receiver({ isServer, binaryType: 'nodebuffer', maxPayload: 0 });
  const out: Parsed[] = [];
  receiver.on('message', (data: Buffer, binary: boolean) => out.push({ kind: 'message', data, binary }));
  receiver.on('ping', (data: Buffer) => out.push({ kind: 'ping', data }));
  receiver.on('pong', (data: Buffer) => out.push({ kind: 'pong', data }));
  receiver.on('conclude', (code: number, reason: Buffer) => out.push({ kind: 'close', data: reason, code }));
  return new Promise((resolve, reject) => {
    receiver.on('error', reject);
    for (const c of chunks) receiver.write(c);
    setImmediate(() => resolve(out));
  });
}

describe('websocket frames', () => {
  it('when FLAGS is what Mongrel2 writes then the first byte comes back', () => {
    assert.equal(parseFlags('0x81'), 0x81);
    assert.equal(parseFlags('0x8A'), 0x8a);
    assert.equal(parseFlags('0xc1'), 0xc1);
  });

  it('when FLAGS is malformed or lacks FIN then it is refused', () => {
    for (const bad of [undefined, '', '81', '0x', '0x181', '0xZZ', ' 0x81', '0x01', '0x7f']) {
      assert.equal(parseFlags(bad), undefined, String(bad));
    }
  });

  it('when the length crosses 125 and 65535 then the header switches to 16 and 64 bits', () => {
    assert.deepEqual([...frameHeader(0x82, 125, false)], [0x82, 125]);
    assert.deepEqual([...frameHeader(0x82, 126, false)], [0x82, 126, 0, 126]);
    assert.deepEqual([...frameHeader(0x82, 65535, false)], [0x82, 126, 0xff, 0xff]);
    assert.deepEqual([...frameHeader(0x82, 65536, false)], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert.deepEqual([...frameHeader(0x81, 3, true)], [0x81, 0x83, 0, 0, 0, 0]);
    assert.throws(() => frameHeader(0x81, -1, false), RangeError);
  });

  it('when a client frame is re-framed then a ws server reads the same payload at every size', async () => {
    for (const size of [0, 1, 125, 126, 65535, 65536, 200_000]) {
      const payload = randomBytes(size);
      const got = await parseWith(true, clientFrame(0x82, payload));
      assert.equal(got.length, 1, `size ${size}`);
      assert.equal(got[0]!.binary, true);
      assert.ok(got[0]!.data.equals(payload), `size ${size}`);
    }
    const text = await parseWith(true, clientFrame(0x81, Buffer.from('héllo')));
    assert.deepEqual(text.map((m) => [m.kind, m.binary, m.data.toString()]), [['message', false, 'héllo']]);
    const ping = await parseWith(true, clientFrame(0x89, Buffer.from('p')));
    assert.deepEqual(ping.map((m) => [m.kind, m.data.toString()]), [['ping', 'p']]);
  });

  it('when a server frame is built then a ws client reads it (text, binary, close)', async () => {
    const big = randomBytes(70_000);
    const got = await parseWith(false, [
      serverFrame(OPCODE.text, Buffer.from('from server')),
      serverFrame(OPCODE.binary, big),
      closeFrame(1001, 'server restarting'),
    ]);
    assert.deepEqual(got.map((m) => m.kind), ['message', 'message', 'close']);
    assert.equal(got[0]!.data.toString(), 'from server');
    assert.ok(got[1]!.data.equals(big));
    assert.equal(got[2]!.code, 1001);
    assert.equal(got[2]!.data.toString(), 'server restarting');
  });

  it('when the capture text frame is encoded then the bytes match what Mongrel2 delivered', () => {
    // test/fixtures/captures/resp-ws-text-frame.txt: \x81\x0bfrom server
    assert.equal(serverFrame(OPCODE.text, Buffer.from('from server')).toString('hex'), '810b66726f6d20736572766572');
  });

  it('when a close reason is too long then it is cut at a character boundary within 125 bytes', async () => {
    const frame = closeFrame(1002, 'é'.repeat(100));
    assert.ok(frame.length - 2 <= 125);
    const [close] = await parseWith(false, [frame]);
    assert.equal(close!.code, 1002);
    assert.equal(close!.data.toString(), 'é'.repeat(61));
  });
});
