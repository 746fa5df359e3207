// A unit at its --max-inflight cap must keep reading: the credits notices
// and upload pieces that let its requests finish come on the same socket.
import assert from 'node:assert/strict';
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
    '--module', PROBE, '--mongrel2-chroot', m2.dir, '--max-inflight', '2', '--mercy', '2s']);
});
after(async () => {
  await fleet?.stop();
  await m2?.stop();
});

test('six concurrent 300 KB downloads through a unit capped at 2 all complete', async () => {
  const sizes = await Promise.all(Array.from({ length: 6 }, async () => {
    const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/download?mb=0.3`,
      { signal: AbortSignal.timeout(20_000) });
    return (await res.arrayBuffer()).byteLength;
  }));
  assert.deepEqual(sizes, Array(6).fill(Math.round(0.3 * 1024 * 1024)));
});

test('six concurrent streamed 300 KB uploads through a unit capped at 2 all complete', async () => {
  const body = Buffer.alloc(300_000, 9);
  const sizes = await Promise.all(Array.from({ length: 6 }, async () => {
    const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/echo`,
      { method: 'POST', body, signal: AbortSignal.timeout(20_000) });
    return (await res.arrayBuffer()).byteLength;
  }));
  assert.deepEqual(sizes, Array(6).fill(body.length));
});
