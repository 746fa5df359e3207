// Download credits and streamed uploads with several units. Mongrel2 deals
// credits notices and upload pieces round-robin like requests, so most of
// them reach a unit that does not hold the connection; the units relay
// them to each other (threads through their process, processes through
// the master) or every stream would stall at the first 100 KiB.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT, startFleet, type FleetProcess } from '../helpers/fleet.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const PROBE = join(REPO_ROOT, 'test/fixtures/probe-app.mjs');
let m2: Mongrel2Instance;
let fleet: FleetProcess;

before(async () => {
  m2 = await startMongrel2({ flowControl: 1, uploadStream: 1 });
  fleet = await startFleet([...zeromqArgs(m2, 'json'),
    '--module', PROBE, '--mongrel2-chroot', m2.dir, '-p', '2', '--threads', '2',
    '--mercy', '3s'], { readyTimeoutMs: 30_000 });
});
after(async () => {
  await fleet?.stop();
  await m2?.stop();
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('eight 1 MB downloads on fresh connections all complete with -p 2 --threads 2', async () => {
  const { patternBytes } = await import(PROBE);
  for (let i = 0; i < 8; i++) {
    const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/download?mb=1`, {
      headers: { connection: 'close' }, signal: AbortSignal.timeout(20_000),
    });
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(got.length, 1024 * 1024, `download ${i}`);
    assert.equal(sha(got), sha(patternBytes(got.length)));
  }
});

test('four streamed 1 MB uploads all echo byte for byte with -p 2 --threads 2', async () => {
  for (let i = 0; i < 4; i++) {
    const body = Buffer.alloc(1024 * 1024);
    for (let j = 0; j < body.length; j++) body[j] = (j * 13 + i) & 0xff;
    const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/echo`, {
      method: 'POST', body, headers: { connection: 'close' }, signal: AbortSignal.timeout(20_000),
    });
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(sha(got), sha(body), `upload ${i}`);
  }
});

test('with credits and four units, a keep-alive connection stays open: the master routes it to one unit', async () => {
  const { RawConnection } = await import('../helpers/http-client.ts');
  const conn = await RawConnection.connect(m2.httpPort);
  try {
    for (let i = 0; i < 12; i++) {
      // Large enough that credits notices come back for each response.
      await conn.write(`GET /json/download?mb=0.25&i=${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const res = await conn.readResponse({ timeoutMs: 20_000 });
      assert.equal(res.status, 200);
      assert.equal(res.body.length, 256 * 1024, `response ${i}`);
      assert.notEqual(res.headers['connection'], 'close', `response ${i} closed the connection`);
    }
    assert.equal(conn.closed, false);
  } finally {
    conn.close();
  }
});

test('pipelined requests on one connection are answered in order by four units', async () => {
  const { RawConnection } = await import('../helpers/http-client.ts');
  const conn = await RawConnection.connect(m2.httpPort);
  try {
    // Mongrel2 deals them over the units' lanes; one reader routes them all
    // to the unit holding the connection, in the order they were sent.
    let batch = '';
    for (let i = 0; i < 20; i++) batch += `GET /json/headers?i=${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
    await conn.write(batch);
    for (let i = 0; i < 20; i++) {
      const res = await conn.readResponse({ timeoutMs: 20_000 });
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body.toString()).url, `/json/headers?i=${i}`);
    }
  } finally {
    conn.close();
  }
});

test('-p 1: a reload in the middle of a credited download still finishes it', async () => {
  // After the switch Mongrel2's credits notices for the old process's
  // download reach the new process, which must relay them through the
  // master (they were relayed only with -p 2 or more: the download stalled).
  const alone = await startMongrel2({ flowControl: 1 });
  const own = await startFleet([...zeromqArgs(alone, 'json'), '--module', PROBE, '--mercy', '10s'],
    { readyTimeoutMs: 30_000 });
  const sock = connect(alone.httpPort, '127.0.0.1');
  try {
    const chunks: Buffer[] = [];
    let received = 0;
    let closed = false;
    sock.on('data', (c: Buffer) => { chunks.push(c); received += c.length; });
    sock.on('close', () => { closed = true; });
    sock.write('GET /json/download?mb=8 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    const until = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what} (${received} bytes)`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until('the first 200 KiB', () => received > 200 * 1024, 10_000);
    // The client stops reading, so the download waits on credits.
    sock.pause();
    const ready = (): number => own.logs().filter((r) => r.msg === 'process ready').length;
    process.kill(own.pid, 'SIGHUP');
    await until('the replacement', () => ready() >= 2, 20_000);
    sock.resume();
    await until('the whole download', () => closed, 30_000);
    const raw = Buffer.concat(chunks);
    const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    assert.equal(body.length, 8 * 1024 * 1024);
    const { patternBytes } = await import(PROBE);
    assert.equal(sha(body), sha(patternBytes(body.length)));
  } finally {
    sock.destroy();
    await own.stop();
    await alone.stop();
  }
});
