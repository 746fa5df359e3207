// Cluster members on a simulated network with a fake clock: adoption,
// loss, duplication, reordering, replay, forgery, main loss, restarts from
// the persisted config, and the local policy's refusals.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Keyring } from '../../src/cluster/keys.ts';
import { ClusterMember } from '../../src/cluster/member.ts';
import { defaultPolicy } from '../../src/cluster/policy.ts';
import { FakeClock, SimNetwork } from '../../src/cluster/sim-network.ts';
import { ClusterStore } from '../../src/cluster/store.ts';
import type { SharedConfig, Transport } from '../../src/cluster/types.ts';
import { encodeDatagram } from '../../src/cluster/wire.ts';
import type { Logger } from '../../src/handler/types.ts';

const root = mkdtempSync(path.join(tmpdir(), 'm2fleet-member-'));
after(() => rmSync(root, { recursive: true, force: true }));
const apps = path.join(root, 'apps');
mkdirSync(apps);
const APP = path.join(apps, 'app.mjs');
writeFileSync(APP, 'export default (req, res) => res.end("x");\n');

const quiet: Logger = {
  error: () => undefined, warn: () => undefined, info: () => undefined,
  debug: () => undefined, isDebug: () => false, child: () => quiet,
};

const groupKeys = [{ id: 1, secret: randomBytes(32) }];
const keyring = Keyring.create({ groupKeys });

function shared(overrides: Partial<SharedConfig> = {}): SharedConfig {
  return {
    zeromq: ['tcp://10.0.0.1:9999,tcp://10.0.0.1:9998'], module: APP, processes: 2, threads: 2,
    maxRequests: 0, reloadOnRss: 0, harakiri: 0, mercy: 30_000, interface: 'auto',
    flowControl: 'auto', ...overrides,
  };
}

let seq = 0;
function seededRandom(): () => number {
  let s = 12345 + seq++;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
}

interface Rig {
  clock: FakeClock;
  net: SimNetwork;
  adopted: { version: number; config: SharedConfig }[];
  main(config?: SharedConfig, dir?: string): ClusterMember;
  follower(name: string, opts?: { dir?: string; requireMain?: boolean; transport?: Transport;
    appRoots?: string[]; keys?: Keyring; cluster?: string }): Promise<ClusterMember>;
  run(ms: number): Promise<void>;
}

function rig(seed = 1): Rig {
  const clock = new FakeClock(1_700_000_000_000);
  const net = new SimNetwork(clock, seed);
  const adopted: Rig['adopted'] = [];
  const make = (role: 'main' | 'follower', address: string, dir: string,
    extra: Partial<ConstructorParameters<typeof ClusterMember>[0]> = {}) => new ClusterMember({
    role, cluster: extra.cluster ?? 'test', nodeId: randomBytes(16).toString('hex'),
    transport: extra.transport ?? net.transport(address), keyring: extra.keyring ?? keyring,
    clock, store: new ClusterStore(dir), policy: defaultPolicy(extra.policy?.appRoots ?? [apps]),
    log: quiet, units: () => ({ ready: 4, desired: 4 }), random: seededRandom(),
    adopt: async (config, version) => { adopted.push({ version, config }); },
    ...extra,
  });
  return {
    clock, net, adopted,
    main: (config = shared(), dir = mkdtempSync(path.join(root, 'main-'))) => {
      const m = make('main', `main-${seq++}`, dir, { config });
      void m.start();
      return m;
    },
    follower: async (name, opts = {}) => {
      const f = make('follower', name, opts.dir ?? mkdtempSync(path.join(root, 'f-')), {
        requireMain: opts.requireMain ?? false,
        ...(opts.transport ? { transport: opts.transport } : {}),
        ...(opts.keys ? { keyring: opts.keys } : {}),
        ...(opts.cluster ? { cluster: opts.cluster } : {}),
        ...(opts.appRoots ? { policy: defaultPolicy(opts.appRoots) } : {}),
      });
      await f.start();
      return f;
    },
    run: async (ms) => {
      for (let t = 0; t < ms; t += 50) {
        clock.advance(50);
        await new Promise((r) => setImmediate(r));
      }
    },
  };
}

describe('adoption', () => {
  test('two bare followers adopt the main\'s config within 5 s', async () => {
    const r = rig();
    const f1 = await r.follower('f1');
    const f2 = await r.follower('f2');
    const main = r.main();
    await r.run(5000);
    assert.equal(f1.snapshot().state, 'running');
    assert.equal(f2.snapshot().state, 'running');
    assert.equal(r.adopted.length, 2);
    assert.equal(r.adopted[0]!.version, main.snapshot().version);
    assert.deepEqual(r.adopted[0]!.config, shared());
    // The main sees both followers' STATUS.
    await r.run(6000);
    assert.equal(main.snapshot().members.filter((m) => m.state === 'running').length, 2);
  });

  test('with 40% loss, duplication and reordering each follower adopts exactly once', async () => {
    const r = rig(7);
    r.net.setFaults({ loss: 0.4, duplicate: 0.3, reorder: 0.3, delayMs: [0, 200] });
    const followers = [await r.follower('a'), await r.follower('b'), await r.follower('c')];
    r.main();
    await r.run(60_000);
    for (const f of followers) assert.equal(f.snapshot().state, 'running');
    assert.equal(r.adopted.length, 3);
    assert.ok(followers.some((f) => (f.snapshot().received['config:duplicate'] ?? 0) > 0));
  });

  test('a follower that starts long after the main still adopts (DISCOVER is answered)', async () => {
    const r = rig();
    r.main();
    await r.run(40_000);
    const late = await r.follower('late');
    await r.run(3000);
    assert.equal(late.snapshot().state, 'running');
  });
});

describe('versions, replay and forgery', () => {
  test('a new main version is adopted; the old one replayed later is stale', async () => {
    const r = rig();
    const dir = mkdtempSync(path.join(root, 'f-'));
    const f = await r.follower('f', { dir });
    const mainDir = mkdtempSync(path.join(root, 'main-'));
    const v1 = r.main(shared(), mainDir);
    const captured: Buffer[] = [];
    const spy = r.net.transport('spy');
    spy.onMessage((d) => captured.push(Buffer.from(d)));
    await r.run(3000);
    v1.stop();
    r.clock.advance(1000);
    const v2 = r.main(shared({ processes: 3 }), mainDir);
    await r.run(3000);
    assert.ok(v2.snapshot().version > v1.snapshot().version);
    assert.equal(f.snapshot().version, v2.snapshot().version);
    assert.equal(r.adopted.at(-1)!.config.processes, 3);
    const adoptedBefore = r.adopted.length;
    // Replay every captured datagram of the first main.
    for (const d of captured) spy.send(d);
    await r.run(1000);
    assert.equal(r.adopted.length, adoptedBefore);
    assert.ok((f.snapshot().received['config:stale'] ?? 0) > 0);
    // And after a restart of the follower, from its persisted state.
    f.stop();
    const again = await r.follower('f2', { dir });
    for (const d of captured) spy.send(d);
    await r.run(1000);
    assert.equal(again.snapshot().version, v2.snapshot().version);
  });

  test('a CONFIG made with another key is refused as bad_auth and never adopted', async () => {
    const r = rig();
    const f = await r.follower('f');
    const forger = Keyring.create({ groupKeys: [{ id: 1, secret: randomBytes(32) }] });
    const attacker = r.net.transport('attacker');
    const body = { version: Date.now(), digest: 'x'.repeat(64), config: shared() };
    attacker.send(encodeDatagram({
      kind: 'config', nodeId: 'ab'.repeat(16), bootId: 'cd'.repeat(8), seq: 1,
      timestamp: r.clock.now(), cluster: 'test',
    }, body, forger, 'hmac-sha256'));
    await r.run(500);
    assert.equal(r.adopted.length, 0);
    assert.equal(f.snapshot().received['unknown:bad_auth'], 1);
  });

  test('garbage, oversize and foreign-cluster datagrams are counted, none crash', async () => {
    const r = rig();
    const f = await r.follower('f');
    const noise = r.net.transport('noise');
    for (let i = 0; i < 50; i++) noise.send(randomBytes(1 + (i * 37) % 1500));
    const foreign = await r.follower('x', { cluster: 'other' });
    void foreign;
    r.main();
    await r.run(3000);
    const got = f.snapshot().received;
    assert.ok((got['unknown:malformed'] ?? 0) + (got['unknown:oversize'] ?? 0) >= 40);
    assert.equal(f.snapshot().state, 'running');
    assert.ok((foreign.snapshot().received['unknown:foreign_cluster'] ?? 0) > 0);
    assert.equal(foreign.snapshot().state, 'discovering');
  });

  test('a flood from one address is cut at the rate limit, before any crypto', async () => {
    const r = rig();
    const f = await r.follower('f');
    const flood = r.net.transport('flood');
    for (let i = 0; i < 5000; i++) flood.send(randomBytes(100));
    await r.run(100);
    assert.ok((f.snapshot().received['unknown:flood'] ?? 0) > 4000);
  });
});

describe('static stability', () => {
  test('when the main goes away followers keep their config and report running-stale', async () => {
    const r = rig();
    const f = await r.follower('f');
    const main = r.main();
    await r.run(3000);
    main.stop();
    await r.run(15_000);
    assert.equal(f.snapshot().state, 'running-stale');
    assert.equal(r.adopted.length, 1);
  });

  test('a follower restarted without a main runs its persisted config; a tampered one is refused',
    async () => {
      const r = rig();
      const dir = mkdtempSync(path.join(root, 'f-'));
      const f = await r.follower('f', { dir });
      const main = r.main();
      await r.run(3000);
      main.stop();
      f.stop();
      const before = r.adopted.length;
      const again = await r.follower('f-again', { dir });
      assert.equal(r.adopted.length, before + 1);
      assert.equal(again.snapshot().state, 'running-stale');
      const waiting = await r.follower('f-wait', { dir, requireMain: true });
      assert.equal(waiting.snapshot().state, 'discovering');
      // One byte changed in the stored datagram: refused at start.
      const file = path.join(dir, 'cluster-state.json');
      const memory = JSON.parse(readFileSync(file, 'utf8'));
      const bytes = Buffer.from(memory.lastGood, 'base64');
      bytes[bytes.length - 70] ^= 1;
      memory.lastGood = bytes.toString('base64');
      writeFileSync(file, JSON.stringify(memory));
      const tampered = await r.follower('f-tampered', { dir });
      assert.equal(tampered.snapshot().state, 'discovering');
    });
});

describe('local policy', () => {
  for (const [name, config, reason] of [
    ['a module outside the app roots', shared({ module: '/etc/passwd' }), 'app_not_deployed'],
    ['a module that is not deployed', shared({ module: path.join(apps, 'nope.mjs') }),
      'app_not_deployed'],
    ['a URL as module', shared({ module: 'https://evil.example/app.mjs' }), 'schema'],
    ['an ipc endpoint', shared({ zeromq: ['ipc:///tmp/a,ipc:///tmp/b'] }), 'endpoint_not_allowed'],
    ['processes over the cap', shared({ processes: 10_000 }), 'limits'],
  ] as const) {
    test(`${name} is refused (${reason}) and nothing is adopted`, async () => {
      const r = rig();
      const f = await r.follower('f');
      r.main(config as SharedConfig);
      await r.run(3000);
      assert.equal(r.adopted.length, 0);
      assert.ok((f.snapshot().received[`config:${reason}`] ?? 0) > 0,
        JSON.stringify(f.snapshot().received));
      assert.match(String(f.snapshot().lastReject), new RegExp(`^${reason}`));
    });
  }

  test('a symlink escaping the app roots is refused', async () => {
    const { symlinkSync } = await import('node:fs');
    const outside = mkdtempSync(path.join(root, 'outside-'));
    writeFileSync(path.join(outside, 'evil.mjs'), 'export default () => {};\n');
    symlinkSync(path.join(outside, 'evil.mjs'), path.join(apps, 'link.mjs'));
    const r = rig();
    await r.follower('f');
    r.main(shared({ module: path.join(apps, 'link.mjs') }));
    await r.run(3000);
    assert.equal(r.adopted.length, 0);
  });
});

describe('signed mode', () => {
  test('followers holding the main\'s public key adopt signed configs and refuse HMAC-only ones',
    async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const signing = Keyring.create({ groupKeys, signKey: { id: 9, key: privateKey } });
      const verifying = Keyring.create({ groupKeys, verifyKeys: [{ id: 9, key: publicKey }] });
      const r = rig();
      const f = await r.follower('f', { keys: verifying });
      // A group member without the signing key tries to configure the fleet.
      const member = r.net.transport('member');
      member.send(encodeDatagram({
        kind: 'config', nodeId: 'ef'.repeat(16), bootId: '01'.repeat(8), seq: 1,
        timestamp: r.clock.now(), cluster: 'test',
      }, { version: Date.now(), digest: '0'.repeat(64), config: shared() }, keyring, 'hmac-sha256'));
      await r.run(200);
      assert.equal(r.adopted.length, 0);
      assert.equal(f.snapshot().received['unknown:unsigned_config'], 1);
      const main = new ClusterMember({
        role: 'main', cluster: 'test', nodeId: randomBytes(16).toString('hex'),
        transport: r.net.transport('main'), keyring: signing, clock: r.clock,
        store: new ClusterStore(mkdtempSync(path.join(root, 'main-'))),
        policy: defaultPolicy([apps]), log: quiet, config: shared(),
        units: () => ({ ready: 1, desired: 1 }),
      });
      await main.start();
      await r.run(3000);
      assert.equal(f.snapshot().state, 'running');
      assert.equal(r.adopted.length, 1);
    });
});
