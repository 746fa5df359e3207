// The handler protocol end to end: a real Mongrel2, the m2fleet CLI, and a
// probe app, driven by raw TCP clients. The same suite runs for the JSON
// and the tnetstring handler (routes /json/ and /tnet/).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFleet, REPO_ROOT, type FleetProcess } from '../helpers/fleet.ts';
import { RawConnection, rawRequest } from '../helpers/http-client.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const PROBE = join(REPO_ROOT, 'test/fixtures/probe-app.mjs');

let m2: Mongrel2Instance;
let fleet: FleetProcess;

before(async () => {
  m2 = await startMongrel2({ contentLength: 20480 });
  fleet = await startFleet([
    ...zeromqArgs(m2),
    '--module', PROBE,
    '--mongrel2-chroot', m2.dir,
  ]);
});

after(async () => {
  if (process.env['M2FLEET_TEST_DUMP']) console.log(fleet?.stderr());
  await fleet?.stop();
  await m2?.stop();
});

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
}

async function probeJson(
  route: string, request: string | Buffer,
): Promise<Record<string, any>> {
  const conn = await RawConnection.connect(m2.httpPort);
  try {
    await conn.write(request);
    const res = await conn.readResponse({ timeoutMs: 10_000 });
    assert.equal(res.status, 200, res.raw.toString('latin1'));
    return JSON.parse(res.body.toString('utf8'));
  } finally {
    conn.close();
  }
}

function hex(s: string): string {
  return Buffer.from(s, 'latin1').toString('hex');
}

for (const route of ['json', 'tnet'] as const) {
  describe(`through the ${route} handler`, () => {
    const p = (rest: string): string => `/${route}/${rest}`;

    test('a GET arrives with its path, query, remote address and host', async () => {
      const seen = await probeJson(route, get(p('w%C3%B6rld/headers?a=1&b=two%20x')));
      assert.equal(seen.method, 'GET');
      assert.equal(seen.url, p('w%C3%B6rld/headers?a=1&b=two%20x'));
      assert.equal(seen.httpVersion, '1.1');
      assert.equal(seen.remoteAddress, '127.0.0.1');
      assert.equal(seen.encrypted, false);
      assert.equal(seen.headers.host, hex('localhost'));
      // Mongrel2's own uppercase keys never become client headers.
      for (const k of Object.keys(seen.headers)) assert.equal(k, k.toLowerCase());
      assert.equal(seen.headers.method, undefined);
      assert.equal(seen.headers.pattern, undefined);
      assert.equal(seen.headers['content-length'], undefined);
    });

    test('repeated headers are combined as Node combines them', async () => {
      const seen = await probeJson(route, get(p('headers'),
        'X-Dup: one\r\nx-dup: two\r\nCookie: a=1\r\nCookie: b=2\r\n'));
      assert.equal(seen.headers['x-dup'], hex('one, two'));
      assert.equal(seen.headers.cookie, hex('a=1; b=2'));
    });

    test('non-ASCII header bytes reach the app unchanged', async () => {
      const raw = Buffer.concat([
        Buffer.from(get(p('headers'), '').slice(0, -2), 'latin1'),
        Buffer.from('X-Utf8: caf\xc3\xa9\r\nX-Bad: \xff\xfe raw\r\nX-Tab: a\tb\r\n\r\n', 'latin1'),
      ]);
      const seen = await probeJson(route, raw);
      assert.equal(seen.headers['x-utf8'], Buffer.from('café').toString('hex'));
      assert.equal(seen.headers['x-bad'], 'fffe20726177');
      assert.equal(seen.headers['x-tab'], hex('a\tb'));
    });

    test('a forged X-Forwarded-For is replaced by the peer address', async () => {
      const seen = await probeJson(route, get(p('headers'), 'X-Forwarded-For: 6.6.6.6\r\n'));
      assert.equal(seen.headers['x-forwarded-for'], hex('127.0.0.1'));
      assert.equal(seen.remoteAddress, '127.0.0.1');
    });

    test('a binary body with NUL bytes is echoed byte for byte', async () => {
      const body = Buffer.from([0, 1, 2, 255, 0, 10, 13, 0x80, 0x41]);
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(Buffer.concat([Buffer.from(
          `POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`),
        body]));
        const res = await conn.readResponse({ timeoutMs: 10_000 });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, body);
      } finally {
        conn.close();
      }
    });

    test('keep-alive: two requests share one connection id', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(get(p('headers')));
        const a = JSON.parse((await conn.readResponse()).body.toString());
        await conn.write(get(p('headers')));
        const b = JSON.parse((await conn.readResponse()).body.toString());
        assert.ok(a.connId);
        assert.equal(a.connId, b.connId);
        assert.equal(conn.closed, false);
      } finally {
        conn.close();
      }
    });

    test('pipelined requests are answered in order', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(get(p('headers?n=1')) + get(p('headers?n=2')) + get(p('headers?n=3')));
        const urls = [];
        for (let i = 0; i < 3; i++) {
          urls.push(JSON.parse((await conn.readResponse()).body.toString()).url);
        }
        assert.deepEqual(urls, [1, 2, 3].map((n) => p(`headers?n=${n}`)));
      } finally {
        conn.close();
      }
    });

    test('HTTP/1.0 without keep-alive is answered, then closed', async () => {
      const r = await rawRequest(m2.httpPort, `GET ${p('headers')} HTTP/1.0\r\n\r\n`,
        { timeoutMs: 10_000 });
      assert.equal(r.closed, true);
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/);
      // No Host from the client: m2fleet supplies one for the app.
      assert.match(r.data.toString('latin1'), /"host":"6c6f63616c686f7374"/);
    });

    test('a response with Connection: close closes the client connection', async () => {
      const r = await rawRequest(m2.httpPort, get(p('close')), { timeoutMs: 10_000 });
      assert.equal(r.closed, true);
      assert.match(r.data.toString('latin1'), /\r\n\r\nok$/);
    });

    test('an app destroying its socket closes the client connection', async () => {
      const r = await rawRequest(m2.httpPort, get(p('destroy')), { timeoutMs: 10_000 });
      assert.equal(r.closed, true);
      assert.match(r.data.toString('latin1'), /partial/);
    });

    test('HEAD, 204 and 304 carry no body, and keep-alive holds', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(`HEAD ${p('status?code=200')} HTTP/1.1\r\nHost: x\r\n\r\n`);
        const head = await conn.readResponse({ noBody: true });
        assert.equal(head.status, 200);
        for (const code of [204, 304]) {
          await conn.write(get(p(`status?code=${code}`)));
          const res = await conn.readResponse();
          assert.equal(res.status, code);
          assert.equal(res.body.length, 0);
        }
        await conn.write(get(p('headers')));
        const last = await conn.readResponse();
        assert.equal(last.status, 200);
        // Nothing stray after the bodiless responses corrupted the stream.
        assert.equal(conn.received().length, 0);
      } finally {
        conn.close();
      }
    });

    test('an app that throws gives a 500 and the next request is served', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(get(p('throw')));
        assert.equal((await conn.readResponse()).status, 500);
      } finally {
        conn.close();
      }
      const seen = await probeJson(route, get(p('headers')));
      assert.equal(seen.method, 'GET');
    });

    test('duplicate Content-Length is refused with 400', async () => {
      const r = await rawRequest(m2.httpPort,
        `POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`,
        { timeoutMs: 10_000, until: (d) => d.includes('\r\n\r\n') });
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
    });

    test('an unparsable Content-Length gives the app an empty body', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(`POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`);
        const res = await conn.readResponse({ timeoutMs: 10_000 });
        assert.equal(res.status, 200);
        assert.equal(res.body.length, 0);
      } finally {
        conn.close();
      }
    });

    test('a client that gives up mid-upload leaves no temp file and no harm', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      await conn.write(`POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n`);
      await conn.write(Buffer.alloc(300_000, 7));
      await new Promise((r) => setTimeout(r, 200));
      conn.close();
      const seen = await probeJson(route, get(p('headers')));
      assert.equal(seen.method, 'GET');
      for (let i = 0; i < 50; i++) {
        const left = readdirSync(m2.uploadDir).filter((f) => f.startsWith('upload.')
          && f !== 'upload.SECRET');
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(readdirSync(m2.uploadDir).filter((f) => f.startsWith('upload.')
        && f !== 'upload.SECRET'), []);
    });

    test('Expect: 100-continue gets exactly one 100 Continue', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(`POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n`
          + 'Expect: 100-continue\r\n\r\n');
        await conn.waitUntil((d) => d.includes('100 Continue'), 10_000);
        await conn.write('hello');
        await conn.waitUntil((d) => d.includes('hello'), 10_000);
        const text = conn.received().toString('latin1');
        assert.equal(text.split('100 Continue').length - 1, 1);
        assert.match(text, /200 OK/);
      } finally {
        conn.close();
      }
    });

    test('a forged upload-done header is refused and the file is not read', async () => {
      const secret = join(m2.uploadDir, 'upload.SECRET');
      writeFileSync(secret, 'TOP-SECRET');
      const r = await rawRequest(m2.httpPort,
        get(p('echo'), 'X-Mongrel2-Upload-Start: /tmp/upload.SECRET\r\n'
          + 'X-Mongrel2-Upload-Done: /tmp/upload.SECRET\r\n'),
        { timeoutMs: 10_000, until: (d) => d.includes('\r\n\r\n') });
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
      assert.doesNotMatch(r.data.toString('latin1'), /TOP-SECRET/);
      assert.equal(existsSync(secret), true, 'a forged request must not delete files');
    });

    test('a 5 MB upload through the temp store is echoed exactly and deleted', async () => {
      const body = Buffer.alloc(5 * 1024 * 1024);
      for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
      const res = await fetch(`http://127.0.0.1:${m2.httpPort}${p('echo')}`,
        { method: 'POST', body });
      assert.equal(res.status, 200);
      const got = Buffer.from(await res.arrayBuffer());
      assert.equal(got.length, body.length);
      assert.ok(got.equals(body));
      const left = readdirSync(m2.uploadDir).filter((f) => f.startsWith('upload.')
        && f !== 'upload.SECRET');
      assert.deepEqual(left, []);
    });

    test('a chunked upload arrives de-chunked', async () => {
      const r = await rawRequest(m2.httpPort,
        `POST ${p('echo')} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`
        + '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
        { timeoutMs: 10_000, until: (d) => d.includes('hello world') });
      assert.match(r.data.toString('latin1'), /content-length: 11\r\n/i);
      assert.match(r.data.toString('latin1'), /\r\n\r\nhello world$/);
    });

    test('200 quick writes reach a slow reader whole', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(get(p('chunks?n=200&size=1000')));
        await new Promise((r) => setTimeout(r, 300));
        const res = await conn.readResponse({ timeoutMs: 20_000 });
        assert.equal(res.status, 200);
        assert.equal(res.body.length, 200 * 1000);
        for (let i = 0; i < 200; i++) assert.equal(res.body[i * 1000], i % 256);
      } finally {
        conn.close();
      }
    });

    test('a client that goes away aborts the request in flight', async () => {
      const id = `${route}-${Date.now()}`;
      const conn = await RawConnection.connect(m2.httpPort);
      await conn.write(get(p(`slow?id=${id}`)));
      await new Promise((r) => setTimeout(r, 300));
      conn.close();
      let seen: any[] = [];
      for (let i = 0; i < 50 && seen.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const state = await probeJson(route, get(p('aborted')));
        seen = state.aborted.filter((a: any) => a.id === id);
      }
      assert.deepEqual(seen, [{ id, aborted: true }]);
    });
  });
}

test('the first request after start-up is answered', async () => {
  const late = await startMongrel2({});
  try {
    const f = await startFleet(zeromqArgs(late, 'json'));
    try {
      const res = await fetch(`http://127.0.0.1:${late.httpPort}/json/first?format=json`);
      assert.equal(res.status, 200);
      const seen = await res.json() as { sender: string };
      assert.equal(seen.sender, late.handlers.json.sendIdent);
    } finally {
      await f.stop();
    }
  } finally {
    await late.stop();
  }
});

test('the 50 MB download arrives whole', async () => {
  const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/download?mb=50`);
  assert.equal(res.status, 200);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.length;
  }
  assert.equal(size, 50 * 1024 * 1024);
  const { patternBytes } = await import(PROBE);
  const expected = createHash('sha256').update(patternBytes(size)).digest('hex');
  assert.equal(hash.digest('hex'), expected);
});

test('pipelined requests behind a response that closes the connection give their in-flight slots back', async () => {
  // Node never starts the responses queued behind a `Connection: close`
  // one; with --max-inflight 2 each such connection used to keep two
  // slots forever, so after one of them the unit answered nothing more.
  // Its own Mongrel2: the file's fleet must not answer for this one.
  const alone = await startMongrel2({});
  const own = await startFleet([...zeromqArgs(alone), '--module', PROBE, '--max-inflight', '2']);
  try {
    for (let round = 0; round < 3; round++) {
      const conn = await RawConnection.connect(alone.httpPort);
      await conn.write(get('/json/close') + get('/json/headers?a=1') + get('/json/headers?a=2'));
      const first = await conn.readResponse({ timeoutMs: 10_000 });
      assert.equal(first.status, 200);
      assert.ok(await conn.waitClosed(10_000), 'the connection closes after the close response');
    }
    const res = await fetch(`http://127.0.0.1:${alone.httpPort}/json/headers`, {
      signal: AbortSignal.timeout(10_000), headers: { connection: 'close' },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  } finally {
    await own.stop();
    await alone.stop();
  }
});
