// Cluster mode end to end on test hosts made of network namespaces: a real
// Mongrel2 on host 1, the main on host 2, two bare followers on hosts 3
// and 4, all on one bridge, multicast on their own veths only.
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateGroupKeyLine } from '../../src/cluster/keys.ts';
import { REPO_ROOT } from '../helpers/fleet.ts';
import { createLan, endChild, netnsAvailable, type Lan } from '../helpers/netns.ts';

const CLI = path.join(REPO_ROOT, 'dist/node/cli.js');
const available = netnsAvailable();
const group = `239.${10 + (randomBytes(1)[0]! % 200)}.${randomBytes(1)[0]! % 250}.${1 + (randomBytes(1)[0]! % 250)}:1717`;

interface Node {
  child: ChildProcess;
  records: Record<string, unknown>[];
  waitFor(match: (r: Record<string, unknown>) => boolean, ms: number): Promise<Record<string, unknown>>;
}

let lan: Lan;
let dir: string;
let keyFile: string;
let app: string;
let mongrel2: ChildProcess;
const m2 = { host: '', port: 6767, send: 9999, recv: 9998 };
const nodes: Node[] = [];

function startNode(ns: string, args: string[]): Node {
  const child = lan.spawn(ns, process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const records: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        records.push({ text: line });
      }
    }
    for (const w of waiters) w();
  });
  child.stdout!.resume();
  const node: Node = {
    child, records,
    waitFor: (match, ms) => new Promise((resolve, reject) => {
      const check = (): void => {
        const found = records.find(match);
        if (found) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching record in ${ms} ms; last:\n${records.slice(-8)
          .map((r) => JSON.stringify(r)).join('\n')}`));
      }, ms);
      waiters.add(check);
      check();
    }),
  };
  nodes.push(node);
  return node;
}

function clusterArgs(host: number, state: string): string[] {
  return ['--cluster', group, '--cluster-name', 'e2e', '--cluster-key-file', keyFile,
    '--cluster-iface', lan.hosts[host]!.address, '--cluster-app-root', path.dirname(app),
    '--cluster-state-dir', path.join(dir, state), '--stats', '127.0.0.1:9191'];
}

/** Runs a script inside a namespace and returns its stdout (JSON). */
function inNamespace(ns: string, script: string): unknown {
  const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module',
    '-e', script], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out);
}

/** `count` sequential requests from host 1; returns the pid that answered each, or an error. */
function requests(count: number): (number | string)[] {
  return inNamespace(lan.hosts[0]!.ns, `
    const out = [];
    for (let i = 0; i < ${count}; i++) {
      try {
        const r = await fetch('http://${m2.host}:${m2.port}/whoami?i=' + i,
          { headers: { connection: 'close' }, signal: AbortSignal.timeout(10000) });
        out.push(r.status === 200 ? (await r.json()).pid : 'status ' + r.status);
      } catch (e) { out.push(String(e.cause?.code ?? e.message)); }
    }
    console.log(JSON.stringify(out));`) as (number | string)[];
}

function workerPids(node: Node): Set<number> {
  return new Set(node.records.filter((r) => r.msg === 'process ready')
    .map((r) => Number(r.workerPid)));
}

function metricsOf(host: number): string {
  return inNamespace(lan.hosts[host]!.ns, `
    const r = await fetch('http://127.0.0.1:9191/metrics');
    console.log(JSON.stringify(await r.text()));`) as string;
}

describe('cluster mode across network namespaces', { skip: available.ok ? false : available.why }, () => {
  before(async () => {
    lan = await createLan(4);
    dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-e2e-'));
    keyFile = path.join(dir, 'cluster.key');
    writeFileSync(keyFile, generateGroupKeyLine(1) + '\n', { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    mkdirSync(path.join(dir, 'apps'));
    app = path.join(dir, 'apps', 'app.mjs');
    copyFileSync(path.join(REPO_ROOT, 'test/fixtures/fleet-app.mjs'), app);
    // Mongrel2 on host 1, bound to its LAN address.
    m2.host = lan.hosts[0]!.address;
    const m2dir = path.join(dir, 'm2');
    for (const d of ['run', 'logs', 'tmp']) mkdirSync(path.join(m2dir, d), { recursive: true });
    const uuid = randomUUID();
    const conf = execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts/mongrel2-conf.mjs'),
      '--port', String(m2.port), '--bind', m2.host, '--uuid', uuid,
      '--route', `/=json,tcp://${m2.host}:${m2.send},tcp://${m2.host}:${m2.recv},e2e-ident`,
      '--setting', 'server.daemonize=0', '--setting', 'zeromq.threads=1'], { encoding: 'utf8' });
    writeFileSync(path.join(m2dir, 'm2.conf'), conf);
    execFileSync('m2sh', ['load', '-config', 'm2.conf', '-db', 'config.sqlite'],
      { cwd: m2dir, env: { ...process.env, LOGNAME: 'm2fleet-test' }, stdio: 'ignore' });
    mongrel2 = lan.spawn(lan.hosts[0]!.ns, '/usr/bin/mongrel2', ['config.sqlite', uuid],
      { cwd: m2dir, stdio: 'ignore', env: { ...process.env, LOGNAME: 'm2fleet-test' } });
  });

  after(async () => {
    await Promise.all(nodes.map((n) => endChild(n.child)));
    if (mongrel2) await endChild(mongrel2);
    await lan?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const zeromq = (): string[] => ['--zeromq',
    `tcp://${m2.host}:${m2.send},tcp://${m2.host}:${m2.recv}`];

  test('bare followers adopt within 5 s and Mongrel2 spreads requests over all three nodes',
    async () => {
      const f1 = startNode(lan.hosts[2]!.ns, clusterArgs(2, 'f1'));
      const f2 = startNode(lan.hosts[3]!.ns, clusterArgs(3, 'f2'));
      const main = startNode(lan.hosts[1]!.ns, [...zeromq(), '--module', app,
        ...clusterArgs(1, 'main')]);
      await main.waitFor((r) => r.msg === 'ready', 20_000);
      const announced = Date.now();
      for (const f of [f1, f2]) {
        await f.waitFor((r) => r.msg === 'cluster: adopting config', 20_000);
      }
      assert.ok(Date.now() - announced < 5000, `adopted after ${Date.now() - announced} ms`);
      for (const f of [f1, f2]) await f.waitFor((r) => r.msg === 'ready', 20_000);
      const pids = requests(30);
      assert.ok(pids.every((p) => typeof p === 'number'), JSON.stringify(pids));
      for (const n of [main, f1, f2]) {
        assert.ok(pids.some((p) => workerPids(n).has(p as number)),
          `node ${nodes.indexOf(n)} served nothing: ${JSON.stringify(pids)}`);
      }
    });

  test('with the main killed the followers keep serving', async () => {
    const main = nodes[2]!;
    main.child.kill('SIGKILL');
    // The killed master could not remove its socket directory.
    rmSync(`/tmp/m2fleet-${main.child.pid}`, { recursive: true, force: true });
    await new Promise((r) => setTimeout(r, 1500));
    const pids = requests(20);
    assert.ok(pids.every((p) => typeof p === 'number'), JSON.stringify(pids));
    const followers = new Set([...workerPids(nodes[0]!), ...workerPids(nodes[1]!)]);
    assert.ok(pids.every((p) => followers.has(p as number)));
  });

  test('a new config version reaches every node and rolls out with no request lost', async () => {
    const main = startNode(lan.hosts[1]!.ns, [...zeromq(), '--module', app, '--threads', '2',
      ...clusterArgs(1, 'main')]);
    await main.waitFor((r) => r.msg === 'ready', 20_000);
    const stream = new Promise<(number | string)[]>((resolve) => {
      setTimeout(() => resolve(requests(150)), 10);
    });
    for (const f of [nodes[0]!, nodes[1]!]) {
      await f.waitFor((r) => r.msg === 'reconfigure: rolling', 20_000);
      await f.waitFor((r) => r.msg === 'old process drained and exited', 30_000);
    }
    const pids = await stream;
    assert.ok(pids.every((p) => typeof p === 'number'), JSON.stringify(pids));
  });

  test('forged, stale and oversize datagrams are refused and counted', async () => {
    inNamespace(lan.hosts[0]!.ns, `
      import dgram from 'node:dgram';
      import { randomBytes } from 'node:crypto';
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(0, '${lan.hosts[0]!.address}', r));
      s.setMulticastInterface('${lan.hosts[0]!.address}');
      s.setMulticastTTL(1);
      const [host, port] = ['${group.split(':')[0]}', ${group.split(':')[1]}];
      const send = (b) => new Promise((r) => s.send(b, port, host, r));
      await send(randomBytes(1500));
      const forged = Buffer.concat([Buffer.from('M2FL'), Buffer.from([1, 1, 0, 1]),
        randomBytes(200)]);
      await send(forged);
      s.close();
      console.log('true');`);
    // A CONFIG with a real key but an old version: stale.
    const { Keyring, readGroupKeys } = await import('../../src/cluster/keys.ts');
    const { encodeDatagram } = await import('../../src/cluster/wire.ts');
    const old = encodeDatagram({
      kind: 'config', nodeId: 'ab'.repeat(16), bootId: 'cd'.repeat(8), seq: 1,
      timestamp: Date.now(), cluster: 'e2e',
    }, { version: 1, digest: '0'.repeat(64), config: {} },
    Keyring.create({ groupKeys: readGroupKeys(keyFile) }), 'hmac-sha256');
    inNamespace(lan.hosts[0]!.ns, `
      import dgram from 'node:dgram';
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(0, '${lan.hosts[0]!.address}', r));
      s.setMulticastInterface('${lan.hosts[0]!.address}');
      await new Promise((r) => s.send(Buffer.from('${old.toString('base64')}', 'base64'),
        ${group.split(':')[1]}, '${group.split(':')[0]}', r));
      s.close();
      console.log('true');`);
    await new Promise((r) => setTimeout(r, 500));
    const text = metricsOf(2);
    assert.match(text, /m2fleet_cluster_received_total\{kind="unknown",result="oversize"\} [1-9]/);
    assert.match(text, /m2fleet_cluster_received_total\{kind="unknown",result="(bad_auth|malformed|unknown_key)"\} [1-9]/);
    assert.match(text, /m2fleet_cluster_received_total\{kind="config",result="stale"\} [1-9]/);
    // And the follower still runs the main's version.
    assert.match(text, /m2fleet_cluster_config_version\{role="follower",state="running"\} [1-9]/);
  });
});
