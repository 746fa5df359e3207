/**
 * loadApp with the routers the main loader test has no fixture for:
 * itty-router (a Proxy that answers every property) and Connect.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import type net from 'node:net';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadApp, type LoadedApp } from '../../src/handler/app-loader.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/apps/', import.meta.url));
const open: LoadedApp[] = [];
after(async () => {
  await Promise.all(open.map((app) => app.close()));
});

async function serve(spec: string): Promise<{ app: LoadedApp; base: string }> {
  const app = await loadApp(spec, { cwd: FIXTURES });
  open.push(app);
  assert.equal(app.server.listening, false, 'loader must not bind');
  await new Promise<void>((resolve, reject) => {
    (app.server as http.Server).once('error', reject);
    app.server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = app.server.address() as net.AddressInfo;
  return { app, base: `http://127.0.0.1:${port}` };
}

test('an itty-router Router is hosted as a fetch app, and no match gives 404', async () => {
  const { app, base } = await serve('itty-router.mjs');
  assert.equal(app.kind, 'fetch');
  assert.equal(await (await fetch(`${base}/hello/w%C3%B6rld`)).text(), 'hi w%C3%B6rld');
  assert.equal(await (await fetch(`${base}/`)).text(), 'itty root');
  assert.equal((await fetch(`${base}/nothing`)).status, 404);
});

test('a CommonJS Connect app runs its middleware chain', async () => {
  const { app, base } = await serve('connect-app.cjs');
  assert.equal(app.kind, 'node-handler');
  const res = await fetch(`${base}/mw`);
  assert.equal(res.headers.get('x-connect'), 'yes');
  assert.equal(await res.text(), 'connect middleware');
  assert.equal((await fetch(`${base}/elsewhere`)).status, 404);
});
