/**
 * loadApp: each kind of export is loaded from a fixture, then served for
 * real by binding the returned server to 127.0.0.1:0 (tests only) and
 * fetching from it.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  loadApp,
  type LoadAppOptions,
  type LoadedApp,
} from '../../src/handler/app-loader.js';
import { M2FleetError } from '../../src/handler/errors.js';
import type { Logger } from '../../src/handler/types.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/apps/', import.meta.url));
const originalListen = net.Server.prototype.listen;

/** Logger that keeps app errors instead of printing them. */
function collectingLogger(errors: unknown[]): Logger {
  const ignore = (): void => undefined;
  const logger: Logger = {
    error: (fields) => void errors.push(fields.err),
    warn: ignore,
    info: ignore,
    debug: ignore,
    isDebug: () => false,
    child: () => logger,
  };
  return logger;
}

const appErrors: unknown[] = [];
const open: LoadedApp[] = [];
after(async () => {
  await Promise.all(open.map((app) => app.close()));
});

/** Load a fixture and bind its server to 127.0.0.1:0; returns the base URL. */
async function serve(spec: string, opts: LoadAppOptions = {}) {
  const app = await loadApp(spec, {
    cwd: FIXTURES,
    logger: collectingLogger(appErrors),
    ...opts,
  });
  open.push(app);
  assert.equal(app.server.listening, false, 'loader must not bind');
  await listenLocally(app.server);
  const { port } = app.server.address() as net.AddressInfo;
  return { app, base: `http://127.0.0.1:${port}` };
}

function listenLocally(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text() };
}

async function loadError(spec: string, opts: LoadAppOptions = {}) {
  const err = await loadApp(spec, { cwd: FIXTURES, ...opts }).then(
    () => assert.fail(`${spec} should not load`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof M2FleetError, 'an M2FleetError');
  assert.equal(err.code, 'M2F_APP_LOAD');
  return err;
}

describe('loadApp detects each export kind and serves it', () => {
  test('Express 5 ESM default export is a node handler', async () => {
    const { app, base } = await serve('express-esm.mjs');
    assert.equal(app.kind, 'node-handler');
    assert.deepEqual(await get(`${base}/`), { status: 200, text: 'express esm' });
  });

  test('CommonJS Express app (module.exports) loads through import()', async () => {
    const { app, base } = await serve('express-cjs.cjs');
    assert.equal(app.kind, 'node-handler');
    assert.equal((await get(`${base}/`)).text, 'express cjs');
  });

  test('Koa app is hosted through its callback', async () => {
    const { app, base } = await serve('koa-app.mjs');
    assert.equal(app.kind, 'koa');
    const response = await fetch(`${base}/k`);
    assert.deepEqual(await response.json(), { framework: 'koa', path: '/k' });
    assert.equal((await get(`${base}/boom`)).status, 500);
  });

  test('Fastify app is made ready and its routes answer', async () => {
    const { app, base } = await serve('fastify-app.mjs');
    assert.equal(app.kind, 'fastify');
    const response = await fetch(`${base}/`);
    assert.deepEqual(await response.json(), { framework: 'fastify', readyRan: true });
    assert.equal((await get(`${base}/boom`)).status, 500);
    assert.equal((await get(`${base}/`)).status, 200);
  });

  test('Hono `export default app` is a fetch app', async () => {
    const { app, base } = await serve('hono-app.mjs');
    assert.equal(app.kind, 'fetch');
    assert.deepEqual(await get(`${base}/`), { status: 200, text: 'hono' });
    assert.equal((await get(`${base}/boom`)).status, 500);
  });

  test('a bare one-argument function is a fetch handler', async () => {
    const { app, base } = await serve('fetch-function.mjs');
    assert.equal(app.kind, 'fetch');
    assert.equal((await get(`${base}/a`)).text, 'fetch fn GET /a');
  });

  test('an object with fetch keeps `this`', async () => {
    const { app, base } = await serve('fetch-object.mjs');
    assert.equal(app.kind, 'fetch');
    assert.equal((await get(`${base}/o`)).text, 'fetch object /o');
  });

  test('a plain (req, res) function is a node handler', async () => {
    const { app, base } = await serve('node-handler.mjs');
    assert.equal(app.kind, 'node-handler');
    assert.equal((await get(`${base}/p`)).text, 'node handler GET /p');
  });

  // The module cache hands out the same server on every load, so one test
  // covers hosting, timers and a throwing listener.
  test('an exported http.Server is hosted, its timers off, throws contained', async () => {
    const { app, base } = await serve('http-server.mjs');
    assert.equal(app.kind, 'http-server');
    assert.equal((await get(`${base}/s`)).text, 'http server /s');
    assert.equal(app.server.keepAliveTimeout, 0);
    assert.equal(app.server.requestTimeout, 0);
    assert.equal(app.server.headersTimeout, 0);
    assert.equal(app.server.timeout, 0);
    assert.equal((await get(`${base}/throw`)).status, 500);
    assert.equal((await get(`${base}/x`)).text, 'http server /x');
  });

  test('a named export is selected with PATH:EXPORT', async () => {
    const { app, base } = await serve('named-export.mjs:myApp');
    assert.equal(app.kind, 'node-handler');
    assert.equal((await get(`${base}/n`)).text, 'named /n');
  });

  test('a .ts default export in a CommonJS package (double default)', async () => {
    const { app, base } = await serve('ts-cjs/app.ts');
    assert.equal(app.kind, 'fetch');
    assert.equal((await get(`${base}/t`)).text, 'typescript /t');
  });

  test('the idle timers of a server m2fleet creates are off', async () => {
    const { app } = await serve('node-handler.mjs');
    assert.equal(app.server.keepAliveTimeout, 0);
    assert.equal(app.server.requestTimeout, 0);
    assert.equal(app.server.headersTimeout, 0);
    assert.equal(app.server.timeout, 0);
  });
});

describe('loadApp captures listen() instead of binding', () => {
  test('a module ending in app.listen(3000) is captured, nothing bound', async () => {
    const app = await loadApp('listen-end.mjs', { cwd: FIXTURES });
    open.push(app);
    assert.equal(app.kind, 'listen-capture');
    assert.equal(app.server.listening, false, 'port 3000 was not bound');
    assert.deepEqual(app.server.address(), {
      address: '127.0.0.1',
      family: 'IPv4',
      port: 3000,
    });
    assert.equal(net.Server.prototype.listen, originalListen, 'listen restored');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((globalThis as Record<string, unknown>).listenEndCallbackRan, true);

    await listenLocally(app.server);
    const { port } = app.server.address() as net.AddressInfo;
    assert.notEqual(port, 3000);
    assert.equal((await get(`http://127.0.0.1:${port}/`)).text, 'captured at end');
  });

  test('a listen after an await in an async main is captured', async () => {
    const { app, base } = await serve('listen-async.mjs');
    assert.equal(app.kind, 'listen-capture');
    assert.deepEqual((globalThis as Record<string, unknown>).listenAsyncAddress, {
      address: '127.0.0.1',
      family: 'IPv4',
      port: 3001,
    });
    assert.equal(net.Server.prototype.listen, originalListen, 'listen restored');
    assert.equal((await get(`${base}/`)).text, 'captured after await');
  });
});

describe('app errors stay inside one response', () => {
  test('a throwing (req, res) handler answers 500, then serves again', async () => {
    const { base } = await serve('node-handler.mjs');
    const before = appErrors.length;
    assert.equal((await get(`${base}/throw`)).status, 500);
    assert.equal((await get(`${base}/reject`)).status, 500);
    assert.equal((await get(`${base}/ok`)).text, 'node handler GET /ok');
    assert.equal(appErrors.length, before + 2, 'both errors reported');
  });

  test('an Express route that throws answers 500 and the app goes on', async () => {
    const { base } = await serve('express-esm.mjs');
    assert.equal((await get(`${base}/boom`)).status, 500);
    assert.equal((await get(`${base}/nope`)).status, 404);
    assert.equal((await get(`${base}/`)).status, 200);
  });

  for (const fixture of ['fetch-function.mjs', 'fetch-sync.mjs']) {
    test(`${fixture}: undefined answers 404, a throw 500`, async () => {
      const { base } = await serve(fixture);
      assert.equal((await get(`${base}/missing`)).status, 404);
      assert.equal((await get(`${base}/throw`)).status, 500);
      assert.equal((await get(`${base}/`)).status, 200);
    });
  }
});

describe('interface forcing', () => {
  test('auto treats a one-parameter function as fetch', async () => {
    const { app, base } = await serve('one-arg-node.mjs');
    assert.equal(app.kind, 'fetch');
    // Called as fetch, the handler gets no `res` and throws: a 500.
    assert.equal((await get(`${base}/`)).status, 500);
  });

  test('interface node treats it as (req, res)', async () => {
    const { app, base } = await serve('one-arg-node.mjs', { interface: 'node' });
    assert.equal(app.kind, 'node-handler');
    assert.equal((await get(`${base}/one`)).text, 'one-arg node /one');
  });

  test('interface fetch refuses a Koa app (no fetch method)', async () => {
    const err = await loadError('koa-app.mjs', { interface: 'fetch', listenWaitMs: 20 });
    assert.match(err.message, /interface forced to "fetch"/);
  });
});

describe('load errors are M2F_APP_LOAD and name what was found', () => {
  test('a missing file', async () => {
    const err = await loadError('no-such-app.mjs');
    assert.match(err.message, /no-such-app\.mjs/);
    assert.match(err.message, /does not exist/);
  });

  test('a missing export lists the exports there are', async () => {
    const err = await loadError('named-export.mjs:nope');
    assert.match(err.message, /export "nope" not found/);
    assert.match(err.message, /myApp/);
  });

  test('a NestJS .ts entry is refused with advice to compile to JS', async () => {
    const err = await loadError('nest-main.ts');
    assert.match(err.message, /NestJS/);
    assert.match(err.message, /compile the app to JavaScript/);
  });

  test('a path whose directory contains ":" is not split', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'm2fleet-loader-'));
    await mkdir(path.join(dir, 'x:y'));
    await writeFile(
      path.join(dir, 'x:y', 'app.mjs'),
      'export default () => new Response("colon dir");\n',
    );
    try {
      const app = await loadApp('x:y/app.mjs', { cwd: dir });
      await app.close();
      assert.equal(app.kind, 'fetch');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a module exporting a number', async () => {
    const err = await loadError('exports-number.mjs', { listenWaitMs: 20 });
    assert.match(err.message, /a number \(42\)/);
    assert.equal(net.Server.prototype.listen, originalListen, 'listen restored');
  });
});

// Last on purpose: the override replaces the global Request/Response for
// the rest of this test process.
describe('fastWebGlobals', () => {
  test('lets @hono/node-server replace the globals; Hono still serves', async () => {
    const nativeResponse = globalThis.Response;
    const { base } = await serve('hono-app.mjs', { fastWebGlobals: true });
    assert.notEqual(globalThis.Response, nativeResponse);
    assert.deepEqual(await get(`${base}/`), { status: 200, text: 'hono' });
  });
});
