// The fleet's sharp edges: unit threads that end, apps that exit or fork,
// the ZeroMQ logger, config files and `m2fleet reload`, through a real
// Mongrel2.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Pull } from 'zeromq';
import { REPO_ROOT, startFleet } from '../helpers/fleet.ts';
import { freePort } from '../helpers/ports.ts';
import { startMongrel2, type Mongrel2Instance, zeromqArgs } from '../helpers/mongrel2.ts';

const APP = join(REPO_ROOT, 'test/fixtures/fleet-app.mjs');
const CLI = join(REPO_ROOT, 'dist/node/cli.js');

let m2: Mongrel2Instance;
let dir: string;

before(async () => {
  m2 = await startMongrel2({});
  dir = mkdtempSync(join(tmpdir(), 'm2fleet-edges-'));
});
after(async () => {
  await m2?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function zeromq(): string[] {
  return zeromqArgs(m2, 'json');
}

async function get(path: string): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${m2.httpPort}/json/${path}`, {
    signal: AbortSignal.timeout(10_000), headers: { connection: 'close' },
  });
  assert.equal(res.status, 200);
  return await res.json() as Record<string, unknown>;
}

function childrenOf(pid: number): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === pid ? [Number(d)] : [];
    } catch {
      return [];
    }
  });
}

describe('unit threads ending', () => {
  test('an app calling process.exit in a thread is replaced without an abort', async () => {
    const fleet = await startFleet([...zeromq(), '--module', APP, '--threads', '2', '--mercy', '3s']);
    try {
      const victim = (await get('exit')).pid as number;
      const record = await fleet.waitForLog((r) => r.msg === 'process exited; restarting'
        && r.workerPid === victim, 20_000);
      // Exit code 1 from the controller, not a signal from an abort.
      assert.equal(record.signal, null);
      assert.equal(record.code, 1);
      await fleet.waitForLog((r) => r.msg === 'process ready' && r.workerPid !== victim, 20_000);
      assert.notEqual((await get('whoami')).pid, victim);
    } finally {
      await fleet.stop();
    }
  });

  test('SIGTERM with two threads drains and exits 0', async () => {
    const fleet = await startFleet([...zeromq(), '--module', APP, '--threads', '2', '--mercy', '5s']);
    const slow = get('slow?ms=800');
    await new Promise((r) => setTimeout(r, 200));
    const code = await fleet.stop('SIGTERM', 20_000);
    assert.equal((await slow).slept, 800);
    assert.equal(code, 0);
    assert.ok(!fleet.stderr().includes('Napi::Error'), 'a unit thread aborted');
  });
});

test('when the master is killed its workers drain and exit without an abort', async () => {
  const fleet = await startFleet([...zeromq(), '--module', APP, '--threads', '2', '--mercy', '2s']);
  const workers = fleet.logs().filter((r) => r.msg === 'process ready')
    .map((r) => Number(r.workerPid));
  process.kill(fleet.pid, 'SIGKILL');
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && workers.some(alive); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const survivors = workers.filter(alive);
  for (const pid of survivors) process.kill(pid, 'SIGKILL');
  // The killed master could not remove its socket directory.
  rmSync(`/tmp/m2fleet-${fleet.pid}`, { recursive: true, force: true });
  assert.deepEqual(survivors, []);
  assert.ok(fleet.stderr().includes('master gone; stopping'));
  assert.ok(!fleet.stderr().includes('Napi::Error'), 'a worker aborted');
});

test('an app that forks its own cluster does not multiply', async () => {
  const fleet = await startFleet([...zeromq(), '--module',
    join(REPO_ROOT, 'test/fixtures/self-cluster-app.mjs'), '--threads', '2']);
  try {
    const seen = await get('x');
    assert.equal(seen.isPrimary, false);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(childrenOf(seen.pid as number), []);
  } finally {
    await fleet.stop();
  }
});

describe('--logger zeromq', () => {
  test('log lines reach the collector, and serving goes on when it is gone', async () => {
    const port = await freePort();
    const collector = new Pull();
    await collector.bind(`tcp://127.0.0.1:${port}`);
    const fleet = await startFleet([...zeromq(), '--module', APP, '--threads', '2',
      '--logger', `zeromq:tcp://127.0.0.1:${port}`, '--access-log'], { waitReady: false });
    try {
      const lines: Record<string, unknown>[] = [];
      collector.receiveTimeout = 20_000;
      const readUntil = async (msg: string): Promise<void> => {
        while (!lines.some((l) => l.msg === msg)) {
          const [frame] = await collector.receive();
          lines.push(JSON.parse(frame!.toString()) as Record<string, unknown>);
        }
      };
      await readUntil('ready');
      await get('whoami');
      await readUntil('access');
      assert.ok(lines.some((l) => l.msg === 'unit ready'));
      const access = lines.find((l) => l.msg === 'access')!;
      assert.equal(access.path, '/json/whoami');
      // Mongrel2's REMOTE_ADDR for the client.
      assert.equal(access.ip, '127.0.0.1');
      collector.close();
      // The collector is gone: requests keep being answered.
      for (let i = 0; i < 200; i++) assert.ok((await get('whoami')).pid);
    } finally {
      if (!collector.closed) collector.close();
      await fleet.stop();
    }
  });
});

test('a config file sets options, and m2fleet reload replaces the processes', async () => {
  const pidfile = join(dir, 'm2fleet.pid');
  const ini = join(dir, 'fleet.ini');
  writeFileSync(ini, [
    '[m2fleet]',
    `zeromq = ${m2.handlers.json.sendSpec},${m2.handlers.json.recvSpec}`,
    `module = ${APP}`,
    'processes = 2',
    `pidfile = ${pidfile}`,
    '',
  ].join('\n'));
  const fleet = await startFleet(['--config', ini]);
  try {
    const ready = fleet.logs().find((r) => r.msg === 'ready')!;
    assert.equal(ready.processes, 2);
    assert.equal(readFileSync(pidfile, 'utf8').trim(), String(fleet.pid));
    const out = execFileSync(process.execPath, [CLI, 'reload', '--pidfile', pidfile],
      { encoding: 'utf8', timeout: 10_000 });
    assert.match(out, /SIGHUP/);
    await fleet.waitForLog((r) => r.msg === 'replacing process' && r.reason === 'reload', 10_000);
    await fleet.waitForLog((r) => r.msg === 'old process drained and exited', 30_000);
    assert.ok((await get('whoami')).pid);
  } finally {
    await fleet.stop();
  }
});

test('a config file with an unknown key is refused by name', () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ zeromq: 'tcp://127.0.0.1:1,tcp://127.0.0.1:2', proceses: 2 }));
  let stderr = '';
  let status = 0;
  try {
    execFileSync(process.execPath, [CLI, '--config', bad], { encoding: 'utf8', timeout: 10_000, stdio: 'pipe' });
  } catch (err) {
    stderr = String((err as { stderr?: string }).stderr);
    status = (err as { status?: number }).status ?? -1;
  }
  assert.equal(status, 2);
  assert.match(stderr, /proceses \(--proceses\): unknown option/);
});

test('a restarted Mongrel2 is served again without restarting m2fleet', async () => {
  // Its own Mongrel2: the restart must not disturb the other tests.
  const own = await startMongrel2({});
  const fleet = await startFleet([...zeromqArgs(own, 'json'), '--module', APP, '-p', '2']);
  try {
    const ask = async (): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${own.httpPort}/json/whoami`, {
        signal: AbortSignal.timeout(3000), headers: { connection: 'close' },
      });
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await ask(), 200);
    const before = own.pid;
    await own.restart();
    assert.notEqual(own.pid, before);
    // The units' sockets reconnect and Mongrel2 subscribes again; until then
    // it answers 502 or the connection fails.
    const deadline = Date.now() + 20_000;
    let served = 0;
    while (served < 6 && Date.now() < deadline) {
      const status = await ask().catch(() => 0);
      if (status === 200) served++;
      else await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(served, 6, 'six answers after the restart (both processes)');
  } finally {
    await fleet.stop();
    await own.stop();
  }
});

test('a second signal exits at once and still removes the socket directory', async () => {
  const fleet = await startFleet([...zeromq(), '--module', APP, '--mercy', '10s']);
  const sockets = `/tmp/m2fleet-${fleet.pid}`;
  assert.ok(existsSync(sockets), 'the master keeps its ipc sockets there');
  process.kill(fleet.pid, 'SIGINT');
  process.kill(fleet.pid, 'SIGTERM');
  assert.equal(await fleet.exited, 1);
  assert.ok(fleet.stderr().includes('second signal; exiting now'));
  assert.equal(existsSync(sockets), false);
});

test('replies to a restarted Mongrel2\'s old connections never reach its new clients', async () => {
  // Mongrel2 numbers its connections from the start again after a restart:
  // a late reply to an old connection id would land on a new client.
  const own = await startMongrel2({});
  const fleet = await startFleet([...zeromqArgs(own, 'json'), '--module', APP]);
  const ask = async (id: string, ms: number): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${own.httpPort}/json/slow?ms=${ms}&id=${id}`, {
      signal: AbortSignal.timeout(8000),
    });
    return String(((await res.json()) as { id: unknown }).id);
  };
  try {
    // Old requests still at the app when Mongrel2 goes away (their clients
    // go with it).
    const old = Array.from({ length: 10 }, (_, i) => ask(`old${i}`, 1500).catch(() => null));
    await new Promise((r) => setTimeout(r, 300));
    await own.restart();
    // New clients get the recycled connection ids and wait while the old
    // replies come due.
    const fresh = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(`new${i}`, 2500)));
    assert.deepEqual(fresh, Array.from({ length: 10 }, (_, i) => `new${i}`));
    await Promise.all(old);
    assert.ok(fleet.logs().some((r) => r.msg === 'lost mongrel2; its connections are closed'));
  } finally {
    await fleet.stop();
    await own.stop();
  }
});
