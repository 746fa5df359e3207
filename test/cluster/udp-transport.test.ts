import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { chooseInterface, createUdpTransport, parseGroup } from '../../src/cluster/udp-transport.ts';
import type { Transport } from '../../src/cluster/types.ts';
import {
  addNamespace,
  deleteNamespace,
  endChild,
  netnsAvailable,
  nftAvailable,
  run,
  startProbe,
  writeTransportProbe,
  type Probe,
} from '../helpers/netns.ts';

/** Binds a UDP socket on 127.0.0.1:0 and returns it with its port. */
function bindAnyUdp(exclusiveOnWildcard = false): Promise<{ socket: Socket; port: number }> {
  const socket = createSocket('udp4');
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port: 0, address: exclusiveOnWildcard ? '0.0.0.0' : '127.0.0.1' }, () =>
      resolve({ socket, port: socket.address().port }),
    );
  });
}

/** A UDP port that was free a moment ago. */
async function freeUdpPort(): Promise<number> {
  const { socket, port } = await bindAnyUdp();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** Resolves with the next datagram a transport receives (5 s at most). */
function nextMessage(transport: Transport): Promise<{ data: string; port: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no datagram within 5 s')), 5000);
    transport.onMessage((datagram, from) => {
      clearTimeout(timer);
      resolve({ data: datagram.toString(), port: from.port });
    });
  });
}

describe('parseGroup and option checks', () => {
  it('parses IPv4 and bracketed IPv6 groups', () => {
    assert.deepEqual(parseGroup('239.1.2.3:1717'), { address: '239.1.2.3', port: 1717, family: 4 });
    assert.deepEqual(parseGroup('225.1.1.1:1717'), { address: '225.1.1.1', port: 1717, family: 4 });
    assert.deepEqual(parseGroup('[ff15::1234]:1717'), { address: 'ff15::1234', port: 1717, family: 6 });
  });

  for (const bad of ['10.1.2.3:1717', '239.1.2.3', '239.1.2.3:0', '239.1.2.3:70000', '[fe80::1]:1717', 'group:1717', 'ff15::1:1717']) {
    it(`refuses the group ${bad} with M2F_CLUSTER_BAD_GROUP`, async () => {
      await assert.rejects(createUdpTransport({ group: bad }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'M2F_CLUSTER_BAD_GROUP');
        assert.match(error.message, new RegExp(bad.replace(/[.[\]]/g, '\\$&')));
        return true;
      });
    });
  }

  it('names an unknown interface', () => {
    assert.throws(() => chooseInterface('m2f-no-such-if'), { code: 'M2F_CLUSTER_IFACE_NOT_FOUND' });
  });

  it('finds an interface by address and by name', () => {
    assert.deepEqual(chooseInterface('127.0.0.1'), { address: '127.0.0.1', name: 'lo' });
    assert.deepEqual(chooseInterface('lo'), { address: '127.0.0.1', name: 'lo' });
  });
});

describe('peers-only mode on 127.0.0.1', () => {
  const open: Transport[] = [];
  after(async () => {
    await Promise.all(open.map((transport) => transport.close()));
  });

  it('when multicast is off, send() reaches each peer by unicast and sendTo() one address', async () => {
    const [portA, portB] = [await freeUdpPort(), await freeUdpPort()];
    const a = await createUdpTransport({
      group: `239.1.2.3:${portA}`,
      multicast: false,
      peers: [{ address: '127.0.0.1', port: portB }],
    });
    const b = await createUdpTransport({ group: `239.1.2.3:${portB}`, multicast: false });
    open.push(a, b);

    const first = nextMessage(b);
    a.send(Buffer.from('to-peers'));
    assert.deepEqual(await first, { data: 'to-peers', port: portA });

    const reply = nextMessage(a);
    b.sendTo(Buffer.from('reply'), '127.0.0.1', portA);
    assert.deepEqual(await reply, { data: 'reply', port: portB });
  });

  it('when the port is held without SO_REUSEADDR, fails with M2F_CLUSTER_BIND naming the port', async () => {
    const { socket, port } = await bindAnyUdp(true);
    try {
      await assert.rejects(createUdpTransport({ group: `239.1.2.3:${port}`, multicast: false }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'M2F_CLUSTER_BIND');
        assert.match(error.message, new RegExp(`port ${port}: EADDRINUSE`));
        return true;
      });
    } finally {
      socket.close();
    }
  });
});

const available = netnsAvailable();
const skip = available.ok ? false : `needs a network namespace: ${available.why}`;

describe('multicast on loopback inside a private namespace', { skip }, () => {
  const ns = `m2f-${randomBytes(3).toString('hex')}`;
  const probe = writeTransportProbe();
  const probes: Probe[] = [];
  const group = `239.${randomBytes(1)[0]}.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0]! % 250)}`;
  const port = 20_000 + (randomBytes(2).readUInt16BE() % 20_000);

  const start = async (options: Record<string, unknown>): Promise<Probe> => {
    const started = startProbe(ns, probe.path, { transport: { iface: '127.0.0.1', ...options } });
    probes.push(started);
    await started.waitFor((e) => e.event === 'ready' || e.event === 'error');
    return started;
  };
  const ttlCounts = async (): Promise<{ one: number; other: number }> => {
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'nft', 'list chain inet m2f_ttl out']);
    const count = (pattern: RegExp): number => Number(pattern.exec(stdout)?.[1] ?? NaN);
    return {
      one: count(/ip ttl 1 counter packets (\d+)/),
      other: count(/ip ttl != 1 counter packets (\d+)/),
    };
  };

  before(async () => {
    // Only lo exists here: multicast on it, and the multicast route too,
    // so no datagram can leave the namespace.
    await addNamespace(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'multicast', 'on']);
    await run('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  });
  after(async () => {
    await Promise.all(probes.map((p) => endChild(p.child)));
    probe.remove();
    await deleteNamespace(ns);
  });

  it('two transports on one group receive each other and, with loopback on, themselves', async () => {
    const a = await start({ group: `${group}:${port}` });
    const b = await start({ group: `${group}:${port}` });
    assert.equal(a.events[0]!.event, 'ready', JSON.stringify(a.events));
    assert.equal(b.events[0]!.event, 'ready', JSON.stringify(b.events));

    a.command({ op: 'send', data: 'from-a' });
    b.command({ op: 'send', data: 'from-b' });
    for (const p of [a, b]) {
      for (const data of ['from-a', 'from-b']) await p.waitFor((e) => e.event === 'message' && e.data === data);
    }
  });

  it('with nothing requested, chooseInterface takes loopback when it is all there is', async () => {
    const chosen = startProbe(ns, probe.path, { choose: null });
    probes.push(chosen);
    const event = await chosen.waitFor((e) => e.event === 'chosen' || e.event === 'error');
    assert.deepEqual(event, { event: 'chosen', address: '127.0.0.1', name: 'lo' });
  });

  it('sends multicast with IP TTL 1 by default, and another TTL only when asked', { skip: nftAvailable() ? false : 'needs nft (Debian package nftables) to count TTLs' }, async () => {
    // Count the group's outgoing packets by their IP header TTL.
    const ttlGroup = `${group.split('.').slice(0, 3).join('.')}.251`;
    await run('ip', ['netns', 'exec', ns, 'nft', [
      'add table inet m2f_ttl',
      'add chain inet m2f_ttl out { type filter hook output priority 0; policy accept; }',
      `add rule inet m2f_ttl out ip daddr ${ttlGroup} ip ttl 1 counter`,
      `add rule inet m2f_ttl out ip daddr ${ttlGroup} ip ttl != 1 counter`,
    ].join('\n')]);

    const byDefault = await start({ group: `${ttlGroup}:${port + 2}` });
    byDefault.command({ op: 'send', data: 'ttl-default' });
    await byDefault.waitFor((e) => e.data === 'ttl-default');
    assert.deepEqual(await ttlCounts(), { one: 1, other: 0 });

    const two = await start({ group: `${ttlGroup}:${port + 3}`, ttl: 2 });
    two.command({ op: 'send', data: 'ttl-two' });
    await two.waitFor((e) => e.data === 'ttl-two');
    assert.deepEqual(await ttlCounts(), { one: 1, other: 1 });
  });

  it('refuses an interface the namespace does not have', async () => {
    const failed = await start({ group: `${group}:${port + 4}`, iface: '10.9.9.9' });
    assert.equal(failed.events[0]!.code, 'M2F_CLUSTER_IFACE_NOT_FOUND');
  });
});
