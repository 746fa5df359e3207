import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { Pull } from 'zeromq';
import { createLogger } from '../../src/node/log.js';
import {
  createZmqLogSink, validateLogEndpoint, type ZmqLogSink,
} from '../../src/node/zmq-log-sink.js';

/** Binds a PULL collector on 127.0.0.1 (a free port unless given). */
async function collector(port = 0): Promise<{ pull: Pull; endpoint: string }> {
  const pull = new Pull({ receiveTimeout: 5000, linger: 0 });
  await pull.bind(`tcp://127.0.0.1:${port === 0 ? '*' : port}`);
  return { pull, endpoint: pull.lastEndpoint! };
}

async function receiveLines(pull: Pull, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const [msg] = await pull.receive(); // rejects with EAGAIN after receiveTimeout
    out.push(msg!.toString());
  }
  return out;
}

/** A TCP port nothing listens on once this resolves. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits (bounded) until `check` holds; returns whether it did. */
async function eventually(check: () => boolean, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  return check();
}

// Bounded so that a lost message fails the suite instead of hanging it.
describe('zmq log sink', { timeout: 30_000 }, () => {
  const cleanup: Array<() => unknown> = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  }, { timeout: 5_000 });

  it('when a collector is bound then it receives each line as one message, in order', async () => {
    const { pull, endpoint } = await collector();
    cleanup.push(() => pull.close());
    const sink = createZmqLogSink(endpoint);
    cleanup.push(() => sink.close());

    const log = createLogger({ sink: (line) => sink.write(line) });
    log.info({ n: 1 }, 'first');
    log.warn({ n: 2 }, 'second');
    const lines = await receiveLines(pull, 2);
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { msg: string }).msg), ['first', 'second']);
    assert.equal(sink.dropped, 0);
  });

  it('when no collector listens then 10,000 writes finish synchronously, drops are counted, and lines flow once it is back', async () => {
    // Learn a free port, then leave it empty. (A ZeroMQ probe would close
    // asynchronously and could swallow the first line.)
    const port = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;

    const sink: ZmqLogSink = createZmqLogSink(endpoint, { highWaterMark: 10, maxQueued: 100 });
    cleanup.push(() => sink.close());

    // write() returns nothing to await; the loop runs without yielding, so
    // the queue bound is already applied when it ends.
    let yielded = false;
    setImmediate(() => { yielded = true; });
    for (let i = 0; i < 10_000; i++) assert.equal(sink.write(`lost ${i}`), undefined);
    assert.equal(yielded, false);
    // 100 wait in the queue and the first is already in its send.
    assert.equal(sink.dropped, 10_000 - 100 - 1);

    // The 100 queued lines meet a full libzmq pipe: EAGAIN, dropped, no retry.
    assert.ok(await eventually(() => sink.dropped > 9_899), `dropped ${sink.dropped}`);
    const settled = sink.dropped;
    assert.ok(settled < 10_000, 'up to SNDHWM lines wait in libzmq for the collector');

    const back = await collector(port);
    back.pull.receiveTimeout = -1;
    const seen: string[] = [];
    const receiving = (async () => {
      // Ends when the collector is closed in after().
      for await (const [msg] of back.pull) seen.push(msg!.toString());
    })().catch(() => undefined);
    cleanup.push(() => receiving, () => back.pull.close()); // run in reverse

    // Until the PUSH reconnects (ZMQ_RECONNECT_IVL) a write may still meet
    // the full pipe and be dropped, so keep writing until one arrives.
    let written = 10_000;
    for (let i = 0; i < 250 && !seen.some((l) => l.startsWith('again')); i++) {
      sink.write(`again ${i}`);
      written++;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(seen.some((l) => l.startsWith('again')), 'a new line reached the collector');

    // Every line written is either received or counted as dropped.
    assert.ok(await eventually(() => seen.length === written - sink.dropped),
      `received ${seen.length}, written ${written}, dropped ${sink.dropped}`);
    assert.ok(seen.slice(0, 5).every((l) => l.startsWith('lost')), 'lines held in libzmq arrive first');
  });

  it('when closed then close is idempotent and later writes are dropped', async () => {
    const { pull, endpoint } = await collector();
    cleanup.push(() => pull.close());
    const sink = createZmqLogSink(endpoint);
    sink.write('before close');
    await sink.close();
    await sink.close();
    assert.deepEqual(await receiveLines(pull, 1), ['before close']);
    sink.write('after close');
    assert.equal(sink.dropped, 1);
  });

  it('accepts tcp://host:port and ipc://path endpoints', () => {
    for (const ok of ['tcp://127.0.0.1:5555', 'tcp://localhost:1', 'tcp://[::1]:65535',
      'ipc:///tmp/m2fleet-log.sock']) {
      assert.doesNotThrow(() => validateLogEndpoint(ok), ok);
    }
  });

  it('when the endpoint is not tcp://host:port or ipc://path then M2F_LOG_ENDPOINT names it', () => {
    for (const bad of ['', '127.0.0.1:5555', 'tcp://127.0.0.1', 'tcp://127.0.0.1:0',
      'tcp://127.0.0.1:70000', 'tcp://*:5555', 'udp://127.0.0.1:5555', 'ipc://',
      'inproc://log']) {
      assert.throws(() => createZmqLogSink(bad), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'M2F_LOG_ENDPOINT');
        assert.ok(err.message.includes(JSON.stringify(bad)), err.message);
        return true;
      }, bad);
    }
  });

  it('when an option is out of range then M2F_LOG_ENDPOINT names the option', () => {
    assert.throws(() => createZmqLogSink('tcp://127.0.0.1:5555', { maxQueued: 0 }), /maxQueued/);
    assert.throws(() => createZmqLogSink('tcp://127.0.0.1:5555', { lingerMs: 1000 }), /lingerMs/);
  });
});
