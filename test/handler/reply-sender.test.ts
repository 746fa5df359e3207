import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { ReplySender, type FrameSocket } from '../../src/handler/reply-sender.js';
import { createLogger } from '../../src/node/log.js';

/** One pending send: the test decides when and how it ends. */
interface Pending {
  frame: Buffer;
  resolve(): void;
  reject(err: Error): void;
}

/** A socket whose sends complete only when the test says so. */
class ManualSocket implements FrameSocket {
  readonly pending: Pending[] = [];
  readonly attempts: string[] = [];
  inFlight = 0;
  maxInFlight = 0;

  send(frame: Buffer): Promise<void> {
    this.attempts.push(frame.toString());
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ frame, resolve, reject });
    }).finally(() => {
      this.inFlight--;
    });
  }

  /** Waits (bounded) for the next send and completes it. */
  async next(outcome: 'ok' | Error = 'ok'): Promise<string> {
    for (let i = 0; i < 500 && this.pending.length === 0; i++) await sleep(2);
    const p = this.pending.shift();
    assert.ok(p, 'no send was attempted');
    if (outcome === 'ok') p.resolve();
    else p.reject(outcome);
    await nextTurn();
    return p.frame.toString();
  }
}

function eagain(): Error {
  return Object.assign(new Error('Resource temporarily unavailable'), { code: 'EAGAIN' });
}

function quietLog(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: createLogger({ sink: (l) => lines.push(l) }) };
}

describe('ReplySender ordering', () => {
  it('when frames are queued then they are sent in order, one at a time', async () => {
    const socket = new ManualSocket();
    const sender = new ReplySender(socket, quietLog().log);
    const done: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      sender.enqueue(Buffer.from(name), (err) => done.push(`${name}:${String(err)}`));
    }
    assert.equal(socket.pending.length, 1, 'more than one send started');
    assert.equal(await socket.next(), 'a');
    assert.equal(await socket.next(), 'b');
    assert.equal(await socket.next(), 'c');
    await sender.drained();
    assert.deepEqual(done, ['a:null', 'b:null', 'c:null']);
    assert.equal(socket.maxInFlight, 1);
    assert.equal(sender.sent, 3);
    assert.equal(sender.queued, 0);
  });
});

describe('ReplySender back-pressure', () => {
  it('when the socket says EAGAIN then the same frame is retried until it goes, and later frames wait', async () => {
    const socket = new ManualSocket();
    const { log, lines } = quietLog();
    const sender = new ReplySender(socket, log);
    const done: (Error | null | undefined)[] = [];
    sender.enqueue(Buffer.from('first'), (err) => done.push(err));
    sender.enqueue(Buffer.from('second'), (err) => done.push(err));
    await socket.next(eagain());
    await socket.next(eagain());
    await socket.next(eagain());
    assert.deepEqual(done, [], 'a callback ran before its frame was sent');
    assert.equal(await socket.next(), 'first');
    assert.equal(await socket.next(), 'second');
    await sender.drained();
    assert.deepEqual(socket.attempts, ['first', 'first', 'first', 'first', 'second']);
    assert.deepEqual(done, [null, null]);
    assert.equal(socket.maxInFlight, 1);
    const warnings = lines.map((l) => JSON.parse(l) as { level: number })
      .filter((r) => r.level === 40);
    assert.equal(warnings.length, 1, 'expected one warning for the slow reader');
  });

  it('when the socket fails with another error then only that frame\'s callback gets it', async () => {
    const socket = new ManualSocket();
    const sender = new ReplySender(socket, quietLog().log);
    const done: string[] = [];
    sender.enqueue(Buffer.from('a'), (err) => done.push(`a:${err?.message ?? 'ok'}`));
    sender.enqueue(Buffer.from('b'), (err) => done.push(`b:${err?.message ?? 'ok'}`));
    sender.enqueue(Buffer.from('c'), (err) => done.push(`c:${err?.message ?? 'ok'}`));
    await socket.next();
    await socket.next(Object.assign(new Error('socket closed'), { code: 'EBADF' }));
    await socket.next();
    await sender.drained();
    assert.deepEqual(done, ['a:ok', 'b:socket closed', 'c:ok']);
    assert.deepEqual(socket.attempts, ['a', 'b', 'c'], 'a failed frame was retried');
  });
});

describe('ReplySender drained and close', () => {
  it('when nothing is queued then drained() resolves at once', async () => {
    const sender = new ReplySender(new ManualSocket(), quietLog().log);
    await sender.drained();
    assert.equal(sender.queued, 0);
  });

  it('when frames are queued then drained() resolves only after the last is sent', async () => {
    const socket = new ManualSocket();
    const sender = new ReplySender(socket, quietLog().log);
    sender.enqueue(Buffer.from('a'));
    sender.enqueue(Buffer.from('b'));
    let drained = false;
    const waiting = sender.drained().then(() => { drained = true; });
    await socket.next();
    assert.equal(drained, false);
    await socket.next();
    await waiting;
    assert.equal(drained, true);
  });

  it('when the queue is closed then queued callbacks fail and later frames are refused', async () => {
    const socket = new ManualSocket();
    const sender = new ReplySender(socket, quietLog().log);
    const done: string[] = [];
    sender.enqueue(Buffer.from('a'), (err) => done.push(`a:${err?.message ?? 'ok'}`));
    sender.enqueue(Buffer.from('b'), (err) => done.push(`b:${err?.message ?? 'ok'}`));
    sender.enqueue(Buffer.from('c'), (err) => done.push(`c:${err?.message ?? 'ok'}`));
    await socket.next();
    const drained = sender.drained();
    sender.close();
    await drained;
    sender.enqueue(Buffer.from('d'), (err) => done.push(`d:${err?.message ?? 'ok'}`));
    // The send of b was in flight at close: finishing it must not call back twice.
    socket.pending.shift()?.resolve();
    await nextTurn();
    await nextTurn();
    assert.deepEqual(done, [
      'a:ok',
      'b:reply queue closed',
      'c:reply queue closed',
      'd:reply queue closed',
    ]);
    assert.deepEqual(socket.attempts, ['a', 'b']);
    assert.equal(sender.queued, 0);
  });

  it('when the queue is closed during EAGAIN retries then retrying stops', async () => {
    const socket = new ManualSocket();
    const sender = new ReplySender(socket, quietLog().log);
    const done: (string | undefined)[] = [];
    sender.enqueue(Buffer.from('a'), (err) => done.push(err?.message));
    await socket.next(eagain());
    sender.close();
    // Bounded: give any pending retry timer a chance to fire.
    for (let i = 0; i < 10; i++) await sleep(5);
    for (const p of socket.pending.splice(0)) p.reject(eagain());
    await nextTurn();
    assert.deepEqual(done, ['reply queue closed']);
    assert.ok(socket.attempts.length <= 2, `retried ${socket.attempts.length} times after close`);
  });
});
