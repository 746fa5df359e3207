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
    this.ws.on('error', () => this.#wake());
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
        // One message at a time per client: see the ordering test below.
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
    assert.deepEqual(c.closed, { code: 4001, reason: 'asked to' });
    const ev = await waitForEvent(fleet, 'srvclose', 'close');
    assert.equal(ev['code'], 4001);
  });
});
