// One m2fleet (-p 2 --threads 2) serving a real Mongrel2 over ZeroMQ and, at
// the same time, plain HTTP, uwsgi (a unix socket, through a real nginx's
// uwsgi_pass) and FastCGI (a TCP socket, through nginx's fastcgi_pass with
// kept connections): the same requests give the same answers on all four
// paths; then reload and stop under traffic, and the address checks.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT, startFleet, type FleetProcess } from '../helpers/fleet.ts';
import { startMongrel2, zeromqArgs, type Mongrel2Instance } from '../helpers/mongrel2.ts';
import { addNamespace, deleteNamespace, endChild, netnsAvailable, run, spawnIn } from '../helpers/netns.ts';
import { startNginx, type NginxInstance } from '../helpers/nginx.ts';
import { freePort, freePorts } from '../helpers/ports.ts';

const APP = join(REPO_ROOT, 'test/fixtures/probe-app.mjs');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

let m2: Mongrel2Instance;
let nginx: NginxInstance;
let fleet: FleetProcess;
let dir: string;
let httpPort: number;
let statsPort: number;
let bases: Record<string, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'm2fleet-sockets-'));
  const uwsgiPath = join(dir, 'uwsgi.sock');
  const [h, f, s] = await freePorts(3);
  httpPort = h!;
  statsPort = s!;
  m2 = await startMongrel2({});
  fleet = await startFleet([...zeromqArgs(m2, 'json'), '--module', APP, '-p', '2', '--threads', '2', '--mongrel2-chroot', m2.dir,
    '--http', `127.0.0.1:${httpPort}`, '--socket', uwsgiPath, '--fastcgi-socket', `127.0.0.1:${f}`,
    '--chmod-socket', '600', '--stats', `127.0.0.1:${statsPort}`, '--access-log', '--mercy', '10s'],
  { readyTimeoutMs: 30_000 });
  nginx = await startNginx([
    { kind: 'uwsgi', address: `unix:${uwsgiPath}` },
    { kind: 'fastcgi', address: `127.0.0.1:${f}`, keepConn: true },
  ]);
  bases = {
    mongrel2: `http://127.0.0.1:${m2.httpPort}`,
    http: `http://127.0.0.1:${httpPort}`,
    uwsgi: `http://127.0.0.1:${nginx.ports[0]}`,
    fastcgi: `http://127.0.0.1:${nginx.ports[1]}`,
  };
});
after(async () => {
  await nginx?.stop();
  await fleet?.stop();
  await m2?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Answer { status: number; type: string | null; bodySha: string; bodyLength: number; json?: Record<string, unknown> }

async function ask(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(20_000) });
  const body = new Uint8Array(await res.arrayBuffer());
  const type = res.headers.get('content-type');
  const answer: Answer = { status: res.status, type, bodySha: sha(body), bodyLength: body.length };
  if (type === 'application/json') {
    const j = JSON.parse(Buffer.from(body).toString()) as Record<string, unknown>;
    const headers = j['headers'] as Record<string, string>;
    // What the app saw of the request, minus what each hop adds (Host,
    // X-Forwarded-*, connection headers).
    answer.json = {
      url: j['url'], method: j['method'], httpVersion: j['httpVersion'],
      test: Buffer.from(headers['x-test'] ?? '', 'hex').toString('latin1'),
      type: Buffer.from(headers['content-type'] ?? '', 'hex').toString('latin1'),
    };
    delete (answer as { bodySha?: string }).bodySha;
    delete (answer as { bodyLength?: number }).bodyLength;
  }
  return answer;
}

describe('the same app on four paths', () => {
  const upload = randomBytes(1024 * 1024 + 17);
  const cases: [string, string, RequestInit][] = [
    ['GET with a query and a header', '/json/headers?a=1&b=%20x', { headers: { 'x-test': 'v 1' } }],
    ['POST of 1 MB (a Mongrel2 temp-file upload)', '/json/echo', { method: 'POST', body: upload, headers: { 'content-type': 'application/x-bin' } }],
    ['a chunked streamed download', '/json/chunks?n=300&size=4000', {}],
    ['a 2 MB download', '/json/download?mb=2', {}],
    ['a 204', '/json/status?code=204', {}],
    ['HEAD', '/json/download?mb=1', { method: 'HEAD' }],
    ['an app that throws', '/json/throw', {}],
  ];
  for (const [name, path, init] of cases) {
    test(name, async () => {
      const answers: Record<string, Answer> = {};
      for (const [via, base] of Object.entries(bases)) answers[via] = await ask(base, path, init);
      for (const via of ['http', 'uwsgi', 'fastcgi']) {
        assert.deepEqual(answers[via], answers['mongrel2'], `${via} differs from mongrel2`);
      }
      if (path.includes('echo')) assert.equal(answers['http']!.bodySha, sha(upload));
      if (path.includes('chunks')) assert.equal(answers['uwsgi']!.bodyLength, 300 * 4000);
    });
  }

  test('the access log and /metrics count each transport, and units of both processes take socket connections', async () => {
    const units = new Set<unknown>();
    const pids = new Set<unknown>();
    for (let round = 0; round < 20 && (units.size < 3 || pids.size < 2); round++) {
      await Promise.all(Array.from({ length: 20 }, () => ask(bases['http']!, '/json/headers', { headers: { connection: 'close' } })));
      for (const r of fleet.logs()) {
        if (r.msg === 'access' && r.via === 'http') {
          units.add(r.unit);
          pids.add(r.pid);
        }
      }
    }
    assert.equal(pids.size, 2, 'both processes accepted on the one --http socket');
    assert.ok(units.size >= 3, `only ${units.size} of 4 units accepted`);
    const vias = new Set(fleet.logs().filter((r) => r.msg === 'access').map((r) => r.via ?? 'zeromq'));
    assert.deepEqual([...vias].sort(), ['fastcgi', 'http', 'uwsgi', 'zeromq']);
    // The controller publishes counters once a second.
    let text = '';
    for (let i = 0; i < 30; i++) {
      text = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
      if (/via="fastcgi"\} [1-9]/.test(text)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const via of ['zeromq', 'http', 'uwsgi', 'fastcgi']) {
      assert.match(text, new RegExp(`m2fleet_transport_requests_total\\{[^}]*via="${via}"\\} [1-9]`), via);
    }
  });

  test('bad input on a socket is refused and counted, and the fleet serves on', async () => {
    const s = await import('node:net');
    const bytes = await new Promise<string>((resolve) => {
      const c = s.connect(httpPort, '127.0.0.1');
      let got = '';
      c.on('data', (d) => { got += d.toString('latin1'); });
      c.on('close', () => resolve(got));
      c.on('error', () => undefined);
      c.end('\x00\x01garbage\r\n\r\n');
    });
    assert.match(bytes, /^HTTP\/1\.1 400 /);
    const after = await ask(bases['uwsgi']!, '/json/headers');
    assert.equal(after.status, 200);
    // The refusal reaches /metrics (the controller publishes once a second).
    let refused = false;
    for (let i = 0; i < 40 && !refused; i++) {
      const text = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
      refused = /m2fleet_socket_refused_total\{[^}]*via="http"\} [1-9]/.test(text);
      if (!refused) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(refused, 'm2fleet_socket_refused_total{via="http"} stayed 0');
  });
});

describe('reload and stop', () => {
  test('SIGHUP under a stream of new connections loses none', async () => {
    let stop = false;
    const failures: string[] = [];
    let done = 0;
    const client = async (base: string): Promise<void> => {
      for (let i = 0; i < 400 && !stop; i++) {
        try {
          const a = await ask(base, '/json/headers', { headers: { connection: 'close' } });
          if (a.status !== 200) failures.push(`${base} ${a.status}`);
          done++;
        } catch (err) {
          failures.push(`${base} ${(err as Error).message}`);
        }
      }
    };
    const clients = [client(bases['http']!), client(bases['uwsgi']!), client(bases['fastcgi']!)];
    await new Promise((r) => setTimeout(r, 300));
    const reloaded = fleet.logs().filter((r) => r.msg === 'old process drained and exited').length;
    process.kill(fleet.pid, 'SIGHUP');
    await fleet.waitForLog(() => fleet.logs().filter((r) => r.msg === 'old process drained and exited').length > reloaded, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(done > 20, `only ${done} requests ran`);
  });

  test('SIGTERM lets a slow request finish and then closes the port', async () => {
    const slow = ask(bases['http']!, '/json/chunks?n=20&size=10').then(() =>
      ask(bases['http']!, '/json/headers'));
    const pending = fetch(`${bases['http']}/json/download?mb=8`).then(async (r) => (await r.arrayBuffer()).byteLength);
    await new Promise((r) => setTimeout(r, 100));
    const stopped = fleet.stop('SIGTERM', 30_000);
    // While the download drains, new connections are refused at once (a
    // web server in front moves on), not queued for nobody.
    await fleet.waitForLog((r) => r.msg === 'stopping: draining requests');
    await new Promise((r) => setTimeout(r, 300));
    const { connect } = await import('node:net');
    const refused = await new Promise<string>((resolve) => {
      const c = connect(httpPort, '127.0.0.1');
      const timer = setTimeout(() => { c.destroy(); resolve('no answer in 5 s'); }, 5000);
      c.once('connect', () => { clearTimeout(timer); c.destroy(); resolve('connected'); });
      c.once('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(err.code ?? err.message); });
    });
    assert.equal(refused, 'ECONNREFUSED');
    const code = await stopped;
    assert.equal(code, 0);
    assert.equal(await pending, 8 * 1024 * 1024);
    await slow.catch(() => undefined);
    await assert.rejects(fetch(`${bases['http']}/json/headers`, { signal: AbortSignal.timeout(3000) }));
  });
});

describe('WebSockets on --http', () => {
  test('an upgrade goes to the app\'s own upgrade listener (ws echo, --threads 2)', async () => {
    const { WebSocket } = await import('ws');
    const port = await freePort();
    const f = await startFleet(['--http', `127.0.0.1:${port}`, '--threads', '2',
      '--module', join(REPO_ROOT, 'test/fixtures/ws-echo-app.mjs')], { readyTimeoutMs: 30_000 });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?id=h1`);
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      const big = randomBytes(200_000);
      const echoed = await new Promise<Buffer>((resolve) => {
        ws.once('message', (data) => resolve(data as Buffer));
        ws.send(big);
      });
      assert.ok(echoed.equals(big));
      ws.close();
      await new Promise((r) => ws.once('close', r));
    } finally {
      await f.stop();
    }
  });
});

describe('addresses', () => {
  test('a port in use stops m2fleet with the address named', async () => {
    const { createServer } = await import('node:net');
    const busy = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    const port = (busy.address() as { port: number }).port;
    try {
      const f = await startFleet(['--http', `127.0.0.1:${port}`], { waitReady: false });
      assert.equal(await f.exited, 1);
      assert.match(f.stderr(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(http\\): EADDRINUSE`));
    } finally {
      busy.close();
    }
  });

  test('a unix socket another m2fleet listens on is refused; a stale one is replaced and removed at stop', async () => {
    const path = join(dir, 'shared.sock');
    const a = await startFleet(['--socket', path], { readyTimeoutMs: 30_000 });
    try {
      const b = await startFleet(['--socket', path], { waitReady: false });
      assert.equal(await b.exited, 1);
      assert.match(b.stderr(), /another process listens on that socket/);
    } finally {
      await a.stop('SIGKILL');
    }
    // A killed master leaves its socket file behind: the next start replaces it.
    const c = await startFleet(['--socket', path], { readyTimeoutMs: 30_000 });
    assert.ok(c.logs().some((r) => r.msg === 'replacing a stale socket file'));
    assert.equal(await c.stop(), 0);
    const { existsSync } = await import('node:fs');
    assert.equal(existsSync(path), false);
  });

  test(':PORT listens on every interface and says so (inside a namespace of its own)', async (t) => {
    const ok = netnsAvailable();
    if (!ok.ok) return t.skip(ok.why);
    const ns = `m2s-${randomUUID().slice(0, 8)}`;
    await addNamespace(ns);
    const port = await freePort();
    const child = spawnIn(ns, process.execPath, [join(REPO_ROOT, 'dist/node/cli.js'), '--http', `:${port}`],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    try {
      for (let i = 0; i < 100 && !stderr.includes('"msg":"ready"'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(stderr, /listening on every interface/);
      const { stdout } = await run('ip', ['netns', 'exec', ns, 'curl', '-s', `http://127.0.0.1:${port}/?x=1`]);
      assert.match(stdout, /m2fleet test app/);
    } finally {
      await endChild(child);
      await deleteNamespace(ns);
    }
  });
});
