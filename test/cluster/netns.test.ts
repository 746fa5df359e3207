/**
 * The UDP transport between hosts: three network namespaces on a bridge
 * in a fourth (layer N of the cluster design). Nothing here touches the
 * root namespace; every datagram stays on the test's own bridge.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  createLan,
  endChild,
  netnsAvailable,
  nftAvailable,
  startProbe,
  writeTransportProbe,
  type Lan,
  type Probe,
} from '../helpers/netns.ts';

const available = netnsAvailable();
const skip = available.ok ? false : `needs network namespaces: ${available.why}`;
const skipNft = skip || (nftAvailable() ? false : 'needs nft (Debian package nftables)');

describe('UDP transport across a three-host LAN', { skip }, () => {
  let lan: Lan;
  const probe = writeTransportProbe();
  const probes: Probe[] = [];
  const group = `239.${randomBytes(1)[0]}.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0]! % 250)}`;
  let port = 20_000 + (randomBytes(2).readUInt16BE() % 20_000);

  /** Starts one transport per host on a fresh port; waits until all are ready. */
  const startAll = async (options: (host: number, port: number) => Record<string, unknown>): Promise<Probe[]> => {
    port++;
    const started = lan.hosts.map((host, i) =>
      startProbe(host.ns, probe.path, {
        transport: { group: `${group}:${port}`, iface: host.address, ...options(i, port) },
      }),
    );
    probes.push(...started);
    for (const p of started) {
      const first = await p.waitFor((e) => e.event === 'ready' || e.event === 'error');
      assert.equal(first.event, 'ready', JSON.stringify(first));
    }
    return started;
  };
  const heard = (p: Probe, data: string): boolean => p.events.some((e) => e.data === data);

  before(async () => {
    lan = await createLan(3);
  });
  after(async () => {
    await Promise.all(probes.map((p) => endChild(p.child)));
    probe.remove();
    await lan?.destroy();
  });

  it('a multicast datagram from host 1 reaches hosts 2 and 3, and host 1 itself', async () => {
    const [one, two, three] = await startAll(() => ({}));
    one!.command({ op: 'send', data: 'hello-lan' });
    for (const p of [one!, two!, three!]) {
      await p.waitFor((e) => e.data === 'hello-lan');
    }
    const from = (await two!.waitFor((e) => e.data === 'hello-lan')).from as { address: string };
    assert.equal(from.address, lan.hosts[0]!.address);
  });

  it('with loopback off, host 1 does not hear its own multicast', async () => {
    const [one, two] = await startAll((i) => (i === 0 ? { loopback: false } : {}));
    one!.command({ op: 'send', data: 'not-to-self' });
    await two!.waitFor((e) => e.data === 'not-to-self');
    two!.command({ op: 'send', data: 'marker' });
    await one!.waitFor((e) => e.data === 'marker');
    assert.equal(heard(one!, 'not-to-self'), false);
  });

  it('multicast arrives at the other hosts with IP TTL 1 by default', { skip: skipNft }, async () => {
    // Count, on host 2's input, the group's packets by their IP header
    // TTL. The bridge does not route, so this is the TTL the sender set.
    const ns = lan.hosts[1]!.ns;
    const rules = (ttlGroup: string): string =>
      [
        'add table inet m2f_ttl',
        'add chain inet m2f_ttl in { type filter hook input priority 0; policy accept; }',
        `add rule inet m2f_ttl in ip daddr ${ttlGroup} ip ttl 1 counter`,
        `add rule inet m2f_ttl in ip daddr ${ttlGroup} ip ttl != 1 counter`,
      ].join('\n');
    await lan.exec(ns, 'nft', [rules(group)]);

    const [one, two] = await startAll(() => ({}));
    one!.command({ op: 'send', data: 'ttl-check' });
    await two!.waitFor((e) => e.data === 'ttl-check');
    const { stdout } = await lan.exec(ns, 'nft', ['list chain inet m2f_ttl in']);
    assert.match(stdout, /ip ttl 1 counter packets 1 /);
    assert.match(stdout, /ip ttl != 1 counter packets 0 /);
    await lan.exec(ns, 'nft', ['delete table inet m2f_ttl']);
  });

  it('when multicast is dropped on hosts 2 and 3, the peer list still delivers by unicast', { skip: skipNft }, async () => {
    for (const host of lan.hosts.slice(1)) await lan.dropRandom(host.ns, 1.0, 'multicast');
    try {
      const peersOf = (peerPort: number) =>
        lan.hosts.slice(1).map((host) => ({ address: host.address, port: peerPort }));
      const [one, two, three] = await startAll((i, p) => (i === 0 ? { peers: peersOf(p) } : {}));

      one!.command({ op: 'send', data: 'via-peers' });
      await two!.waitFor((e) => e.data === 'via-peers');
      await three!.waitFor((e) => e.data === 'via-peers');
      // Exactly one copy each: the multicast one was dropped.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(two!.events.filter((e) => e.data === 'via-peers').length, 1);

      two!.command({ op: 'send', data: 'multicast-only' });
      await one!.waitFor((e) => e.data === 'multicast-only');
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(heard(three!, 'multicast-only'), false);
    } finally {
      for (const host of lan.hosts.slice(1)) await lan.dropRandom(host.ns, 0);
    }
  });

  it('dropRandom(0.5) drops about half of incoming UDP', { skip: skipNft }, async () => {
    const [one, two] = await startAll(() => ({}));
    await lan.dropRandom(lan.hosts[1]!.ns, 0.5);
    try {
      for (let i = 0; i < 200; i++) one!.command({ op: 'send', data: `n${i}` });
      await one!.waitFor((e) => e.data === 'n199');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const got = two!.events.filter((e) => typeof e.data === 'string' && /^n\d+$/.test(e.data)).length;
      assert.ok(got > 50 && got < 150, `host 2 got ${got} of 200`);
    } finally {
      await lan.dropRandom(lan.hosts[1]!.ns, 0);
    }
  });

  it('an IPv6 group with the veth as zone carries a datagram from host 1 to host 2', async () => {
    // Link-local addresses are usable once duplicate detection is over.
    for (const host of lan.hosts.slice(0, 2)) {
      for (let tries = 0; tries < 50; tries++) {
        const { stdout } = await lan.exec(host.ns, 'ip', ['-6', 'addr', 'show', 'dev', host.iface]);
        if (stdout.includes('fe80') && !stdout.includes('tentative')) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    port++;
    const [one, two] = lan.hosts.slice(0, 2).map((host) =>
      startProbe(host.ns, probe.path, { transport: { group: `[ff15::4242]:${port}`, iface: host.iface } }),
    );
    probes.push(one!, two!);
    for (const p of [one!, two!]) {
      assert.equal((await p.waitFor((e) => e.event === 'ready' || e.event === 'error')).event, 'ready');
    }
    one!.command({ op: 'send', data: 'over-v6' });
    const got = await two!.waitFor((e) => e.data === 'over-v6');
    assert.match(String((got.from as { address: string }).address), /^fe80::.*%/);
  });

  it('chooseInterface refuses to guess on a host with two veths, and names both', async () => {
    const host = lan.hosts[2]!;
    const second = await lan.addInterface(host.ns);
    const chosen = startProbe(host.ns, probe.path, { choose: null });
    probes.push(chosen);
    const event = await chosen.waitFor((e) => e.event === 'chosen' || e.event === 'error');
    assert.equal(event.code, 'M2F_CLUSTER_IFACE_AMBIGUOUS');
    assert.match(String(event.message), new RegExp(`${host.iface} \\(${host.address}\\)`));
    assert.match(String(event.message), new RegExp(`${second.iface} \\(${second.address}\\)`));

    const named = startProbe(host.ns, probe.path, { choose: second.iface });
    probes.push(named);
    const picked = await named.waitFor((e) => e.event === 'chosen' || e.event === 'error');
    assert.deepEqual(picked, { event: 'chosen', address: second.address, name: second.iface });
  });

  it('with one veth, chooseInterface takes it without being told', async () => {
    const host = lan.hosts[0]!;
    const chosen = startProbe(host.ns, probe.path, { choose: null });
    probes.push(chosen);
    const event = await chosen.waitFor((e) => e.event === 'chosen' || e.event === 'error');
    assert.deepEqual(event, { event: 'chosen', address: host.address, name: host.iface });
  });
});
