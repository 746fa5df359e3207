// Streaming under Mongrel2's flow settings: download.flow_control (credits
// for replies) and upload.stream (credits for request bodies), through a
// real Mongrel2 and both header protocols.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFleet, REPO_ROOT, type FleetProcess } from '../helpers/fleet.ts';
import { RawConnection } from '../helpers/http-client.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const PROBE = join(REPO_ROOT, 'test/fixtures/probe-app.mjs');

let m2: Mongrel2Instance;
let fleet: FleetProcess;

before(async () => {
  m2 = await startMongrel2({ flowControl: 1, uploadStream: 1, contentLength: 20480 });
  fleet = await startFleet([
    ...zeromqArgs(m2),
    '--module', PROBE,
    '--mongrel2-chroot', m2.dir,
  ]);
});

after(async () => {
  await fleet?.stop();
  await m2?.stop();
});

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

for (const route of ['json', 'tnet'] as const) {
  describe(`with flow control through the ${route} handler`, () => {
    test('a 50 MB piped download arrives whole, and the app felt back-pressure', async () => {
      const res = await fetch(`http://127.0.0.1:${m2.httpPort}/${route}/download?mb=50`);
      assert.equal(res.status, 200);
      const got = Buffer.from(await res.arrayBuffer());
      const { patternBytes } = await import(PROBE);
      assert.equal(got.length, 50 * 1024 * 1024);
      assert.equal(sha(got), sha(patternBytes(got.length)));
    });

    test('a reader that pauses still gets every byte of 2,000 writes', async () => {
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(`GET /${route}/chunks?n=2000&size=1024 HTTP/1.1\r\nHost: x\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 500));
        const res = await conn.readResponse({ timeoutMs: 30_000 });
        assert.equal(res.body.length, 2000 * 1024);
        for (let i = 0; i < 2000; i++) assert.equal(res.body[i * 1024], i % 256);
        await conn.write(`GET /${route}/aborted HTTP/1.1\r\nHost: x\r\n\r\n`);
        const state = JSON.parse((await conn.readResponse()).body.toString());
        // 2 MB against 100 KiB of credits: write() must have said "wait".
        assert.ok(state.backPressure.some((b: { sawFalse?: boolean; drained?: boolean }) =>
          b.drained === true), JSON.stringify(state.backPressure));
      } finally {
        conn.close();
      }
    });

    test('a streamed 3 MB upload (upload.stream) is echoed byte for byte', async () => {
      const body = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7 + 3) & 0xff;
      const res = await fetch(`http://127.0.0.1:${m2.httpPort}/${route}/echo`,
        { method: 'POST', body });
      assert.equal(res.status, 200);
      const got = Buffer.from(await res.arrayBuffer());
      assert.equal(got.length, body.length);
      assert.equal(sha(got), sha(body));
    });

    test('a streamed chunked upload is echoed byte for byte', async () => {
      const parts = [Buffer.alloc(30_000, 1), Buffer.alloc(50_000, 2), Buffer.from('end')];
      const framed = Buffer.concat(parts.flatMap((p) => [
        Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n'),
      ]).concat([Buffer.from('0\r\n\r\n')]));
      const conn = await RawConnection.connect(m2.httpPort);
      try {
        await conn.write(Buffer.concat([Buffer.from(
          `POST /${route}/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`),
        framed]));
        const res = await conn.readResponse({ timeoutMs: 20_000 });
        assert.equal(res.status, 200);
        assert.equal(sha(res.body), sha(Buffer.concat(parts)));
      } finally {
        conn.close();
      }
    });
  });
}
