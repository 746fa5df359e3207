import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { FakeClock, SimNetwork } from '../../src/cluster/sim-network.ts';
import type { Transport } from '../../src/cluster/types.ts';

/** Collects what each transport receives, as strings. */
function listen(transport: Transport): string[] {
  const got: string[] = [];
  transport.onMessage((datagram) => got.push(datagram.toString()));
  return got;
}

/** Sends `count` numbered datagrams from a to b, one per ms, then drains. */
function runFlow(seed: number, faults: Parameters<SimNetwork['setFaults']>[0], count: number) {
  const clock = new FakeClock();
  const net = new SimNetwork(clock, seed);
  const a = net.transport('10.0.0.1');
  const got = listen(net.transport('10.0.0.2'));
  net.setFaults(faults);
  for (let i = 0; i < count; i++) {
    a.sendTo(Buffer.from(String(i)), '10.0.0.2', 1717);
    clock.advance(1);
  }
  clock.advance(10_000);
  return { net, got, clock };
}

describe('FakeClock', () => {
  it('runs due timers in time order, ties in the order they were set', () => {
    const clock = new FakeClock(1000);
    const order: string[] = [];
    clock.setTimeout(() => order.push('b@20'), 20);
    clock.setTimeout(() => order.push('a@10'), 10);
    clock.setTimeout(() => order.push('c@20'), 20);
    const cancelled = clock.setTimeout(() => order.push('never'), 5);
    cancelled.cancel();

    clock.advance(15);
    assert.deepEqual(order, ['a@10']);
    assert.equal(clock.now(), 1015);
    clock.advance(5);
    assert.deepEqual(order, ['a@10', 'b@20', 'c@20']);
    assert.equal(clock.pending, 0);
  });

  it('runs a timer set by a timer when it falls inside the same advance', () => {
    const clock = new FakeClock();
    const seen: number[] = [];
    clock.setTimeout(() => {
      seen.push(clock.now());
      clock.setTimeout(() => seen.push(clock.now()), 7);
    }, 3);
    clock.advance(100);
    assert.deepEqual(seen, [3, 10]);
    assert.equal(clock.now(), 100);
  });
});

describe('SimNetwork', () => {
  it('delivers send() to every transport, itself included, only when the clock moves', () => {
    const clock = new FakeClock();
    const net = new SimNetwork(clock, 1);
    const a = net.transport('a');
    const gotA = listen(a);
    const gotB = listen(net.transport('b'));
    const gotC: string[] = [];
    net.transport('c', { loopback: false }).onMessage((d, from) => gotC.push(`${d}<${from.address}`));

    a.send(Buffer.from('hello'));
    assert.deepEqual(gotB, []);
    clock.advance(0);
    assert.deepEqual(gotA, ['hello']);
    assert.deepEqual(gotB, ['hello']);
    assert.deepEqual(gotC, ['hello<a']);
    assert.equal(net.delivered, 3);
  });

  it('loses about the configured share of datagrams', () => {
    const { net, got } = runFlow(42, { loss: 0.3 }, 2000);
    const share = net.dropped / 2000;
    assert.ok(share > 0.25 && share < 0.35, `lost share ${share}`);
    assert.equal(got.length + net.dropped, 2000);
  });

  it('delivers a duplicated datagram twice', () => {
    const { net, got } = runFlow(7, { duplicate: 1 }, 10);
    assert.equal(got.length, 20);
    assert.equal(net.duplicated, 10);
    for (let i = 0; i < 10; i++) assert.equal(got.filter((g) => g === String(i)).length, 2);
  });

  it('reorders held-back datagrams and loses none', () => {
    const { got } = runFlow(3, { reorder: 0.5, delayMs: [0, 2] }, 200);
    const numbers = got.map(Number);
    assert.equal(numbers.length, 200);
    assert.deepEqual([...numbers].sort((x, y) => x - y), numbers.map((_, i) => i));
    assert.notDeepEqual(numbers, [...numbers].sort((x, y) => x - y));
  });

  it('keeps order and delays within [min, max] without reordering', () => {
    const clock = new FakeClock();
    const net = new SimNetwork(clock, 9);
    const a = net.transport('a', { loopback: false });
    const arrivals: number[] = [];
    net.transport('b').onMessage(() => arrivals.push(clock.now()));
    net.setFaults({ delayMs: [5, 9] });
    for (let i = 0; i < 50; i++) a.send(Buffer.from('x'));
    clock.advance(4);
    assert.equal(arrivals.length, 0);
    clock.advance(5);
    assert.equal(arrivals.length, 50);
    assert.ok(arrivals.every((t) => t >= 5 && t <= 9));
  });

  it('blocks traffic across a partition both ways, and heal() restores it', () => {
    const clock = new FakeClock();
    const net = new SimNetwork(clock, 5);
    const [a, b, c] = ['a', 'b', 'c'].map((name) => net.transport(name, { loopback: false }));
    const [gotA, gotB, gotC] = [a!, b!, c!].map(listen);
    net.partition(['a'], ['b']);

    a!.send(Buffer.from('from-a'));
    b!.sendTo(Buffer.from('b-to-a'), 'a', 1717);
    clock.advance(1);
    assert.deepEqual(gotA, []);
    assert.deepEqual(gotB, []);
    assert.deepEqual(gotC, ['from-a']);
    assert.equal(net.dropped, 2);

    net.heal();
    a!.send(Buffer.from('again'));
    clock.advance(1);
    assert.deepEqual(gotB, ['again']);
    assert.deepEqual(gotC, ['from-a', 'again']);
  });

  it('drops datagrams to an unknown or closed address', async () => {
    const clock = new FakeClock();
    const net = new SimNetwork(clock, 5);
    const a = net.transport('a');
    const b = net.transport('b');
    listen(b);
    a.sendTo(Buffer.from('x'), 'nobody', 1717);
    a.sendTo(Buffer.from('y'), 'b', 1717);
    await b.close();
    clock.advance(1);
    assert.equal(net.delivered, 0);
    assert.equal(net.dropped, 2);
  });

  it('gives the same run for the same seed and a different one for another seed', () => {
    const faults = { loss: 0.2, duplicate: 0.1, reorder: 0.2, delayMs: [0, 5] as [number, number] };
    const first = runFlow(1234, faults, 300);
    const again = runFlow(1234, faults, 300);
    const other = runFlow(4321, faults, 300);
    assert.deepEqual(again.got, first.got);
    assert.equal(again.net.dropped, first.net.dropped);
    assert.notDeepEqual(other.got, first.got);
  });
});
