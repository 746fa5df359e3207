import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ClusterSnapshot } from '../../src/cluster/member.ts';
import { renderPrometheus } from '../../src/node/metrics.ts';
import type { FleetSnapshot } from '../../src/node/snapshot.ts';
import { formatClusterTable } from '../../src/node/status-table.ts';

const now = 1_700_000_100_000;
const cluster: ClusterSnapshot = {
  nodeId: 'a'.repeat(32), cluster: 'prod', role: 'main', state: 'main', version: 42,
  digest: 'f'.repeat(64), mainLastSeen: null, lastReject: null,
  members: [
    { nodeId: 'b'.repeat(32), host: 'web-2', role: 'follower', state: 'running', version: 42,
      unitsReady: 8, unitsDesired: 8, lastSeen: now - 3000 },
    { nodeId: 'c'.repeat(32), host: 'web-3', role: 'follower', state: 'rejected', version: 41,
      unitsReady: 8, unitsDesired: 8, lastSeen: now - 4000 },
  ],
  received: { 'status:accepted': 10, 'unknown:bad_auth': 3 },
  sent: { config: 4, beacon: 20 },
};
const fleet: FleetSnapshot = {
  masterPid: 1, startedAt: now, desiredUnits: 0, processes: [], restarts: {}, logDropped: 0,
  cluster,
};

test('cluster counters, version and members by state appear in /metrics', () => {
  const text = renderPrometheus(fleet);
  assert.match(text, /^m2fleet_cluster_received_total\{kind="unknown",result="bad_auth"\} 3$/m);
  assert.match(text, /^m2fleet_cluster_sent_total\{kind="beacon"\} 20$/m);
  assert.match(text, /^m2fleet_cluster_config_version\{role="main",state="main"\} 42$/m);
  assert.match(text, /^m2fleet_cluster_members\{state="running"\} 1$/m);
  assert.match(text, /^m2fleet_cluster_members\{state="rejected"\} 1$/m);
});

test('without cluster mode no cluster metric is rendered', () => {
  const { cluster: _, ...plain } = fleet;
  assert.doesNotMatch(renderPrometheus(plain), /m2fleet_cluster_/);
});

test('the cluster table lists each member with its state, version and units', () => {
  const table = formatClusterTable(cluster, now);
  const lines = table.trimEnd().split('\n');
  assert.match(lines[0]!, /cluster prod: this node aaaaaaaa is main, main, version 42/);
  assert.match(lines[2]!, /^bbbbbbbb\s+web-2\s+follower\s+running\s+42\s+8\/8\s+3s ago$/);
  assert.match(lines[3]!, /^cccccccc\s+web-3\s+follower\s+rejected\s+41/);
});
