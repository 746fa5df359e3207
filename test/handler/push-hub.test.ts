import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Connection, type ConnectionOwner } from '../../src/handler/connection.js';
import type { Endpoint } from '../../src/handler/endpoint.js';
import { PUBLISH_MARKER, PushHub } from '../../src/handler/push-hub.js';
import { OPCODE, serverFrame } from '../../src/handler/websocket-frame.js';
import { createLogger } from '../../src/node/log.js';

const SENDER = 'm2t-json-0011223344556677';
const SPEC = 'tcp://127.0.0.1:1';
const log = createLogger({ level: 'error', sink: () => undefined });

/** `SENDER LEN:IDS, BODY` split into its ids and body. */
function split(frame: Buffer): { ids: string[]; body: Buffer } {
  const space = frame.indexOf(0x20);
  const colon = frame.indexOf(0x3a, space);
  const len = Number(frame.subarray(space + 1, colon).toString('latin1'));
  assert.equal(frame.subarray(0, space).toString('latin1'), SENDER);
  assert.equal(frame.subarray(colon + 1 + len, colon + 3 + len).toString('latin1'), ', ');
  return { ids: frame.subarray(colon + 1, colon + 1 + len).toString('latin1').split(' '), body: frame.subarray(colon + 3 + len) };
}

function setup(count: number) {
  const shared: Buffer[] = [];
  const own: Buffer[] = [];
  const endpoint = {
    spec: { sendSpec: SPEC, recvSpec: SPEC }, pub: { closed: false },
    replies: { enqueue: (frame: Buffer) => shared.push(frame) },
  } as unknown as Endpoint;
  const owner: ConnectionOwner = {
    log, sendFrame: (frame, done) => { own.push(frame); done?.(); }, release: () => undefined, requestDone: () => undefined,
  };
  const conns = new Map<string, Connection>();
  const relayed: Buffer[] = [];
  const hub = new PushHub({
    endpoints: [endpoint], log, connection: (key) => conns.get(key), relay: (f) => relayed.push(f),
  });
  const list: Connection[] = [];
  for (let i = 1; i <= count; i++) {
    const key = `0 ${SENDER} ${i}`;
    const conn = new Connection(owner, SENDER, String(i), key);
    conn.websocket = true;
    conn.openSocket({ sender: SENDER, connId: String(i), endpoint: SPEC, mongrel2Headers: {} }, '127.0.0.1', false);
    conns.set(key, conn);
    list.push(conn);
  }
  return { hub, conns: list, shared, own, relayed };
}

describe('push hub', () => {
  it('when 300 subscribers are published to then replies carry at most 128 ids and reach each once', () => {
    const { hub, conns, shared, relayed } = setup(300);
    for (const c of conns) assert.ok(hub.subscribe(c.socket, 'room'));
    const frame = serverFrame(OPCODE.text, Buffer.from('hello all'));
    assert.equal(hub.publish('room', frame, true), 300);
    assert.equal(shared.length, 3);
    const ids = shared.flatMap((f) => {
      const { ids, body } = split(f);
      assert.ok(ids.length <= 128);
      assert.ok(body.equals(frame));
      return ids;
    });
    assert.deepEqual(ids.sort(), conns.map((c) => c.connId).sort());
    assert.equal(relayed.length, 1);
    assert.ok(relayed[0]!.subarray(0, PUBLISH_MARKER.length).equals(PUBLISH_MARKER));
  });

  it('when a subscriber has writes of its own waiting then the frame queues behind them, not in the shared reply', () => {
    const { hub, conns, shared, own } = setup(3);
    for (const c of conns) hub.subscribe(c.socket, 'room');
    // Eight frames in the pacing window use up connection 2's allowance.
    for (let i = 0; i < 8; i++) assert.ok(conns[1]!.takeShared(1, Date.now()));
    const frame = serverFrame(OPCODE.binary, Buffer.from([1, 2, 3]));
    assert.equal(hub.publish('room', frame, false), 3);
    assert.deepEqual(shared.flatMap((f) => split(f).ids), ['1', '3']);
    // Connection 2 sends it on its own once its pacing window allows.
    return new Promise<void>((resolve) => setTimeout(() => {
      assert.deepEqual(own.map((f) => split(f).ids), [['2']]);
      assert.ok(split(own[0]!).body.equals(frame));
      resolve();
    }, 50));
  });

  it('when a client is gone or unsubscribed then it gets nothing', async () => {
    const { hub, conns, shared } = setup(3);
    for (const c of conns) hub.subscribe(c.socket, 'room');
    const gone = conns[0]!.socket!;
    conns[0]!.disconnect();
    assert.ok(hub.unsubscribe(conns[2]!.socket, 'room'));
    hub.publish('room', serverFrame(OPCODE.text, Buffer.from('x')), false);
    assert.deepEqual(shared.flatMap((f) => split(f).ids), ['2']);
    // The socket's 'close' (next turn) ends its subscriptions for good.
    await new Promise((r) => gone.once('close', r));
    assert.equal(hub.count('room'), 1);
  });

  it('when a publish is relayed then the sibling delivers it to its own subscribers only, without relaying again', () => {
    const a = setup(2);
    const b = setup(2);
    for (const c of b.conns) b.hub.subscribe(c.socket, 'news');
    const frame = serverFrame(OPCODE.text, Buffer.from('relayed'));
    assert.equal(a.hub.publish('news', frame, true), 0);
    b.hub.deliverRelayed(a.relayed[0]!);
    assert.equal(b.relayed.length, 0);
    assert.deepEqual(b.shared.flatMap((f) => split(f).ids).sort(), ['1', '2']);
    assert.ok(split(b.shared[0]!).body.equals(frame));
  });

  it('when targets are named then held ones go through their connection and others share a reply', () => {
    const { hub, shared } = setup(2);
    const frame = serverFrame(OPCODE.text, Buffer.from('direct'));
    const targets = ['1', '2', '77', '78'].map((connId) => ({ sender: SENDER, connId, endpoint: SPEC }));
    assert.equal(hub.broadcast([...targets, { sender: SENDER, connId: '9', endpoint: 'tcp://elsewhere:1' }], frame), 4);
    assert.deepEqual(shared.map((f) => split(f).ids), [['77', '78'], ['1', '2']]);
  });

  it('when something that is not a Mongrel2 WebSocket is subscribed then it is refused', () => {
    const { hub, conns } = setup(1);
    assert.equal(hub.subscribe({}, 'room'), false);
    conns[0]!.websocket = false;
    assert.equal(hub.subscribe(conns[0]!.socket, 'room'), false);
  });
});
