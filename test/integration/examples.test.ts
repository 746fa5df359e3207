// The four example apps end to end: a real Mongrel2, one m2fleet process per
// example, and one keep-alive client connection per example. The examples
// route on '/', so each fleet serves Mongrel2's root route (the JSON
// handler); the tnetstring handler sits under /tnet/, which no example
// answers. Every route runs against Mongrel2 with download flow control on
// (m2fleet's recommended setting); GET / and the download run with it off.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFleet, REPO_ROOT, type FleetProcess } from '../helpers/fleet.ts';
import { startMongrel2, type Mongrel2Instance } from '../helpers/mongrel2.ts';

const EXAMPLES = ['express', 'koa', 'fastify', 'hono'] as const;
const MIB = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 60_000;

/** One answer, with the body kept whole or only hashed. */
interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  size: number;
  sha256: string;
  /** Node's flag: the agent sent this request on a socket it had kept. */
  reusedSocket: boolean;
  socket: Socket;
}

/** What one request sends; `keep` false hashes the body without keeping it. */
interface Ask {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  keep?: boolean;
}

/**
 * Sends one request through `agent` to 127.0.0.1:port and reads the whole
 * answer; rejects on a socket error or after REQUEST_TIMEOUT_MS.
 */
function send(agent: Agent, port: number, ask: Ask): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...ask.headers };
    if (ask.body) headers['content-length'] = String(ask.body.length);
    const req = request({
      host: '127.0.0.1', port, agent, method: ask.method ?? 'GET',
      path: ask.path, headers, timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      const hash = createHash('sha256');
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        size += chunk.length;
        if (ask.keep ?? true) parts.push(chunk);
      });
      res.once('error', reject);
      res.once('end', () => resolve({
        status: res.statusCode ?? 0, headers: res.headers,
        body: Buffer.concat(parts), size, sha256: hash.digest('hex'),
        reusedSocket: req.reusedSocket, socket: req.socket as Socket,
      }));
    });
    req.once('timeout', () => req.destroy(new Error(`${ask.path} timed out`)));
    req.once('error', reject);
    req.end(ask.body);
  });
}

/** sha256 of `size` bytes where byte i is i % 251, as every example streams. */
function patternSha256(size: number): string {
  const chunk = Buffer.from(Array.from({ length: 251 * 256 }, (_, i) => i % 251));
  const hash = createHash('sha256');
  for (let sent = 0; sent < size; sent += chunk.length) {
    hash.update(chunk.subarray(0, Math.min(chunk.length, size - sent)));
  }
  return hash.digest('hex');
}

/** A body that is neither the stream pattern nor compressible text. */
function uploadBody(size: number): Buffer {
  const body = Buffer.alloc(size);
  let x = 0x2545f491;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    body[i] = x & 0xff;
  }
  return body;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

for (const flowControl of [1, 0] as const) {
  describe(`through Mongrel2 with download.flow_control=${flowControl}`, () => {
    let m2: Mongrel2Instance;

    before(async () => {
      m2 = await startMongrel2({ flowControl });
    });

    after(async () => {
      await m2?.stop();
    });

    for (const name of EXAMPLES) {
      describeExample(() => m2, name, flowControl === 1);
    }
  });
}

/**
 * The suite of one example: a fleet serving it, one keep-alive connection,
 * and every route. With `full` false only GET / and the download run.
 */
function describeExample(
  getMongrel2: () => Mongrel2Instance, name: string, full: boolean,
): void {
  describe(`examples/${name}-app.mjs`, () => {
    let m2: Mongrel2Instance;
    let fleet: FleetProcess;
    // One socket at most, kept between requests: every request after the
    // first must travel on the connection the first one opened.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let first: Socket | undefined;
    const ask = (a: Ask): Promise<Answer> => send(agent, m2.httpPort, a);

    function assertSameConnection(res: Answer): void {
      assert.ok(first, 'GET / ran first and opened the connection');
      assert.equal(res.reusedSocket, true);
      assert.equal(res.socket, first);
    }

    before(async () => {
      m2 = getMongrel2();
      const h = m2.handlers.json;
      fleet = await startFleet([
        '--zeromq', `${h.sendSpec},${h.recvSpec}`,
        '--module', join(REPO_ROOT, 'examples', `${name}-app.mjs`),
        '--mongrel2-chroot', m2.dir,
      ]);
    });

    after(async () => {
      agent.destroy();
      if (process.env['M2FLEET_TEST_DUMP']) console.log(fleet?.stderr());
      await fleet?.stop();
    });

    test('GET / answers text on a fresh connection', async () => {
      const res = await ask({ path: '/' });
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain/);
      assert.ok(res.body.length > 0);
      assert.equal(res.reusedSocket, false);
      first = res.socket;
    });

    if (full) {
      test('a JSON POST to /echo comes back byte for byte', async () => {
        const body = Buffer.from(JSON.stringify({ app: name, text: 'héllo ✓ 🚀', n: [1, 2.5, null] }));
        const type = 'application/json';
        const res = await ask({ method: 'POST', path: '/echo', body, headers: { 'content-type': type } });
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], type);
        assert.ok(res.body.equals(body), res.body.toString('utf8'));
        assertSameConnection(res);
      });

      test('a 5 MB binary upload through the temp store is echoed exactly', async () => {
        const body = uploadBody(5 * MIB);
        const res = await ask({
          method: 'POST', path: '/echo', body, keep: false,
          headers: { 'content-type': 'application/octet-stream' },
        });
        assert.equal(res.status, 200);
        assert.equal(res.size, body.length);
        assert.equal(res.sha256, sha256(body));
        assertSameConnection(res);
        const left = readdirSync(m2.uploadDir).filter((f) => f.startsWith('upload.'));
        assert.deepEqual(left, [], 'the temp file is deleted after the request');
      });
    }

    // Without download.flow_control the pacing is a guess (flow-gate.ts):
    // on a loaded machine Mongrel2 can fall 16 frames behind and cut a
    // long stream. The 50 MB case runs where credits make it exact.
    const mb = full ? 50 : 8;
    test(`a ${mb} MB streamed download arrives whole`, async () => {
      const res = await ask({ path: `/stream?mb=${mb}`, keep: false });
      assert.equal(res.status, 200);
      assert.equal(res.size, mb * MIB);
      assert.equal(res.sha256, patternSha256(mb * MIB));
      assertSameConnection(res);
    });

    if (full) {
      test('a UTF-8 path parameter is decoded', async () => {
        const nameSent = 'wörld';
        const res = await ask({ path: `/u/${encodeURIComponent(nameSent)}` });
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body.toString('utf8')), { name: nameSent });
        assertSameConnection(res);
      });

      test('/info reports the peer, the scheme and the Host sent', async () => {
        const host = `${name}.example.test:8080`;
        const res = await ask({ path: '/info', headers: { host } });
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body.toString('utf8')),
          { ip: '127.0.0.1', protocol: 'http', host });
        assertSameConnection(res);
      });
    }
  });
}
