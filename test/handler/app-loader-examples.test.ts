/**
 * The example apps in examples/ answer the same routes alike. One suite per
 * example: loaded with loadApp, bound to 127.0.0.1:0 (tests only) and
 * fetched over real HTTP.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadApp, type LoadedApp } from '../../src/handler/app-loader.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const MIB = 1024 * 1024;

const EXAMPLE_APPS = [
  { file: 'express-app.mjs', kind: 'node-handler', framework: 'express' },
  { file: 'koa-app.mjs', kind: 'koa', framework: 'koa' },
  { file: 'fastify-app.mjs', kind: 'fastify', framework: 'fastify' },
  { file: 'hono-app.mjs', kind: 'fetch', framework: 'hono' },
] as const;

/** True when byte i of `bytes` is i % 251, the examples' stream pattern. */
function followsPattern(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== i % 251) return false;
  }
  return true;
}

for (const example of EXAMPLE_APPS) {
  describe(`examples/${example.file}`, () => {
    let app: LoadedApp;
    let base = '';
    let port = 0;

    before(async () => {
      app = await loadApp(example.file, { cwd: EXAMPLES });
      await new Promise<void>((resolve, reject) => {
        app.server.once('error', reject);
        app.server.listen(0, '127.0.0.1', () => resolve());
      });
      port = (app.server.address() as net.AddressInfo).port;
      base = `http://127.0.0.1:${port}`;
    });
    after(() => app.close());

    test(`loads as ${example.kind}`, () => {
      assert.equal(app.kind, example.kind);
    });

    test('GET / answers text', async () => {
      const response = await fetch(`${base}/`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(await response.text(), /via m2fleet/);
    });

    test('GET /json answers JSON', async () => {
      const response = await fetch(`${base}/json`);
      assert.deepEqual(await response.json(), { framework: example.framework, ok: true });
    });

    test('POST /echo returns 3 MiB of random bytes and the content-type', async () => {
      const body = randomBytes(3 * MIB);
      const response = await fetch(`${base}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-m2fleet-test; v=1' },
        body,
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'application/x-m2fleet-test; v=1');
      const echoed = Buffer.from(await response.arrayBuffer());
      assert.equal(echoed.length, body.length);
      assert.ok(echoed.equals(body), 'echo is byte-exact');
    });

    test('POST /echo leaves a JSON body unparsed', async () => {
      const text = '{ "b": 2,\n  "a": [1, 2] }';
      const response = await fetch(`${base}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
      });
      assert.equal(response.headers.get('content-type'), 'application/json');
      assert.equal(await response.text(), text);
    });

    test('GET /stream?mb=5 streams 5 MiB of the pattern', async () => {
      const response = await fetch(`${base}/stream?mb=5`);
      assert.equal(response.status, 200);
      const bytes = new Uint8Array(await response.arrayBuffer());
      assert.equal(bytes.length, 5 * MIB);
      assert.ok(followsPattern(bytes), 'byte i is i % 251');
    });

    test('GET /stream?mb=x is refused with 400', async () => {
      const response = await fetch(`${base}/stream?mb=x`);
      assert.equal(response.status, 400);
      await response.arrayBuffer();
    });

    test('GET /u/:name decodes a UTF-8 path parameter', async () => {
      const name = 'Zoë 東京 ✓';
      const response = await fetch(`${base}/u/${encodeURIComponent(name)}`);
      assert.deepEqual(await response.json(), { name });
    });

    test('GET /info reports ip, protocol and host', async () => {
      const response = await fetch(`${base}/info`);
      assert.deepEqual(await response.json(), {
        ip: '127.0.0.1',
        protocol: 'http',
        host: `127.0.0.1:${port}`,
      });
    });
  });
}
