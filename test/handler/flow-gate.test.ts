import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DOWNLOAD_CREDITS, FlowGate } from '../../src/handler/flow-gate.js';

// Every clock value is passed in, so no test depends on real time.
const T0 = 1_000_000;

describe('FlowGate with download credits', () => {
  it('when credits start then the whole 102400 bytes may go and nothing is unacknowledged', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    assert.equal(DOWNLOAD_CREDITS, 102400);
    assert.equal(gate.credited, true);
    assert.equal(gate.allowance(T0), 102400);
    assert.equal(gate.unacknowledged, 0);
  });

  it('when frames are recorded then the allowance shrinks by their bytes down to 0', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    gate.record(60_000, T0);
    assert.equal(gate.allowance(T0), 42_400);
    gate.record(42_400, T0);
    assert.equal(gate.allowance(T0), 0);
    assert.equal(gate.unacknowledged, 102400);
  });

  it('when Mongrel2 acknowledges bytes then that much allowance comes back', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    gate.record(102400, T0);
    gate.acknowledge(30_000);
    assert.equal(gate.allowance(T0), 30_000);
    assert.equal(gate.unacknowledged, 72_400);
  });

  it('when more is acknowledged than was sent then the allowance stays at 102400', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    gate.record(1000, T0);
    gate.acknowledge(50_000);
    assert.equal(gate.unacknowledged, 0);
    assert.equal(gate.allowance(T0), 102400);
  });

  it('when a connection starts with fewer credits then the allowance starts lower', () => {
    const gate = new FlowGate();
    gate.useCredits(40_000);
    assert.equal(gate.allowance(T0), 40_000);
    gate.useCredits(DOWNLOAD_CREDITS);
    assert.equal(gate.allowance(T0), 40_000, 'a second useCredits is ignored');
  });

  it('when sends, acknowledgements and allowance interleave then unacknowledged never passes 102400', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    // A fixed pseudo-random walk: send what the gate allows (or less), then
    // acknowledge part of it, as Mongrel2 would.
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const allowed = gate.allowance(T0);
      assert.ok(allowed >= 0 && allowed <= DOWNLOAD_CREDITS);
      const send = allowed === 0 ? 0 : 1 + (next() % allowed);
      if (send > 0) gate.record(send, T0);
      assert.ok(gate.unacknowledged <= DOWNLOAD_CREDITS, `step ${i}: ${gate.unacknowledged}`);
      assert.equal(gate.allowance(T0) + gate.unacknowledged, DOWNLOAD_CREDITS);
      gate.acknowledge(next() % (gate.unacknowledged + 1));
    }
  });

  it('when credited then wait() is 0 whatever the frame count', () => {
    const gate = new FlowGate();
    gate.useCredits(DOWNLOAD_CREDITS);
    for (let i = 0; i < 20; i++) gate.record(1, T0);
    assert.equal(gate.wait(T0), 0);
  });
});

describe('FlowGate pacing without credits', () => {
  it('when fewer than 8 frames went then the allowance is unlimited and wait() is 0', () => {
    const gate = new FlowGate();
    for (let i = 0; i < 7; i++) gate.record(1_000_000, T0);
    assert.equal(gate.credited, false);
    assert.equal(gate.allowance(T0), Number.POSITIVE_INFINITY);
    assert.equal(gate.wait(T0), 0);
  });

  it('when 8 frames went in one instant then a ninth waits the full 10 ms', () => {
    const gate = new FlowGate();
    for (let i = 0; i < 8; i++) gate.record(10, T0);
    assert.equal(gate.allowance(T0), 0);
    assert.equal(gate.wait(T0), 10);
    assert.equal(gate.wait(T0 + 4), 6);
    assert.equal(gate.allowance(T0 + 9), 0);
    assert.equal(gate.wait(T0 + 10), 0);
    assert.equal(gate.allowance(T0 + 10), Number.POSITIVE_INFINITY);
  });

  it('when a new request arrives then its response is not held by the last one\'s frames', () => {
    const gate = new FlowGate();
    for (let i = 0; i < 8; i++) gate.record(10, T0);
    assert.equal(gate.allowance(T0), 0);
    gate.newRequest();
    assert.equal(gate.allowance(T0), Number.POSITIVE_INFINITY);
    assert.equal(gate.wait(T0), 0);
  });

  it('when frames are sent as fast as allowed then no 10 ms window holds more than 8', () => {
    const gate = new FlowGate();
    const sent: number[] = [];
    // Simulated clock: try to send every 0.5 ms for 200 ms.
    for (let step = 0; step < 400; step++) {
      const now = T0 + step * 0.5;
      if (gate.allowance(now) > 0) {
        gate.record(100, now);
        sent.push(now);
      } else {
        assert.ok(gate.wait(now) > 0);
      }
    }
    assert.ok(sent.length > 8);
    for (let i = 0; i + 8 < sent.length; i++) {
      assert.ok(sent[i + 8]! - sent[i]! >= 10,
        `frames ${i}..${i + 8} fit in ${sent[i + 8]! - sent[i]!} ms`);
    }
  });

  it('when the gate switches to credits then pacing stops and credits rule', () => {
    const gate = new FlowGate();
    for (let i = 0; i < 8; i++) gate.record(10, T0);
    assert.equal(gate.allowance(T0), 0);
    gate.useCredits(DOWNLOAD_CREDITS);
    assert.equal(gate.allowance(T0), DOWNLOAD_CREDITS);
    assert.equal(gate.wait(T0), 0);
  });
});
