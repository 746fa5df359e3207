// --sched-policy: every thread of the master and of its worker processes
// runs SCHED_BATCH by default; `inherit` leaves the policy it was started
// with. Read from /proc, where the kernel reports each thread's policy.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, test } from 'node:test';
import { CLI_PATH, startFleet, type FleetProcess } from '../helpers/fleet.ts';
import { freePort } from '../helpers/ports.ts';

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

/** Policy of every thread of `pid` (tid → policy). */
function policies(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${tid}/sched`, 'utf8');
    const m = /^policy\s*:\s*(\d+)/m.exec(text);
    assert.ok(m, `no policy line for thread ${tid}`);
    out.set(Number(tid), Number(m[1]));
  }
  return out;
}

function children(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean))
    .map(Number);
}

let fleet: FleetProcess | null = null;
afterEach(async () => {
  await fleet?.stop();
  fleet = null;
});

async function start(extra: string[]): Promise<{ master: number; workers: number[]; port: number }> {
  const port = await freePort();
  fleet = await startFleet(['--http', `127.0.0.1:${port}`, '-p', '2', '--threads', '2', ...extra]);
  const workers = children(fleet.pid);
  assert.equal(workers.length, 2, 'two worker processes');
  // The fleet serves under the policy.
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  return { master: fleet.pid, workers, port };
}

test('by default every thread of the master and its workers runs SCHED_BATCH', {
  skip: process.platform !== 'linux',
}, async () => {
  const { master, workers } = await start([]);
  for (const pid of [master, ...workers]) {
    const all = policies(pid);
    // The worker processes run a controller, two unit threads and ZeroMQ's.
    assert.ok(all.size >= 4, `pid ${pid} has ${all.size} threads`);
    for (const [tid, policy] of all) assert.equal(policy, SCHED_BATCH, `pid ${pid} thread ${tid}`);
  }
});

test('--sched-policy inherit leaves the policy m2fleet was started with', {
  skip: process.platform !== 'linux',
}, async () => {
  const { master, workers } = await start(['--sched-policy', 'inherit']);
  for (const pid of [master, ...workers]) {
    for (const [tid, policy] of policies(pid)) {
      assert.equal(policy, SCHED_OTHER, `pid ${pid} thread ${tid}`);
    }
  }
});

test('started under another policy, batch replaces it and says so; inherit keeps it', {
  skip: process.platform !== 'linux',
}, async () => {
  const SCHED_IDLE = 5;
  for (const [extra, want, said] of [[[], SCHED_BATCH, true], [['--sched-policy', 'inherit'], SCHED_IDLE, false]] as const) {
    const port = await freePort();
    const child = spawn('chrt', ['--idle', '0', process.execPath, CLI_PATH, '--http', `127.0.0.1:${port}`, ...extra],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    try {
      const deadline = Date.now() + 15_000;
      while (!err.includes('"msg":"ready"')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `not ready: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const [tid, policy] of policies(child.pid!)) assert.equal(policy, want, `thread ${tid}`);
      assert.equal(err.includes('replacing the CPU scheduling policy'), said, err);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
});
