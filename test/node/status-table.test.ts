import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  fetchStatus, formatStatusTable, formatUptime,
} from '../../src/node/status-table.js';
import {
  DURATION_BUCKETS, type FleetSnapshot, type UnitSnapshot,
} from '../../src/node/snapshot.js';

const NOW = 1_700_000_000_000;

function unit(over: Partial<UnitSnapshot>): UnitSnapshot {
  return {
    identity: '0f1e2d3c-aaaa-bbbb-cccc-000000000001', pid: 4250, thread: 0,
    state: 'ready', requests: 0, inflight: 0, malformed: 0, refused: 0, notices: 0,
    durationBuckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0),
    durationSum: 0, startedAt: NOW - 192_000, ...over,
  };
}

function fleet(): FleetSnapshot {
  const buckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  buckets[2] = 4;
  return {
    masterPid: 4242, startedAt: NOW - 7_500_000, desiredUnits: 4, logDropped: 0,
    restarts: { crash: 1, 'max-requests': 3 },
    processes: [
      { pid: 4251, slot: 1, generation: 2, rssBytes: 60 * 2 ** 20, units: [
        unit({ identity: 'ffeeddcc-1111', pid: 4251, state: 'starting', startedAt: NOW - 5000 }),
      ] },
      { pid: 4250, slot: 0, generation: 1, rssBytes: 48.25 * 2 ** 20, units: [
        unit({ thread: 1, identity: 'aabbccdd-2222', state: 'draining', inflight: 2 }),
        unit({ requests: 1204, durationBuckets: buckets, durationSum: 0.0124 }),
      ] },
    ],
  };
}

describe('formatUptime', () => {
  it('shows the two largest units', () => {
    assert.equal(formatUptime(0), '0s');
    assert.equal(formatUptime(-5000), '0s');
    assert.equal(formatUptime(45_900), '45s');
    assert.equal(formatUptime(192_000), '3m12s');
    assert.equal(formatUptime(7_500_000), '2h05m');
    assert.equal(formatUptime(3 * 86_400_000 + 4 * 3_600_000), '3d04h');
  });
});

describe('formatStatusTable', () => {
  const lines = formatStatusTable(fleet(), NOW).trimEnd().split('\n');

  it('then the header names the master pid, uptime, units ready/desired and restarts by reason', () => {
    assert.equal(lines[0], 'master 4242  up 2h05m  units 1/4 ready  restarts crash=1 max-requests=3');
  });

  it('then there is one row per unit in slot then thread order, with aligned columns', () => {
    assert.equal(lines.length, 5);
    assert.match(lines[1]!, /^SLOT {2}PID {3}THREAD {2}UNIT {6}STATE/);
    const cells = lines.slice(2).map((l) => l.split(/\s{2,}/));
    assert.deepEqual(cells[0], ['0', '4250', '0', '0f1e2d3c', 'ready', '1204', '0', '3.1', '3m12s', '48.3']);
    assert.deepEqual(cells[1], ['0', '4250', '1', 'aabbccdd', 'draining', '0', '2', '-', '3m12s', '48.3']);
    assert.deepEqual(cells[2], ['1', '4251', '0', 'ffeeddcc', 'starting', '0', '0', '-', '5s', '60.0']);
    const rssColumn = lines[1]!.length;
    for (const l of lines.slice(2)) assert.equal(l.length, rssColumn, 'rows end where RSS MiB ends');
  });

  it('when there are no units and no restarts then it says so', () => {
    const empty: FleetSnapshot = { masterPid: 1, startedAt: NOW, desiredUnits: 2,
      processes: [], restarts: {}, logDropped: 5 };
    const out = formatStatusTable(empty, NOW).split('\n');
    assert.equal(out[0], 'master 1  up 0s  units 0/2 ready  restarts none  log lines dropped 5');
    assert.equal(out[2], '(no units)');
  });
});

describe('fetchStatus', () => {
  let server: Server;
  let base: string;
  let reply: { status: number; body: string } = { status: 200, body: '' };
  const paths: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      paths.push(req.url ?? '');
      if (req.url === '/hang') return; // never answers
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(reply.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('when given a bare base URL then it GETs /status and returns the snapshot', async () => {
    reply = { status: 200, body: JSON.stringify(fleet()) };
    assert.deepEqual(await fetchStatus(base), fleet());
    assert.equal(paths.at(-1), '/status');
  });

  it('when the master answers non-200 or not a snapshot then M2F_STATUS_BAD_REPLY', async () => {
    reply = { status: 503, body: 'nope' };
    await assert.rejects(fetchStatus(base), { code: 'M2F_STATUS_BAD_REPLY', message: /HTTP 503/ });
    reply = { status: 200, body: '{"x":1}' };
    await assert.rejects(fetchStatus(`${base}/status`), { code: 'M2F_STATUS_BAD_REPLY' });
    reply = { status: 200, body: '<html>' };
    await assert.rejects(fetchStatus(base), { message: /not JSON/ });
  });

  it('when the master does not answer in time then M2F_STATUS_UNREACHABLE names the wait', async () => {
    await assert.rejects(fetchStatus(`${base}/hang`, { timeoutMs: 100 }),
      { code: 'M2F_STATUS_UNREACHABLE', message: /no answer within 100 ms/ });
  });

  it('when nothing listens on the port then M2F_STATUS_UNREACHABLE names the address and ECONNREFUSED', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await assert.rejects(fetchStatus(`http://127.0.0.1:${port}`), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'M2F_STATUS_UNREACHABLE');
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}/status: ECONNREFUSED`));
      return true;
    });
  });

  it('when the URL is malformed then M2F_STATUS_URL', async () => {
    await assert.rejects(fetchStatus('not a url'), { code: 'M2F_STATUS_URL' });
  });
});
