// A unit serving its standard sockets (HTTP, uwsgi, FastCGI) with no
// ZeroMQ endpoint, driven over real loopback connections by raw clients:
// the protocols' corners, the limits, bad input and fuzzed bytes, and the
// drain on stop.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodePairs, encodeBeginRequest, encodePairs, encodeRecords, FCGI, FcgiReader,
  type FcgiRecord,
} from '../../src/handler/fastcgi-codec.ts';
import { DEFAULT_SOCKET_LIMITS, type SocketKind, type SocketLimits } from '../../src/handler/gateway.ts';
import type { SocketListener } from '../../src/handler/socket-servers.ts';
import type { Logger } from '../../src/handler/types.ts';
import { HandlerUnit, type CompletedRequest } from '../../src/handler/unit.ts';
import { encodeUwsgiPacket } from '../../src/handler/uwsgi-codec.ts';

const records: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
function logger(bindings: Record<string, unknown> = {}): Logger {
  const at = (level: string) => (fields: Record<string, unknown>, msg: string): void => {
    records.push({ level, msg, fields: { ...bindings, ...fields } });
  };
  return {
    error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'),
    isDebug: () => false, child: (b) => logger({ ...bindings, ...b }),
  };
}

// The app: echoes bodies with their hash, streams a chunked download,
// reports what it saw, and can be held open.
const seen: { method?: string; url?: string; headers?: http.IncomingHttpHeaders; remote?: string; port?: number }[] = [];
let closes = 0;
const app = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  seen.push({ method: req.method, url: req.url, headers: req.headers, remote: req.socket.remoteAddress, port: req.socket.remotePort });
  res.on('close', () => { closes++; });
  if (url.pathname === '/download') {
    const n = Number(url.searchParams.get('kb') ?? 1);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    let i = 0;
    const more = (): void => {
      while (i < n) if (!res.write(Buffer.alloc(1024, i++ % 251))) return void res.once('drain', more);
      res.end();
    };
    more();
    return;
  }
  if (url.pathname === '/hold') {
    setTimeout(() => res.end('held'), Number(url.searchParams.get('ms') ?? 300));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, {
      'content-type': 'text/plain',
      'x-sha': createHash('sha256').update(body).digest('hex'),
      'x-len': String(body.length),
    });
    res.end(body);
  });
});

const LIMITS: SocketLimits = {
  ...DEFAULT_SOCKET_LIMITS,
  maxHeaderSize: 4096, maxHeaders: 20, maxBody: 1024 * 1024,
  headerTimeoutMs: 800, requestTimeoutMs: 5000, idleTimeoutMs: 1500,
};

const ports: Record<SocketKind, number> = { http: 0, uwsgi: 0, fastcgi: 0 };
const completed: CompletedRequest[] = [];
let unit: HandlerUnit;

function listener(kind: SocketKind): SocketListener {
  return {
    kind, address: `127.0.0.1:0 (${kind})`,
    listen: (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
      ports[kind] = (server.address() as net.AddressInfo).port;
      resolve();
    })),
  };
}

before(async () => {
  unit = new HandlerUnit({
    endpoints: [], server: app, log: logger(), identity: 'test-unit', maxInflight: 64,
    defaultHost: 'localhost', upload: { chroot: '/', dir: '/tmp' }, idleTimeoutMs: 60_000,
    flowControl: 'off', units: 1, receiveHighWaterMark: 16, maxMessageSize: -1,
    subscribeTimeoutMs: 100, lingerMs: 0,
    sockets: [listener('http'), listener('uwsgi'), listener('fastcgi')],
    socketLimits: LIMITS,
    onResponse: (r) => completed.push(r),
  });
  await unit.start();
});
after(async () => {
  await unit?.stop(2000);
});

/** Sends bytes, collects everything until the server closes (or ms pass). */
function exchange(port: number, data: Buffer | Buffer[], ms = 5000): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const timer = setTimeout(() => { s.destroy(); resolve({ bytes: Buffer.concat(got), closed: false }); }, ms);
    s.on('data', (c) => got.push(c));
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(timer); resolve({ bytes: Buffer.concat(got), closed: true }); });
    s.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) s.write(d);
    });
  });
}

function cgi(method: string, uri: string, extra: [string, string][] = []): [string, string][] {
  return [['REQUEST_METHOD', method], ['REQUEST_URI', uri], ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REMOTE_ADDR', '192.0.2.7'], ['REMOTE_PORT', '40000'], ['HTTP_HOST', 'example.test'], ...extra];
}

function head(text: Buffer): { status: number; headers: string; body: Buffer } {
  const end = text.indexOf('\r\n\r\n');
  const lines = text.subarray(0, end).toString('latin1');
  return { status: Number(/^\S+ (\d{3})/.exec(lines)?.[1] ?? 0), headers: lines, body: text.subarray(end + 4) };
}

/** One FastCGI request: BEGIN, PARAMS, the body as STDIN, the stream ends. */
function request(id: number, vars: [string, string][], body: Buffer | null, keepConn: boolean): Buffer {
  return Buffer.concat([
    encodeRecords(FCGI.BEGIN_REQUEST, id, encodeBeginRequest(1, keepConn)),
    encodeRecords(FCGI.PARAMS, id, encodePairs(vars)),
    encodeRecords(FCGI.PARAMS, id),
    ...(body ? [encodeRecords(FCGI.STDIN, id, body)] : []),
    encodeRecords(FCGI.STDIN, id),
  ]);
}

describe('uwsgi socket', () => {
  test('a request with a body split across writes gets the app\'s answer, then a close', async () => {
    const body = randomBytes(50_000);
    const packet = encodeUwsgiPacket(cgi('POST', '/echo?a=1', [['CONTENT_LENGTH', String(body.length)], ['CONTENT_TYPE', 'x/y']]));
    const all = Buffer.concat([packet, body]);
    const r = await exchange(ports.uwsgi, [all.subarray(0, 3), all.subarray(3, 900), all.subarray(900)]);
    const h = head(r.bytes);
    assert.equal(h.status, 200);
    assert.ok(r.closed);
    assert.match(h.headers, new RegExp(`x-sha: ${createHash('sha256').update(body).digest('hex')}`));
    assert.ok(h.body.equals(body));
    const last = seen.at(-1)!;
    assert.deepEqual([last.method, last.url, last.remote, last.port, last.headers?.host], ['POST', '/echo?a=1', '192.0.2.7', 40000, 'example.test']);
    assert.equal(completed.at(-1)?.via, 'uwsgi');
  });

  test('a chunked download arrives de-chunked, without a transfer-encoding header', async () => {
    const r = await exchange(ports.uwsgi, encodeUwsgiPacket(cgi('GET', '/download?kb=300')));
    const h = head(r.bytes);
    assert.equal(h.status, 200);
    assert.doesNotMatch(h.headers, /transfer-encoding|keep-alive/i);
    assert.equal(h.body.length, 300 * 1024);
    assert.equal(h.body[1024 * 7], 7);
  });

  test('bad packets are refused with a status and a close', async () => {
    const cases: [Buffer, number][] = [
      [Buffer.from([0, 6, 0, 0, 9, 0, 65, 66, 67, 68]), 400], // key runs past the packet
      [Buffer.from([0, 0xff, 0x7f, 0]), 431], // variables over the limit
      [encodeUwsgiPacket(cgi('GET', '/'), 5), 501], // a modifier1 m2fleet does not serve
      [encodeUwsgiPacket(cgi('GET', '/', [['HTTP_X', 'a\r\nx-evil: 1']])), 400],
      [encodeUwsgiPacket(cgi('GET', '/', [['CONTENT_LENGTH', String(2 * 1024 * 1024)]])), 413],
    ];
    for (const [bytes, status] of cases) {
      const r = await exchange(ports.uwsgi, bytes);
      assert.equal(head(r.bytes).status, status, bytes.toString('hex'));
      assert.ok(r.closed);
    }
  });

  test('a packet that never completes is cut after the header timeout', async () => {
    const started = Date.now();
    const r = await exchange(ports.uwsgi, Buffer.from([0, 100, 0, 0, 1]), 10_000);
    assert.ok(r.closed);
    assert.equal(head(r.bytes).status, 408);
    assert.ok(Date.now() - started >= LIMITS.headerTimeoutMs - 50);
  });
});

describe('FastCGI socket', () => {

  function parse(bytes: Buffer): { records: FcgiRecord[]; stdout: (id: number) => Buffer } {
    const records = new FcgiReader().push(bytes);
    return {
      records,
      stdout: (id) => Buffer.concat(records.filter((r) => r.type === FCGI.STDOUT && r.requestId === id).map((r) => r.content)),
    };
  }

  test('two requests in turn on one kept connection, each ending in END_REQUEST', async () => {
    const body = randomBytes(70_000); // more than one stdin record
    const s = net.connect(ports.fastcgi, '127.0.0.1');
    const reader = new FcgiReader();
    const got: FcgiRecord[] = [];
    let closed = false;
    s.on('close', () => { closed = true; });
    const ended = (id: number): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no END_REQUEST for ${id}: ${got.map((r) => `${r.type}/${r.requestId}/${r.content.length}`).join(" ")}`)), 5000);
      const check = (): void => {
        if (got.some((r) => r.type === FCGI.END_REQUEST && r.requestId === id)) {
          clearTimeout(timer);
          s.off('data', check);
          resolve();
        }
      };
      s.on('data', check);
      check();
    });
    s.on('data', (c: Buffer) => got.push(...reader.push(c)));
    try {
      s.write(request(1, cgi('POST', '/echo', [['CONTENT_LENGTH', String(body.length)]]), body, true));
      await ended(1);
      // The way nginx reuses a kept connection: the next request after END_REQUEST.
      s.write(request(2, cgi('GET', '/download?kb=100'), null, true));
      await ended(2);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(closed, false, 'a kept connection stays open');
    } finally {
      s.destroy();
    }
    const stdout = (id: number): Buffer => Buffer.concat(got.filter((r) => r.type === FCGI.STDOUT && r.requestId === id).map((r) => r.content));
    assert.match(stdout(1).toString('latin1'), /^Status: 200 OK\r\n/);
    assert.ok(stdout(1).subarray(stdout(1).indexOf('\r\n\r\n') + 4).equals(body));
    const two = stdout(2);
    assert.doesNotMatch(two.toString('latin1', 0, 200), /transfer-encoding/i);
    assert.equal(two.length - two.indexOf('\r\n\r\n') - 4, 100 * 1024);
    const ends = got.filter((x) => x.type === FCGI.END_REQUEST);
    assert.deepEqual(ends.map((e) => [e.requestId, e.content[4]]), [[1, 0], [2, 0]]);
  });

  test('a request sent while another runs is refused (CANT_MPX_CONN) and its records dropped', async () => {
    const r = await exchange(ports.fastcgi, [
      request(1, cgi('GET', '/hold?ms=200'), null, true),
      request(2, cgi('GET', '/x'), null, true),
    ], 1000);
    const p = parse(r.bytes);
    assert.deepEqual(p.records.filter((x) => x.type === FCGI.END_REQUEST).map((e) => [e.requestId, e.content[4]]),
      [[2, 1], [1, 0]]);
    assert.equal(r.closed, false);
  });

  test('without keep-conn the connection closes after END_REQUEST', async () => {
    const r = await exchange(ports.fastcgi, request(7, cgi('GET', '/x'), null, false));
    assert.ok(r.closed);
    assert.equal(parse(r.bytes).records.at(-1)?.type, FCGI.END_REQUEST);
    assert.equal(completed.at(-1)?.via, 'fastcgi');
  });

  test('a body of unknown length reaches the app whole', async () => {
    const body = randomBytes(20_000);
    const r = await exchange(ports.fastcgi, request(3, cgi('PUT', '/echo', [['HTTP_TRANSFER_ENCODING', 'chunked']]), body, false));
    const out = parse(r.bytes).stdout(3).toString('latin1');
    assert.match(out, new RegExp(`x-len: ${body.length}`));
  });

  test('GET_VALUES says one request per connection; an unknown role is refused', async () => {
    const values = await exchange(ports.fastcgi, encodeRecords(FCGI.GET_VALUES, 0,
      encodePairs([['FCGI_MPXS_CONNS', ''], ['FCGI_MAX_REQS', ''], ['OTHER', '']])), 1000);
    const result = parse(values.bytes).records.find((x) => x.type === FCGI.GET_VALUES_RESULT)!;
    assert.deepEqual(Object.fromEntries(decodePairs(result.content)), { FCGI_MPXS_CONNS: '0', FCGI_MAX_REQS: '1024' });

    const role = await exchange(ports.fastcgi, encodeRecords(FCGI.BEGIN_REQUEST, 4, encodeBeginRequest(2, false)));
    const unknown = parse(role.bytes).records.find((x) => x.type === FCGI.END_REQUEST)!;
    assert.equal(unknown.content[4], 3); // UNKNOWN_ROLE
  });

  test('parameters over the limit get a 431 response; broken framing closes the connection', async () => {
    const big = request(5, cgi('GET', '/', [['HTTP_X_BIG', 'x'.repeat(5000)]]), null, false);
    const r = await exchange(ports.fastcgi, big);
    assert.match(parse(r.bytes).stdout(5).toString('latin1'), /^Status: 431 /);
    const before = unit.counters.socketRefused.fastcgi;
    const broken = encodeRecords(FCGI.BEGIN_REQUEST, 1, encodeBeginRequest(1, false));
    broken[0] = 9;
    const b = await exchange(ports.fastcgi, broken);
    assert.ok(b.closed);
    assert.equal(b.bytes.length, 0);
    assert.equal(unit.counters.socketRefused.fastcgi, before + 1);
  });

  test('ABORT_REQUEST ends the request on the app side and answers END_REQUEST', async () => {
    const closesBefore = closes;
    const r = await exchange(ports.fastcgi, [
      request(6, cgi('GET', '/hold?ms=3000'), null, true),
      encodeRecords(FCGI.ABORT_REQUEST, 6),
    ], 1500);
    assert.ok(parse(r.bytes).records.some((x) => x.type === FCGI.END_REQUEST && x.requestId === 6));
    assert.equal(closes, closesBefore + 1);
  });
});

describe('HTTP socket', () => {
  const raw = (text: string): Buffer => Buffer.from(text, 'latin1');

  test('keep-alive requests are served and counted as http', async () => {
    const r = await exchange(ports.http, raw('POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc'
      + 'GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n'));
    const text = r.bytes.toString('latin1');
    assert.equal(text.match(/HTTP\/1\.1 200 OK/g)?.length, 2);
    assert.equal(completed.at(-1)?.via, 'http');
  });

  test('limits: head size, header count, declared and chunked body size, garbage', async () => {
    const cases: [string, number][] = [
      [`GET / HTTP/1.1\r\nhost: a\r\nx-big: ${'y'.repeat(5000)}\r\n\r\n`, 431],
      [`GET / HTTP/1.1\r\nhost: a\r\n${Array.from({ length: 25 }, (_, i) => `x-${i}: 1\r\n`).join('')}\r\n`, 431],
      ['POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2000000\r\n\r\n', 413],
      ['\x16\x03\x01 not http at all\r\n\r\n', 400],
    ];
    for (const [text, status] of cases) {
      const r = await exchange(ports.http, raw(text));
      assert.equal(head(r.bytes).status, status, text.slice(0, 40));
      assert.ok(r.closed);
    }
    const chunk = `${(300 * 1024).toString(16)}\r\n${'z'.repeat(300 * 1024)}\r\n`;
    const r = await exchange(ports.http, raw(`POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n${chunk.repeat(4)}0\r\n\r\n`));
    assert.ok(r.closed);
    assert.doesNotMatch(r.bytes.toString('latin1'), /^HTTP\/1\.1 200/);
  });

  test('a slow head gets 408 and a close; an idle keep-alive connection is closed', async () => {
    const slow = await exchange(ports.http, raw('GET / HTTP/1.1\r\nhost: a\r\n'), 10_000);
    assert.ok(slow.closed);
    assert.equal(head(slow.bytes).status, 408);
    const started = Date.now();
    const idle = await exchange(ports.http, raw('GET / HTTP/1.1\r\nhost: a\r\n\r\n'), 10_000);
    assert.ok(idle.closed);
    assert.equal(head(idle.bytes).status, 200);
    assert.ok(Date.now() - started >= LIMITS.idleTimeoutMs - 100);
  });
});

test('fuzz: random bytes on every socket crash nothing and a good request still works', async () => {
  const samples = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 200 }), { numRuns: 60, seed: 42 });
  // Half the samples start like a real packet or record, to get past the first check.
  const variants = samples.flatMap((s, i) => {
    const b = Buffer.from(s);
    const fcgi = Buffer.concat([Buffer.from([1, i % 12, 0, 1]), b]);
    const uwsgi = Buffer.concat([Buffer.from([0, b.length & 0xff, 0, 0]), b]);
    return [[ports.uwsgi, i % 2 ? uwsgi : b], [ports.fastcgi, i % 2 ? fcgi : b], [ports.http, b]] as [number, Buffer][];
  });
  for (let i = 0; i < variants.length; i += 30) {
    await Promise.all(variants.slice(i, i + 30).map(([port, bytes]) => exchange(port, bytes, 2500)));
  }
  const r = await exchange(ports.uwsgi, encodeUwsgiPacket(cgi('GET', '/after-fuzz')));
  assert.equal(head(r.bytes).status, 200);
  assert.ok(unit.counters.socketRefused.uwsgi > 0 && unit.counters.socketRefused.fastcgi > 0);
  assert.equal(records.filter((x) => x.level === 'error').length, 0,
    JSON.stringify(records.filter((x) => x.level === 'error').slice(0, 3)));
});

describe('sockets: what the adversarial pass found', () => {
  test('a FastCGI peer that floods management records without reading is no longer read', async () => {
    const s = net.connect(ports.fastcgi, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    // One kept request first: from then on no header timer runs.
    const reader = new FcgiReader();
    await new Promise<void>((resolve) => {
      const on = (c: Buffer): void => {
        if (reader.push(c).some((r) => r.type === FCGI.END_REQUEST)) { s.off('data', on); resolve(); }
      };
      s.on('data', on);
      s.write(request(9, cgi('GET', '/x'), null, true));
    });
    const record = encodeRecords(77, 0, Buffer.alloc(0));
    const batch = Buffer.concat(Array.from({ length: 8192 }, () => record)); // 64 KiB
    s.pause(); // never read the answers
    let stalled = false;
    for (let i = 0; i < 512 && !stalled; i++) { // at most 32 MiB
      if (!s.write(batch)) {
        // The server stops reading once its answers back up: our writes stay queued.
        const drained = await Promise.race([
          new Promise<boolean>((r) => s.once('drain', () => r(true))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 1500)),
        ]);
        stalled = !drained;
      }
    }
    s.destroy();
    assert.ok(stalled, 'the server kept reading a peer that never reads');
  });

  test('a FastCGI body shorter than CONTENT_LENGTH gets 400; STDIN before the parameters end closes', async () => {
    const short = await exchange(ports.fastcgi, Buffer.concat([
      encodeRecords(FCGI.BEGIN_REQUEST, 1, encodeBeginRequest(1, false)),
      encodeRecords(FCGI.PARAMS, 1, encodePairs(cgi('POST', '/echo', [['CONTENT_LENGTH', '10']]))),
      encodeRecords(FCGI.PARAMS, 1),
      encodeRecords(FCGI.STDIN, 1, Buffer.from('abc')),
      encodeRecords(FCGI.STDIN, 1),
    ]), 5000);
    assert.ok(short.closed);
    const out = Buffer.concat(new FcgiReader().push(short.bytes).filter((r) => r.type === FCGI.STDOUT).map((r) => r.content));
    assert.match(out.toString('latin1'), /^Status: 400 /);
    const early = await exchange(ports.fastcgi, Buffer.concat([
      encodeRecords(FCGI.BEGIN_REQUEST, 1, encodeBeginRequest(1, true)),
      encodeRecords(FCGI.PARAMS, 1, encodePairs(cgi('POST', '/echo'))),
      encodeRecords(FCGI.STDIN, 1, Buffer.from('abc')),
    ]), 5000);
    assert.ok(early.closed);
  });

  test('a uwsgi client that half-closes after its request still gets the answer', async () => {
    const bytes = await new Promise<Buffer>((resolve) => {
      const s = net.connect(ports.uwsgi, '127.0.0.1');
      const got: Buffer[] = [];
      s.on('data', (c) => got.push(c));
      s.on('close', () => resolve(Buffer.concat(got)));
      s.on('error', () => undefined);
      s.end(encodeUwsgiPacket(cgi('GET', '/hold?ms=200')));
    });
    assert.equal(head(bytes).status, 200);
    assert.equal(head(bytes).body.toString(), 'held');
  });

  test('a draining unit closes an idle kept FastCGI connection instead of waiting for its idle timer', async () => {
    let port = 0;
    const u = new HandlerUnit({
      endpoints: [], server: app, log: logger(), identity: 'drain-unit', maxInflight: 64,
      defaultHost: 'localhost', upload: { chroot: '/', dir: '/tmp' }, idleTimeoutMs: 60_000,
      flowControl: 'off', units: 1, receiveHighWaterMark: 16, maxMessageSize: -1,
      subscribeTimeoutMs: 100, lingerMs: 0,
      sockets: [{ kind: 'fastcgi', address: 'test', listen: (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
        port = (server.address() as net.AddressInfo).port;
        resolve();
      })) }],
      socketLimits: { ...LIMITS, idleTimeoutMs: 60_000 },
    });
    await u.start();
    const s = net.connect(port, '127.0.0.1');
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => undefined);
    const reader = new FcgiReader();
    const ended = new Promise<void>((resolve) => s.on('data', (c: Buffer) => {
      if (reader.push(c).some((r) => r.type === FCGI.END_REQUEST)) resolve();
    }));
    s.write(Buffer.concat([
      encodeRecords(FCGI.BEGIN_REQUEST, 1, encodeBeginRequest(1, true)),
      encodeRecords(FCGI.PARAMS, 1, encodePairs(cgi('GET', '/x'))),
      encodeRecords(FCGI.PARAMS, 1), encodeRecords(FCGI.STDIN, 1),
    ]));
    await ended;
    const started = Date.now();
    await u.stop(20_000);
    await closed;
    // Without closing idle connections the stop waits the whole 20 s grace.
    assert.ok(Date.now() - started < 10_000, `stop took ${Date.now() - started} ms`);
  });
});
