// The fleet through a real Mongrel2: processes × threads, supervision,
// graceful reload and stop, and the recycling limits.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT, startFleet, type FleetProcess } from '../helpers/fleet.ts';
import { freePort } from '../helpers/ports.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const APP = join(REPO_ROOT, 'test/fixtures/fleet-app.mjs');

interface Who { pid: number; thread: number; connId: string | null }

let m2: Mongrel2Instance;

before(async () => {
  m2 = await startMongrel2({});
});
after(async () => {
  await m2?.stop();
});

function zeromq(): string[] {
  return zeromqArgs(m2, 'json');
}

async function who(path = 'whoami', timeoutMs = 10_000): Promise<Who> {
  const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/${path}`, {
    signal: AbortSignal.timeout(timeoutMs),
    headers: { connection: 'close' },
  });
  assert.equal(res.status, 200);
  return await res.json() as Who;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const key = (w: Who): string => `${w.pid}/${w.thread}`;

describe('-p 2 --threads 2', () => {
  let fleet: FleetProcess;
  before(async () => {
    fleet = await startFleet([...zeromq(), '--module', APP, '-p', '2', '--threads', '2',
      '--mercy', '5s'], { readyTimeoutMs: 30_000 });
  });
  after(async () => { await fleet?.stop(); });

  test('gives four units, each with its own identity, and requests reach all four', async () => {
    const ready = fleet.logs().filter((r) => r.msg === 'unit ready');
    assert.equal(new Set(ready.map((r) => r.unit)).size, 4);
    const seen = new Set<string>();
    for (let i = 0; i < 80 && seen.size < 4; i++) seen.add(key(await who()));
    assert.equal(seen.size, 4, [...seen].join(' '));
    assert.equal(new Set([...seen].map((k) => k.split('/')[0])).size, 2);
  });

  test('a CPU-bound request leaves the other units answering', async () => {
    let spinning = true;
    const spin = who('spin?ms=3000', 20_000).finally(() => { spinning = false; });
    await new Promise((r) => setTimeout(r, 200));
    const during: Who[] = [];
    await Promise.all(Array.from({ length: 6 }, () => who('whoami', 20_000).then((w) => {
      if (spinning) during.push(w);
    })));
    const spun = await spin;
    assert.ok(during.length >= 2, `only ${during.length} answered while one unit spun`);
    assert.ok(during.every((w) => key(w) !== key(spun)));
    // Threads are real threads: the spinner's own process answered too.
    assert.ok(during.some((w) => w.pid === spun.pid && w.thread !== spun.thread),
      `no answer from the spinner's other thread: ${JSON.stringify(during)}`);
  });
});

describe('supervision', () => {
  let fleet: FleetProcess;
  before(async () => {
    fleet = await startFleet([...zeromq(), '--module', APP, '-p', '2', '--mercy', '5s'],
      { readyTimeoutMs: 30_000 });
  });
  after(async () => { await fleet?.stop(); });

  test('kill -9 of a process is repaired while the other serves', async () => {
    const before = new Set<number>();
    for (let i = 0; i < 20 && before.size < 2; i++) before.add((await who()).pid);
    const victim = [...before][0]!;
    process.kill(victim, 'SIGKILL');
    // A request Mongrel2 had already pushed to the killed process dies with
    // it; once the master has seen the death, everything is answered.
    await fleet.waitForLog((r) => r.msg === 'process exited; restarting'
      && r.workerPid === victim, 10_000);
    const served: Who[] = [];
    for (let i = 0; i < 10; i++) served.push(await who());
    assert.ok(served.every((w) => w.pid !== victim));
    const fresh = await until('a restarted process', async () => {
      const w = await who();
      return before.has(w.pid) ? undefined : w;
    });
    assert.notEqual(fresh.pid, victim);
  });

  test('SIGHUP during a steady stream of requests answers every one', async () => {
    const before = new Set<number>();
    for (let i = 0; i < 10; i++) before.add((await who()).pid);
    let stop = false;
    let failures = 0;
    let answered = 0;
    const seenAfter = new Set<number>();
    const stream = (async () => {
      for (let i = 0; i < 3000 && !stop; i++) {
        try {
          const w = await who('whoami', 15_000);
          answered++;
          seenAfter.add(w.pid);
        } catch {
          failures++;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    process.kill(fleet.pid, 'SIGHUP');
    await fleet.waitForLog((r) => r.msg === 'old process drained and exited', 30_000);
    await until('the second old process to exit', async () =>
      fleet.logs().filter((r) => r.msg === 'old process drained and exited').length >= 2
        ? true : undefined, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await stream;
    assert.equal(failures, 0, `${failures} of ${answered + failures} requests failed`);
    assert.ok(answered > 50, `only ${answered} requests answered`);
    assert.ok([...seenAfter].some((pid) => !before.has(pid)), 'new processes served');
  });
});

describe('repeated reloads', () => {
  test('three SIGHUPs during a stream of 1 MB answers lose and corrupt nothing', async () => {
    const fleet = await startFleet([...zeromq(), '--module', join(REPO_ROOT,
      'test/fixtures/probe-app.mjs'), '-p', '2', '--threads', '2', '--mercy', '5s'],
    { readyTimeoutMs: 30_000 });
    try {
      let done = false;
      const results: (number | string)[] = [];
      const stream = (async () => {
        for (let i = 0; i < 400 && !done; i++) {
          try {
            const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/download?mb=1`,
              { signal: AbortSignal.timeout(15_000) });
            results.push((await res.arrayBuffer()).byteLength);
          } catch (err) {
            results.push(String(err));
          }
        }
      })();
      for (let h = 0; h < 3; h++) {
        await new Promise((r) => setTimeout(r, 400));
        process.kill(fleet.pid, 'SIGHUP');
        // Each reload replaces both processes.
        await until(`reload ${h + 1} done`, async () => (fleet.logs()
          .filter((r) => r.msg === 'old process drained and exited').length >= 2 * (h + 1)
          ? true : undefined), 30_000);
      }
      done = true;
      await stream;
      assert.ok(results.length > 10, `only ${results.length} requests`);
      assert.deepEqual(results.filter((r) => r !== 1024 * 1024), []);
    } finally {
      await fleet.stop();
    }
  });
});

describe('SIGHUP re-reads --config', () => {
  test('a changed file rolls the fleet onto it; a broken one keeps the running config', async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'm2fleet-reconf-'));
    const file = join(dir, 'fleet.json');
    const h = m2.handlers.json;
    const write = (extra: Record<string, unknown>): void => writeFileSync(file, JSON.stringify({
      zeromq: `${h.sendSpec},${h.recvSpec}`, module: APP, processes: 1, threads: 1, mercy: '5s', ...extra,
    }));
    write({});
    const fleet = await startFleet(['--config', file], { readyTimeoutMs: 30_000 });
    try {
      const threadsSeen = async (n: number): Promise<boolean> => {
        const seen = new Set<string>();
        for (let i = 0; i < 40 && seen.size < n; i++) seen.add(key(await who()));
        return seen.size >= n;
      };
      assert.equal(await threadsSeen(2), false, 'one unit before the change');
      write({ threads: 2 });
      process.kill(fleet.pid, 'SIGHUP');
      await fleet.waitForLog((r) => r.msg === 'reconfigure: rolling' && r.threads === 2, 10_000);
      await until('two units answering', async () => ((await threadsSeen(2)) ? true : undefined));

      write({ threads: 'many' });
      process.kill(fleet.pid, 'SIGHUP');
      const err = await fleet.waitForLog((r) => r.msg === 'reload: the configuration has an error; keeping the running one', 10_000);
      assert.match(String(err.err), /threads/);
      // The running fleet (two units) goes on serving.
      assert.equal(await threadsSeen(2), true);

      write({ threads: 2, stats: '127.0.0.1:1' });
      process.kill(fleet.pid, 'SIGHUP');
      const warn = await fleet.waitForLog((r) => r.msg === 'reload: these settings change at the next restart only', 10_000);
      assert.deepEqual(warn.keys, ['stats']);
    } finally {
      await fleet.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('graceful stop', () => {
  test('SIGTERM lets a slow request finish, then exits 0', async () => {
    const fleet = await startFleet([...zeromq(), '--module', APP, '--mercy', '10s']);
    try {
      const slow = who('slow?ms=1500', 20_000);
      await new Promise((r) => setTimeout(r, 300));
      const code = fleet.stop('SIGTERM', 20_000);
      const answer = await slow;
      assert.equal((answer as { slept?: number } & Who).slept, 1500);
      assert.equal(await code, 0);
    } finally {
      await fleet.stop();
    }
  });
});

describe('recycling', () => {
  test('--max-requests replaces the process after that many requests', async () => {
    const fleet = await startFleet([...zeromq(), '--module', APP, '--max-requests', '5']);
    try {
      const first = (await who()).pid;
      for (let i = 0; i < 6; i++) await who();
      await fleet.waitForLog((r) => r.msg === 'replacing process' && r.reason === 'max-requests',
        10_000);
      const next = await until('a new pid', async () => {
        const w = await who();
        return w.pid === first ? undefined : w;
      });
      assert.notEqual(next.pid, first);
    } finally {
      await fleet.stop();
    }
  });

  test('--reload-on-rss replaces a process that is over the limit', async () => {
    const fleet = await startFleet([...zeromq(), '--module', APP, '--reload-on-rss', '1']);
    try {
      await fleet.waitForLog((r) => r.msg === 'replacing process' && r.reason === 'reload-on-rss',
        15_000);
      assert.equal((await who()).connId !== undefined, true);
    } finally {
      await fleet.stop();
    }
  });

  test('--harakiri kills a process stuck on one request, logs the request, and replaces it',
    async () => {
      const fleet = await startFleet([...zeromq(), '--module', APP, '--harakiri', '1s']);
      try {
        const stuck = fetch(`http://127.0.0.1:${m2.httpPort}/json/spin?ms=60000`,
          { signal: AbortSignal.timeout(20_000) }).then((r) => r.status);
        const record = await fleet.waitForLog((r) => r.msg === 'harakiri', 15_000);
        assert.match(String(record.request), /^GET \/json\/spin\?ms=60000$/);
        await fleet.waitForLog((r) => r.msg === 'process ready'
          && r.workerPid !== record.workerPid, 15_000);
        const w = await who();
        assert.ok(w.pid > 0);
        // The stuck client is told, instead of waiting for its timeout.
        assert.equal(await stuck, 503);
      } finally {
        await fleet.stop();
      }
    });
});

describe('stats', () => {
  test('/metrics is Prometheus text and m2fleet status shows the units', async () => {
    const port = await freePort();
    const fleet = await startFleet([...zeromq(), '--module', APP, '--threads', '2',
      '--stats', `127.0.0.1:${port}`]);
    try {
      for (let i = 0; i < 5; i++) await who();
      const text = await until('metrics with requests', async () => {
        const t = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /m2fleet_requests_total\{[^}]*\} [1-9]/.test(t) ? t : undefined;
      });
      for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
        assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eInfa]+$/, line);
      }
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      const { execFileSync } = await import('node:child_process');
      const table = execFileSync(process.execPath,
        [join(REPO_ROOT, 'dist/node/cli.js'), 'status', '--stats', `127.0.0.1:${port}`],
        { encoding: 'utf8', timeout: 10_000 });
      assert.match(table, /ready/);
      assert.equal(table.split('\n').filter((l) => /\bready\b/.test(l)).length >= 2, true);
    } finally {
      await fleet.stop();
    }
  });
});
