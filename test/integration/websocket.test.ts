// WebSockets through a real Mongrel2 and the m2fleet CLI with -p 2: ws
// clients against a node:http + ws echo app, a chat app using publish(),
// and a Hono app. Mongrel2 hands each client frame to one of the units
// round-robin; the unit that took the handshake holds the socket, and
// the others relay frames to it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { REPO_ROOT, startFleet, type FleetProcess } from '../helpers/fleet.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const FIXTURES = join(REPO_ROOT, 'test/fixtures');

interface Received {
  data: Buffer;
  binary: boolean;
}

/** A ws client that queues what it receives, with bounded waits. */
class Client {
  readonly ws: WebSocket;
  readonly messages: Received[] = [];
  readonly pongs: Buffer[] = [];
  closed: { code: number; reason: string } | null = null;
  error: Error | null = null;
  #waiters: (() => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, { autoPong: true });
    this.ws.on('message', (data: Buffer, binary) => {
      this.messages.push({ data: Buffer.from(data), binary });
      this.#wake();
    });
    this.ws.on('pong', (data) => {
      this.pongs.push(data);
      this.#wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
    this.ws.on('error', (err) => {
      this.error = err;
      this.#wake();
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    });
  }

  /** Resolves once `done()` is true; rejects after `ms`. */
  async until(done: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.messages.length} messages`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async take(count: number, ms = 10_000): Promise<Received[]> {
    await this.until(() => this.messages.length >= count, `${count} messages`, ms);
    return this.messages.splice(0, count);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

async function open(m2: Mongrel2Instance, path: string): Promise<Client> {
  const c = new Client(`ws://127.0.0.1:${m2.httpPort}${path}`);
  await c.opened();
  return c;
}

function closeAll(clients: Client[]): void {
  for (const c of clients) c.ws.terminate();
}

/** The `{ ws: true }` lines the fixture apps print for client `id`. */
function events(fleet: FleetProcess, id: string, event: string): Record<string, unknown>[] {
  return fleet.logs().filter((r) => r['ws'] === true && r['id'] === id && r['event'] === event);
}

async function waitForEvent(fleet: FleetProcess, id: string, event: string): Promise<Record<string, unknown>> {
  return fleet.waitForLog((r) => r['ws'] === true && r['id'] === id && r['event'] === event, 10_000);
}

describe('echo app (node:http + ws) with -p 2', () => {
  let m2: Mongrel2Instance;
  let fleet: FleetProcess;

  before(async () => {
    m2 = await startMongrel2();
    fleet = await startFleet([...zeromqArgs(m2, 'json'), '--module', join(FIXTURES, 'ws-echo-app.mjs'),
      '-p', '2', '--mercy', '2s'], { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await fleet?.stop();
    await m2?.stop();
  });

  test('with -p 2, a burst of 300 messages from each of 3 clients comes back in order', async () => {
    // The master reads Mongrel2 alone and routes every message of a
    // connection to the unit holding it, in Mongrel2's order.
    const clients = await Promise.all([1, 2, 3].map((i) => open(m2, `/ws?id=burst${i}`)));
    try {
      for (const c of clients) for (let i = 0; i < 300; i++) c.ws.send(`m${i}`);
      for (const c of clients) {
        await c.until(() => c.messages.length >= 300, 'all 300 echoes', 30_000);
        assert.deepEqual(c.messages.map((m) => m.data.toString()), Array.from({ length: 300 }, (_, i) => `m${i}`));
      }
    } finally {
      closeAll(clients);
    }
  });

  test('several clients get their text and binary messages back byte for byte, in order', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map((i) => open(m2, `/ws?id=echo${i}`)));
    try {
      const sent: Buffer[][] = clients.map(() => []);
      for (let round = 0; round < 20; round++) {
        clients.forEach((c, i) => {
          const binary = round % 2 === 1;
          const data = binary ? randomBytes(1 + ((round * 37 + i) % 300)) : Buffer.from(`c${i} r${round} ✓`);
          sent[i]!.push(data);
          c.ws.send(data, { binary });
        });
        await Promise.all(clients.map((c) => c.until(() => c.messages.length > round, `echo ${round}`)));
      }
      clients.forEach((c, i) => {
        assert.equal(c.messages.length, 20);
        c.messages.forEach((m, round) => {
          assert.equal(m.binary, round % 2 === 1, `client ${i} round ${round} type`);
          assert.deepEqual(m.data, sent[i]![round], `client ${i} round ${round}`);
        });
      });
    } finally {
      closeAll(clients);
    }
  });

  test('a fragmented message arrives whole and a 70000-byte one keeps every byte', async () => {
    const c = await open(m2, '/ws?id=frag');
    try {
      c.ws.send('frag-', { fin: false });
      c.ws.send('ment-', { fin: false });
      c.ws.send('ed', { fin: true });
      const [whole] = await c.take(1);
      assert.equal(whole!.binary, false);
      assert.equal(whole!.data.toString(), 'frag-ment-ed');

      const big = randomBytes(70_000);
      c.ws.send(big.subarray(0, 30_000), { binary: true, fin: false });
      c.ws.send(big.subarray(30_000), { binary: true, fin: true });
      const [back] = await c.take(1);
      assert.equal(back!.binary, true);
      assert.ok(back!.data.equals(big), 'binary fragments joined byte for byte');
    } finally {
      c.ws.terminate();
    }
  });

  test('pings both ways are answered with their payload', async () => {
    const c = await open(m2, '/ws?id=ping');
    try {
      c.ws.ping(Buffer.from('cli-ping'));
      await c.until(() => c.pongs.length > 0, 'pong from the app');
      assert.equal(c.pongs[0]!.toString(), 'cli-ping');
      c.ws.send('ping-me');
      const [msg] = await c.take(1);
      assert.equal(msg!.data.toString(), 'pong:srv-ping');
    } finally {
      c.ws.terminate();
    }
  });

  test('a close from the client is echoed and ends the app socket once', async () => {
    const c = await open(m2, '/ws?id=bye');
    c.ws.close(4000, 'bye now');
    await c.until(() => c.closed !== null, 'close');
    assert.deepEqual(c.closed, { code: 4000, reason: 'bye now' });
    const ev = await waitForEvent(fleet, 'bye', 'close');
    assert.equal(ev['code'], 4000);
    assert.equal(ev['reason'], 'bye now');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(events(fleet, 'bye', 'close').length, 1);
  });

  test('a close from the app reaches the client and ends the connection', async () => {
    const c = await open(m2, '/ws?id=srvclose');
    c.ws.send('close-me');
    await c.until(() => c.closed !== null, 'close');
    assert.deepEqual(c.closed, { code: 4001, reason: 'asked to' }, `client error: ${c.error?.message}`);
    const ev = await waitForEvent(fleet, 'srvclose', 'close');
    assert.equal(ev['code'], 4001);
  });
});

/** A raw TCP WebSocket client: handshake by hand, then any bytes. */
async function rawClient(m2: Mongrel2Instance, path: string): Promise<{ socket: Socket; ended: Promise<Buffer> }> {
  const socket = connect({ host: '127.0.0.1', port: m2.httpPort });
  const chunks: Buffer[] = [];
  const ended = new Promise<Buffer>((resolve) => {
    socket.on('data', (d) => chunks.push(d));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const deadline = Date.now() + 10_000;
  while (!Buffer.concat(chunks).includes('\r\n\r\n')) {
    if (Date.now() > deadline) throw new Error('no handshake answer');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 101 /);
  chunks.length = 0;
  return { socket, ended };
}

/** A masked client frame with any first byte. */
function maskedFrame(first: number, payload: Buffer): Buffer {
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([Buffer.from([first, 0x80 | payload.length]), key, masked]);
}

function withinMs<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

describe('clients that go away or misbehave, with -p 2', () => {
  let m2: Mongrel2Instance;
  let fleet: FleetProcess;

  before(async () => {
    m2 = await startMongrel2();
    fleet = await startFleet([...zeromqArgs(m2, 'json'), '--module', join(FIXTURES, 'ws-echo-app.mjs'),
      '-p', '2', '--mercy', '2s', '--max-message-size', '65536'], { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await fleet?.stop();
    await m2?.stop();
  });

  test('a message over --max-message-size gets close 1009; the app socket ends once', async () => {
    const c = await open(m2, '/ws?id=huge');
    await waitForEvent(fleet, 'huge', 'open');
    c.ws.send(randomBytes(100_000), { binary: true });
    await c.until(() => c.closed !== null, 'close');
    assert.equal(c.closed!.code, 1009);
    // The unit holding the socket closes it at once, or learns of the
    // close from the notice its next keep-alive brings back (about 5 s).
    await fleet.waitForLog((r) => r['ws'] === true && r['id'] === 'huge' && r['event'] === 'close', 12_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(events(fleet, 'huge', 'close').length, 1);
  });

  test('a client killed mid-stream is noticed: its app socket closes once (1006)', async () => {
    const c = await open(m2, '/ws?id=killed');
    await waitForEvent(fleet, 'killed', 'open');
    for (let i = 0; i < 50; i++) c.ws.send(randomBytes(2000), { binary: true });
    c.ws.terminate();
    const ev = await waitForEvent(fleet, 'killed', 'close');
    assert.equal(ev['code'], 1006);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(events(fleet, 'killed', 'close').length, 1);
  });

  test('an unmasked client frame makes Mongrel2 close that client only; the app socket closes once', async () => {
    const other = await open(m2, '/ws?id=bystander1');
    const bad = await rawClient(m2, '/ws?id=unmasked');
    await waitForEvent(fleet, 'unmasked', 'open');
    bad.socket.write(Buffer.from([0x81, 0x05, ...Buffer.from('hello')]));
    await withinMs(bad.ended, 10_000, 'Mongrel2 closes the bad client');
    const ev = await waitForEvent(fleet, 'unmasked', 'close');
    assert.equal(ev['code'], 1006);
    other.ws.send('still here');
    const [msg] = await other.take(1);
    assert.equal(msg!.data.toString(), 'still here');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(events(fleet, 'unmasked', 'close').length, 1);
    other.ws.terminate();
  });

  test('a frame with a reserved bit set is refused with close 1002; other sockets go on', async () => {
    const other = await open(m2, '/ws?id=bystander2');
    const bad = await rawClient(m2, '/ws?id=rsv');
    await waitForEvent(fleet, 'rsv', 'open');
    bad.socket.write(maskedFrame(0x80 | 0x40 | 0x1, Buffer.from('deflated?')));
    const got = await withinMs(bad.ended, 10_000, 'the connection ends');
    // The app's ws refuses the frame: a close frame with 1002 first.
    assert.equal(got[0], 0x88, `close frame, got ${got.subarray(0, 8).toString('hex')}`);
    assert.equal(got.readUInt16BE(2), 1002);
    // The app's ws reports the error, then the close (1006: the client
    // never answered with a close frame of its own), once.
    const err = await waitForEvent(fleet, 'rsv', 'error');
    assert.match(String(err['message']), /RSV1/);
    await waitForEvent(fleet, 'rsv', 'close');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(events(fleet, 'rsv', 'close').length, 1);
    other.ws.send('fine');
    const [msg] = await other.take(1);
    assert.equal(msg!.data.toString(), 'fine');
    other.ws.terminate();
  });

  test('an upgrade to a path the app refuses gets its answer and the connection ends', async () => {
    const socket = connect({ host: '127.0.0.1', port: m2.httpPort });
    const chunks: Buffer[] = [];
    const ended = new Promise<string>((resolve) => {
      socket.on('data', (d) => chunks.push(d));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    });
    socket.write('GET /nows HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const text = await withinMs(ended, 10_000, 'refused upgrade');
    assert.match(text, /^HTTP\/1\.1 404 /);
  });
});

describe('chat app: publish() reaches every client of every unit, with -p 2', () => {
  let m2: Mongrel2Instance;
  let fleet: FleetProcess;

  before(async () => {
    m2 = await startMongrel2();
    fleet = await startFleet([...zeromqArgs(m2, 'json', 'tnet'), '--module', join(FIXTURES, 'ws-chat-app.mjs'),
      '-p', '2', '--mercy', '2s'], { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await fleet?.stop();
    await m2?.stop();
  });

  test('each line of each client reaches all 40 clients, on both handlers, text and binary', async () => {
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const c = await open(m2, `/${i % 2 === 0 ? 'json' : 'tnet'}/chat?id=u${i}`);
        const [joined] = await c.take(1);
        assert.equal(joined!.data.toString(), `joined u${i}`);
        clients.push(c);
      }
      const speakers = [0, 7, 20, 33];
      for (const s of speakers) clients[s]!.ws.send(`hello from ${s}`);
      const blob = randomBytes(3000);
      clients[5]!.ws.send(blob, { binary: true });
      for (const c of clients) {
        const got = await c.take(speakers.length + 1);
        const texts = got.filter((m) => !m.binary).map((m) => m.data.toString()).sort();
        assert.deepEqual(texts, speakers.map((s) => `u${s}: hello from ${s}`).sort());
        const binaries = got.filter((m) => m.binary);
        assert.equal(binaries.length, 1);
        assert.ok(binaries[0]!.data.equals(blob));
      }
      const units = new Set(fleet.logs().filter((r) => r['msg'] === 'unit ready').map((r) => r['unit']));
      assert.equal(units.size, 2);
    } finally {
      closeAll(clients);
    }
  });

  test('a burst of 60 lines reaches all 20 clients whole (pacing keeps Mongrel2 queues under 16)', async () => {
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const c = await open(m2, `/json/chat?id=b${i}`);
        await c.take(1);
        clients.push(c);
      }
      for (let n = 0; n < 60; n++) clients[n % 3]!.ws.send(`line ${n} ${'x'.repeat(200)}`);
      const expected = Array.from({ length: 60 }, (_, n) => `b${n % 3}: line ${n} ${'x'.repeat(200)}`).sort();
      for (const c of clients) {
        const got = await c.take(60, 20_000);
        assert.deepEqual(got.map((m) => m.data.toString()).sort(), expected);
        assert.equal(c.closed, null);
      }
    } finally {
      closeAll(clients);
    }
  });

  test('a client that leaves stops getting lines and the others still get them', async () => {
    const a = await open(m2, '/json/chat?id=stay');
    const b = await open(m2, '/json/chat?id=leave');
    await a.take(1);
    await b.take(1);
    b.ws.terminate();
    await waitForEvent(fleet, 'leave', 'close');
    a.ws.send('after');
    const [msg] = await a.take(1);
    assert.equal(msg!.data.toString(), 'stay: after');
    a.ws.terminate();
  });
});

describe('Hono app through @hono/node-server WebSocket support, one unit', () => {
  let m2: Mongrel2Instance;
  let fleet: FleetProcess;

  before(async () => {
    // A short idle killer: limits.min_ping 7 s, checked every second.
    m2 = await startMongrel2({ minPing: 7, tickTimer: 1 });
    fleet = await startFleet([...zeromqArgs(m2, 'json'), '--module', join(FIXTURES, 'ws-hono-app.mjs'),
      '--mercy', '2s'], { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await fleet?.stop();
    await m2?.stop();
  });

  test('plain requests and a WebSocket route both work', async () => {
    const res = await fetch(m2.url('/'), { signal: AbortSignal.timeout(5000) });
    assert.equal(await res.text(), 'hono');
    const c = await open(m2, '/ws');
    c.ws.send('hi');
    const [msg] = await c.take(1);
    assert.equal(msg!.data.toString(), 'hono: hi');
    c.ws.terminate();
  });

  test('with one unit, a burst of 300 messages comes back in order', async () => {
    const c = await open(m2, '/ws');
    for (let i = 0; i < 300; i++) c.ws.send(String(i));
    const got = await c.take(300, 20_000);
    assert.deepEqual(got.map((m) => m.data.toString()), Array.from({ length: 300 }, (_, i) => `hono: ${i}`));
    c.ws.terminate();
  });

  test('a silent WebSocket outlives Mongrel2 idle timer (keep-alives) while an idle HTTP connection does not', async () => {
    const c = await open(m2, '/ws');
    const idle = connect({ host: '127.0.0.1', port: m2.httpPort });
    const idleClosed = new Promise<number>((resolve) => idle.on('close', () => resolve(Date.now())));
    idle.on('error', () => undefined);
    idle.resume();
    idle.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const started = Date.now();
    const killedAt = await withinMs(idleClosed, 15_000, 'Mongrel2 kills the idle HTTP connection');
    assert.ok(killedAt - started >= 5000, `idle HTTP connection lasted ${killedAt - started} ms`);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(c.closed, null, 'the WebSocket is still open');
    c.ws.send('still alive');
    const [msg] = await c.take(1);
    assert.equal(msg!.data.toString(), 'hono: still alive');
    c.ws.terminate();
  });
});
