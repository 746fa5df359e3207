import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Connection, type ConnectionOwner } from '../../src/handler/connection.js';
import { DOWNLOAD_CREDITS } from '../../src/handler/flow-gate.js';
import type { Mongrel2Socket } from '../../src/handler/mongrel2-socket.js';
import { createLogger } from '../../src/node/log.js';

const SENDER = '5f1c0a42-test-4d2b-9a77-000000000001';
const CONN = '47';

interface Frame {
  sender: string;
  ids: string;
  body: Buffer;
}

/** Splits `SENDER LEN:IDS, BODY` and checks LEN against the ids. */
function parseFrame(frame: Buffer): Frame {
  const space = frame.indexOf(0x20);
  const colon = frame.indexOf(0x3a, space);
  const len = Number(frame.subarray(space + 1, colon).toString('latin1'));
  assert.ok(Number.isSafeInteger(len) && len > 0, `bad LEN in ${frame.toString('latin1', 0, 60)}`);
  const ids = frame.subarray(colon + 1, colon + 1 + len).toString('latin1');
  assert.equal(frame.subarray(colon + 1 + len, colon + 3 + len).toString('latin1'), ', ');
  return {
    sender: frame.subarray(0, space).toString('latin1'),
    ids,
    body: frame.subarray(colon + 3 + len),
  };
}

/** An owner that records frames and completes each send at once. */
class FakeOwner implements ConnectionOwner {
  readonly log = createLogger({ level: 'error', sink: () => undefined });
  readonly frames: Buffer[] = [];
  released = 0;
  requestsDone = 0;

  sendFrame(frame: Buffer, done?: (err?: Error | null) => void): void {
    this.frames.push(frame);
    done?.();
  }
  release(): void {
    this.released++;
  }
  requestDone(count: number): void {
    this.requestsDone += count;
  }
  bodies(): string[] {
    return this.frames.map((f) => parseFrame(f).body.toString('latin1'));
  }
}

function setup(): { owner: FakeOwner; conn: Connection } {
  const owner = new FakeOwner();
  return { owner, conn: new Connection(owner, SENDER, CONN, `${SENDER}:${CONN}`) };
}

function open(conn: Connection): Mongrel2Socket {
  const info = { sender: SENDER, connId: CONN, endpoint: 'inproc://t', mongrel2Headers: {} };
  return conn.openSocket(info, '127.0.0.1', false);
}

/** Counts how many times a done callback ran and with what. */
type Done = (err?: Error | null) => void;

function doneCounter(): { done: Done; calls: (Error | null | undefined)[] } {
  const calls: (Error | null | undefined)[] = [];
  return { calls, done: (err) => { calls.push(err); } };
}

const B = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('Connection writes', () => {
  it('when the app writes then each write becomes one SENDER LEN:ID, BODY frame', () => {
    const { owner, conn } = setup();
    const first = doneCounter();
    conn.write([B('HTTP/1.1 200 OK\r\n'), B('\r\n')], first.done);
    conn.write([B('hello')], () => undefined);
    assert.equal(owner.frames.length, 2);
    assert.equal(owner.frames[0]!.toString('latin1'),
      `${SENDER} 2:47, HTTP/1.1 200 OK\r\n\r\n`);
    assert.equal(owner.frames[1]!.toString('latin1'), `${SENDER} 2:47, hello`);
    assert.deepEqual(first.calls, [undefined]);
  });

  it('when a write carries zero bytes then no frame is sent and done still runs', () => {
    const { owner, conn } = setup();
    const a = doneCounter();
    conn.write([Buffer.alloc(0)], a.done);
    conn.write([], a.done);
    conn.write([Buffer.alloc(0), Buffer.alloc(0)], a.done);
    assert.equal(owner.frames.length, 0);
    assert.equal(a.calls.length, 3);
  });
});

describe('Connection end', () => {
  it('when end() is called then exactly one close frame with an empty body goes out and the connection is released', () => {
    const { owner, conn } = setup();
    conn.write([B('bye')], () => undefined);
    const ended = doneCounter();
    conn.end(ended.done);
    conn.end(ended.done);
    conn.write([B('late')], () => undefined);
    assert.equal(owner.frames.length, 2);
    assert.equal(owner.frames[1]!.toString('latin1'), `${SENDER} 2:47, `);
    assert.equal(parseFrame(owner.frames[1]!).body.length, 0);
    assert.equal(owner.released, 1);
    assert.equal(conn.closed, true);
    assert.equal(ended.calls.length, 2);
  });
});

describe('Connection disconnect', () => {
  it('when the client disconnects then queued frames are dropped and nothing more is sent', async () => {
    const { owner, conn } = setup();
    const socket = open(conn);
    conn.flow.useCredits(DOWNLOAD_CREDITS);
    conn.write([Buffer.alloc(DOWNLOAD_CREDITS, 0x61)], () => undefined);
    const queued = doneCounter();
    conn.write([B('waits for credit')], queued.done);
    assert.equal(owner.frames.length, 1);

    conn.disconnect();
    await nextTurn();
    assert.equal(socket.destroyed, true, 'the request stream was not aborted');
    assert.deepEqual(queued.calls, [undefined], 'the dropped write was not completed');
    assert.equal(owner.released, 1);

    conn.credit(DOWNLOAD_CREDITS);
    conn.write([B('after')], () => undefined);
    conn.end(() => undefined);
    await nextTurn();
    assert.equal(owner.frames.length, 1, 'a frame went out after the disconnect');
    assert.equal(conn.idle, true);
  });
});

describe('Connection under download credits', () => {
  it('when the app writes 250 KB then frames never pass the credit and credit() resumes them', () => {
    const { owner, conn } = setup();
    conn.flow.useCredits(DOWNLOAD_CREDITS);
    // Odd chunk sizes make the frame boundaries fall inside chunks.
    const data = Buffer.alloc(250 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    const chunks = [data.subarray(0, 777), data.subarray(777, 150_001), data.subarray(150_001)];
    const written = doneCounter();
    conn.write(chunks, written.done);

    assert.equal(owner.frames.length, 1);
    assert.equal(parseFrame(owner.frames[0]!).body.length, DOWNLOAD_CREDITS);
    assert.equal(written.calls.length, 0, 'done ran before the write was sent');

    conn.credit(1000);
    assert.equal(owner.frames.length, 2);
    assert.equal(parseFrame(owner.frames[1]!).body.length, 1000);

    // Bounded: each credit round frees at most DOWNLOAD_CREDITS bytes.
    for (let round = 0; round < 10 && written.calls.length === 0; round++) {
      conn.credit(DOWNLOAD_CREDITS);
    }
    const bodies = owner.frames.map((f) => parseFrame(f));
    for (const f of bodies) {
      assert.ok(f.body.length > 0 && f.body.length <= DOWNLOAD_CREDITS);
      assert.equal(f.sender, SENDER);
      assert.equal(f.ids, CONN);
    }
    assert.deepEqual(Buffer.concat(bodies.map((f) => f.body)), data);
    assert.deepEqual(written.calls, [undefined]);
    assert.ok(conn.flow.unacknowledged <= DOWNLOAD_CREDITS);
  });

  it('when no credit is left then a write waits and a close frame waits behind it', () => {
    const { owner, conn } = setup();
    conn.flow.useCredits(DOWNLOAD_CREDITS);
    conn.write([Buffer.alloc(DOWNLOAD_CREDITS)], () => undefined);
    conn.write([B('tail')], () => undefined);
    conn.end(() => undefined);
    assert.equal(owner.frames.length, 1);
    assert.equal(owner.released, 0);
    conn.credit(4);
    assert.deepEqual(owner.bodies().slice(1), ['tail', '']);
    assert.equal(owner.released, 1);
  });
});

describe('Connection without credits', () => {
  it('when more than 8 writes come at once then all still go out, in order', async () => {
    const { owner, conn } = setup();
    for (let i = 0; i < 12; i++) conn.write([B(`w${i}`)], () => undefined);
    // Bounded wait for the paced frames (the gate's timer sends them).
    for (let i = 0; i < 200 && owner.frames.length < 12; i++) await sleep(5);
    assert.deepEqual(owner.bodies(), Array.from({ length: 12 }, (_, i) => `w${i}`));
  });
});

describe('Connection stream destroyed', () => {
  it('when the app destroys the stream then a close frame is sent and requests are counted done', async () => {
    const { owner, conn } = setup();
    const socket = open(conn);
    conn.pending = 2;
    socket.destroy();
    await nextTurn();
    assert.deepEqual(owner.bodies(), ['']);
    assert.equal(owner.requestsDone, 2);
    assert.equal(owner.released, 1);
    assert.equal(conn.socket, null);
  });

  it('when an idle connection expires then the stream ends quietly with no close frame', async () => {
    const { owner, conn } = setup();
    const socket = open(conn);
    conn.expire();
    await nextTurn();
    assert.equal(socket.destroyed, true);
    assert.equal(owner.frames.length, 0);
    assert.equal(conn.closed, false);
  });
});
