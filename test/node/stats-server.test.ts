import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/node/log.js';
import { isLoopback, startStatsServer, type StatsServer } from '../../src/node/stats-server.js';
import {
  DURATION_BUCKETS, type FleetSnapshot, type UnitState,
} from '../../src/node/snapshot.js';

function fleet(states: UnitState[], desiredUnits: number): FleetSnapshot {
  return {
    masterPid: 100, startedAt: 0, desiredUnits, logDropped: 0, restarts: {},
    processes: [{
      pid: 101, slot: 0, generation: 1, rssBytes: 1 << 20,
      units: states.map((state, thread) => ({
        identity: `unit-${thread}`, pid: 101, thread, state, requests: 1,
        inflight: 0, malformed: 0, refused: 0, notices: 0,
        durationBuckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0),
        durationSum: 0, startedAt: 0,
      })),
    }],
  };
}

describe('stats server', () => {
  let current = fleet(['ready', 'starting'], 2);
  let server: StatsServer;
  let base: string;
  const lines: string[] = [];

  before(async () => {
    const log = createLogger({ sink: (l) => lines.push(l) });
    server = await startStatsServer({ host: '127.0.0.1', port: 0, snapshot: () => current, log });
    base = `http://127.0.0.1:${server.address.port}`;
  });
  after(() => server.close());

  it('when started on port 0 then it reports the real port and logs where it listens', () => {
    assert.ok(server.address.port > 0);
    assert.equal(server.address.host, '127.0.0.1');
    assert.ok(lines.some((l) => l.includes('stats server listening')));
  });

  it('GET /metrics answers Prometheus text with version 0.0.4', async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    assert.match(body, /^# HELP m2fleet_requests_total /m);
    assert.match(body, /^m2fleet_units\{state="ready"\} 1$/m);
  });

  it('GET /healthz answers 200 ok', async () => {
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok\n');
  });

  it('when fewer units are ready than desired then /readyz answers 503 with the count', async () => {
    current = fleet(['ready', 'starting'], 2);
    const res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'not ready: 1 of 2 units ready\n');
  });

  it('when every desired unit is ready then /readyz answers 200', async () => {
    current = fleet(['ready', 'ready', 'draining'], 2);
    const res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ready 2/2\n');
  });

  it('GET /status answers the snapshot as JSON', async () => {
    current = fleet(['ready'], 1);
    const res = await fetch(`${base}/status`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^application\/json/);
    assert.deepEqual(await res.json(), current);
  });

  it('when the path is unknown then 404; when the method is not GET then 405', async () => {
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    await missing.text();
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    await post.text();
  });

  it('when the snapshot throws then 500 and the error is logged', async () => {
    const saved = current;
    current = undefined as unknown as FleetSnapshot;
    const res = await fetch(`${base}/readyz`);
    current = saved;
    assert.equal(res.status, 500);
    await res.text();
    assert.ok(lines.some((l) => l.includes('stats snapshot failed')));
  });
});

describe('stats server address policy', () => {
  it('isLoopback accepts 127/8, ::1, mapped loopback and localhost only', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) {
      assert.equal(isLoopback(h), true, h);
    }
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.0.2.1', 'example.com', '127.example']) {
      assert.equal(isLoopback(h), false, h);
    }
  });

  it('when the host is not loopback and allowPublic is unset then it refuses with M2F_STATS_PUBLIC', async () => {
    await assert.rejects(
      startStatsServer({ host: '0.0.0.0', port: 0, snapshot: () => fleet([], 0) }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'M2F_STATS_PUBLIC');
        assert.match(err.message, /0\.0\.0\.0/);
        return true;
      });
  });

  it('when allowPublic is set then it warns before listening (a TEST-NET address that cannot bind)', async () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l) });
    await assert.rejects(startStatsServer({
      host: '192.0.2.1', port: 0, allowPublic: true, snapshot: () => fleet([], 0), log,
    }), /EADDRNOTAVAIL/);
    const warn = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(warn['level'], 40);
    assert.equal(warn['host'], '192.0.2.1');
  });

  it('when the port is taken then startStatsServer rejects with EADDRINUSE', async () => {
    const first = await startStatsServer({ host: '127.0.0.1', port: 0, snapshot: () => fleet([], 0) });
    try {
      await assert.rejects(startStatsServer({
        host: '127.0.0.1', port: first.address.port, snapshot: () => fleet([], 0),
      }), /EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
