import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { freePorts } from '../helpers/ports.js';

// Runs the built CLI, as `npm run build` leaves it.
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(ROOT, 'dist/node/cli.js');
// A guard, not an expectation: a CLI that hangs is stopped and reported.
const GUARD_MS = 20_000;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stopped: boolean;
}

/** Runs `node dist/node/cli.js ...args` with a clean environment. */
function runCli(args: string[]): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    // No M2FLEET_* or NODE_DEBUG from the caller's shell may leak in.
    const env = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' };
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env });
    let stdout = '';
    let stderr = '';
    let stopped = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const guard = setTimeout(() => {
      stopped = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, GUARD_MS);
    child.once('error', (err) => {
      clearTimeout(guard);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr, stopped });
    });
  });
}

function assertExited(out: Outcome): void {
  assert.equal(out.stopped, false,
    `the CLI did not exit by itself; stderr: ${out.stderr}`);
}

describe('m2fleet command line', () => {
  let pair = '';

  before(async () => {
    // Free local ports: connecting there reaches nothing and leaves the host.
    const [send, recv] = await freePorts(2);
    pair = `tcp://127.0.0.1:${send},tcp://127.0.0.1:${recv}`;
  });

  it('when --help is given then it lists the endpoint and module flags and exits 0', async () => {
    const out = await runCli(['--help']);
    assertExited(out);
    assert.equal(out.code, 0);
    for (const flag of ['--zeromq', '--zmq', '--mongrel2', '--module']) {
      assert.match(out.stdout, new RegExp(`^\\s+${flag} <`, 'm'), `help lacks ${flag}`);
    }
  });

  it('when an unknown flag is given then it exits 2 naming the flag', async () => {
    const out = await runCli(['--zeromq', pair, '--no-such-flag']);
    assertExited(out);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /--no-such-flag/);
  });

  it('when --zeromq has no RECV_SPEC then it exits 2 saying what is expected', async () => {
    const out = await runCli(['--zeromq', 'tcp://127.0.0.1:9999']);
    assertExited(out);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /zeromq \(--zeromq\): expected SEND_SPEC,RECV_SPEC/);
    assert.match(out.stderr, /"tcp:\/\/127\.0\.0\.1:9999"/);
  });

  it('when --zeromq is missing then it exits 2 saying one is needed', async () => {
    const out = await runCli(['--module', 'app.mjs']);
    assertExited(out);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /zeromq \(--zeromq\): at least one SEND_SPEC,RECV_SPEC \(or --http, --socket, --fastcgi-socket\) is needed/);
  });

  it('when a choice flag has a bad value then it exits 2 naming the value', async () => {
    const out = await runCli(['--zeromq', pair, '--flow-control', 'sometimes']);
    assertExited(out);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /sometimes/);
  });

  describe('when --module points to a missing file', () => {
    let dir = '';
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-cli-'));
    });
    after(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('then it exits 1 with a JSON error line naming the file and M2F_APP_LOAD',
      async () => {
        const missing = path.join(dir, 'missing-app.mjs');
        const out = await runCli(['--zeromq', pair, '--module', missing]);
        assertExited(out);
        assert.equal(out.code, 1);
        assert.equal(out.signal, null);
        const records = out.stderr.split('\n').filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        const loadErrors = records.filter((r) => (r['err'] as { code?: string } | undefined)
          ?.code === 'M2F_APP_LOAD');
        assert.equal(loadErrors.length, 1, `expected one load error, got:\n${out.stderr}`);
        assert.equal(loadErrors[0]!['level'], 50);
        assert.ok(JSON.stringify(loadErrors[0]).includes(missing), 'no file name');
        // The master gives up at once instead of restarting a process that
        // can never start.
        assert.ok(records.some((r) => String(r['msg']).startsWith('cannot start')));
        assert.equal(records.filter((r) => r['msg'] === 'process starting').length, 1);
        assert.ok(!out.stderr.includes('    at '), 'a stack trace was printed');
      });
  });

  describe('cluster mode', () => {
    let state = '';
    before(() => {
      state = mkdtempSync(path.join(tmpdir(), 'm2fleet-cli-cluster-'));
    });
    after(() => {
      rmSync(state, { recursive: true, force: true });
    });

    it('when a bare node has no cluster key then it exits 2 saying how to give one', async () => {
      const out = await runCli(['--cluster', '239.1.2.3:1717', '--cluster-state-dir', state]);
      assertExited(out);
      assert.equal(out.code, 2);
      assert.match(out.stderr, /M2F_CLUSTER_KEY/);
      assert.match(out.stderr, /--cluster-key-file/);
      assert.match(out.stderr, /M2FLEET_CLUSTER_KEY/);
      assert.doesNotMatch(out.stderr, /process starting/);
    });

    it('when the group is not GROUP:PORT then it exits 2 naming the key', async () => {
      const out = await runCli(['--cluster', 'everywhere']);
      assertExited(out);
      assert.equal(out.code, 2);
      assert.match(out.stderr, /cluster \(--cluster\): expected GROUP:PORT/);
    });

    it('when keygen runs then it prints a key line a node accepts', async () => {
      const out = await runCli(['cluster', 'keygen', '--id', '7']);
      assert.equal(out.code, 0);
      assert.match(out.stdout.trim(), /^7 [A-Za-z0-9+/]{43}=$/);
    });
  });

  describe('check', () => {
    let dir = '';
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-cli-check-'));
    });
    after(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const literal = (text: string): RegExp =>
      new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const file = (name: string, text: string): string => {
      const p = path.join(dir, name);
      writeFileSync(p, text);
      return p;
    };

    it('when the config file is valid then it exits 0 and sums it up', async () => {
      const p = file('ok.json', JSON.stringify({ zeromq: pair, processes: 3, threads: 2 }));
      const out = await runCli(['check', '--config', p]);
      assertExited(out);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, `${p}: ok (1 endpoint pair(s), 3 process(es) x 2 thread(s))\n`);
    });

    it('when a value is bad then it exits 1 naming the file, the key and the value', async () => {
      const p = file('bad.ini', `[m2fleet]\nzeromq = ${pair}\nmercy = soon\n`);
      const out = await runCli(['check', '--config', p]);
      assertExited(out);
      assert.equal(out.code, 1);
      assert.equal(out.stdout, '');
      assert.match(out.stderr, literal(`invalid config ${p}: mercy (--mercy): expected a duration`));
      assert.match(out.stderr, /"soon"/);
    });

    it('when the file has no extension then --format says how to read it', async () => {
      const p = file('from-ansible', JSON.stringify({ m2fleet: { zeromq: pair } }));
      const without = await runCli(['check', '--config', p]);
      assert.equal(without.code, 1);
      assert.match(without.stderr, /unknown config file type/);
      const json = await runCli(['check', '--config', p, '--format', 'json']);
      assert.equal(json.code, 0, json.stderr);
      const ini = await runCli(['check', '--config', p, '--format', 'ini']);
      assert.equal(ini.code, 1);
      assert.match(ini.stderr, literal(`${p}:1: expected "key = value"`));
    });

    it('when a cluster config names a key file then the key file is checked too', async () => {
      const key = path.join(dir, 'cluster.key');
      const p = file('follower.ini', `[m2fleet]\ncluster = 239.1.2.3:1717\ncluster-key-file = ${key}\n`);
      const missing = await runCli(['check', '--config', p]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, literal(`cluster key file ${key}`));
      const keygen = await runCli(['cluster', 'keygen']);
      writeFileSync(key, keygen.stdout, { mode: 0o600 });
      chmodSync(key, 0o600);
      const ok = await runCli(['check', '--config', p]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /ok \(follower in cluster 239\.1\.2\.3:1717\)/);
    });

    describe('--stats', () => {
      let server: Server;
      let status = 503;
      let address = '';
      before(async () => {
        server = createServer((req, res) => {
          res.writeHead(req.url === '/readyz' ? status : 404).end(
            status === 200 ? 'ready 2/2' : 'not ready: 1 of 2 units ready');
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        address = `127.0.0.1:${(server.address() as { port: number }).port}`;
      });
      after(async () => {
        await new Promise((resolve) => server.close(resolve));
      });

      it('when /readyz answers 503 then it exits 1 with the reason', async () => {
        status = 503;
        const out = await runCli(['check', '--stats', address]);
        assertExited(out);
        assert.equal(out.code, 1);
        assert.match(out.stderr, literal(`${address} not ready: not ready: 1 of 2 units ready`));
      });

      it('when /readyz answers 200 then it exits 0', async () => {
        status = 200;
        const out = await runCli(['check', '--stats', address]);
        assertExited(out);
        assert.equal(out.code, 0, out.stderr);
        assert.equal(out.stdout, `${address}: ready 2/2\n`);
      });

      it('when nothing listens there then it exits 1 saying so', async () => {
        const [port] = await freePorts(1);
        const out = await runCli(['check', '--stats', `127.0.0.1:${port}`]);
        assertExited(out);
        assert.equal(out.code, 1);
        assert.match(out.stderr, /not ready: cannot reach it \(ECONNREFUSED\)/);
      });
    });

    it('when neither --config nor --stats is given then it exits 2', async () => {
      const out = await runCli(['check']);
      assertExited(out);
      assert.equal(out.code, 2);
      assert.match(out.stderr, /give --config FILE or --stats HOST:PORT/);
    });
  });
});
