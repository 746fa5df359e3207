/**
 * Renders a {@link FleetSnapshot} as Prometheus text exposition format
 * 0.0.4: for every metric a `# HELP` line, a `# TYPE` line, then its
 * samples `name{label="value",...} number`, one per line, ending in `\n`.
 */
import {
  DURATION_BUCKETS,
  type FleetSnapshot,
  type RestartReason,
  type UnitSnapshot,
  type UnitState,
} from './snapshot.js';

/** Content-Type of the text format this module writes. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

// Records keyed by the union make the compiler flag a state or reason
// added to snapshot.ts but missing here.
const STATE_SET: Record<UnitState, true> = {
  starting: true, ready: true, draining: true, stopped: true,
};
const REASON_SET: Record<RestartReason, true> = {
  crash: true, reload: true, 'max-requests': true, 'reload-on-rss': true,
  harakiri: true,
};

/** Every unit state, in lifecycle order. */
export const UNIT_STATES = Object.keys(STATE_SET) as UnitState[];

/** Every restart reason. */
export const RESTART_REASONS = Object.keys(REASON_SET) as RestartReason[];

type Labels = Record<string, string | number>;
type MetricType = 'counter' | 'gauge' | 'histogram';

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabelValue(String(v))}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Accumulates one exposition document, metric by metric. */
class Exposition {
  readonly #lines: string[] = [];

  declare(name: string, type: MetricType, help: string): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels, value: number): void {
    this.#lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }

  toString(): string {
    return this.#lines.join('\n') + '\n';
  }
}

interface LabelledUnit {
  labels: Labels;
  unit: UnitSnapshot;
}

function unitsOf(s: FleetSnapshot): LabelledUnit[] {
  return s.processes.flatMap((p) => p.units.map((unit) => ({
    unit,
    labels: { pid: unit.pid, thread: unit.thread, unit: unit.identity },
  })));
}

function writeUnitCounter(
  out: Exposition, units: LabelledUnit[], name: string, type: MetricType,
  help: string, pick: (u: UnitSnapshot) => number,
): void {
  out.declare(name, type, help);
  for (const { labels, unit } of units) out.sample(name, labels, pick(unit));
}

function writeHistogram(out: Exposition, units: LabelledUnit[]): void {
  const name = 'm2fleet_request_duration_seconds';
  out.declare(name, 'histogram', 'Time from request received to reply sent, per unit.');
  for (const { labels, unit } of units) {
    // The snapshot counts per bucket; Prometheus buckets are cumulative.
    let cumulative = 0;
    DURATION_BUCKETS.forEach((le, i) => {
      cumulative += unit.durationBuckets[i] ?? 0;
      out.sample(`${name}_bucket`, { ...labels, le: formatValue(le) }, cumulative);
    });
    cumulative += unit.durationBuckets[DURATION_BUCKETS.length] ?? 0;
    out.sample(`${name}_bucket`, { ...labels, le: '+Inf' }, cumulative);
    out.sample(`${name}_sum`, labels, unit.durationSum);
    out.sample(`${name}_count`, labels, cumulative);
  }
}

// Requests by transport, and the standard sockets' refusals, per unit.
function writeTransports(out: Exposition, units: LabelledUnit[]): void {
  const requests = 'm2fleet_transport_requests_total';
  out.declare(requests, 'counter', 'Requests the app started on, by transport (zeromq, http, uwsgi, fastcgi).');
  for (const { labels, unit } of units) {
    for (const [via, n] of Object.entries(unit.transports ?? {})) out.sample(requests, { ...labels, via }, n);
  }
  const refused = 'm2fleet_socket_refused_total';
  out.declare(refused, 'counter', 'Connections or requests refused on the standard sockets (bad input, limits), by kind.');
  for (const { labels, unit } of units) {
    for (const [via, n] of Object.entries(unit.socketRefused ?? {})) out.sample(refused, { ...labels, via }, n);
  }
}

function writeFleet(out: Exposition, s: FleetSnapshot, units: LabelledUnit[]): void {
  out.declare('m2fleet_restarts_total', 'counter',
    'Worker processes restarted or replaced by the master, by reason.');
  for (const reason of RESTART_REASONS) {
    out.sample('m2fleet_restarts_total', { reason }, s.restarts[reason] ?? 0);
  }

  out.declare('m2fleet_units', 'gauge', 'Units (one handler per thread) by state.');
  for (const state of UNIT_STATES) {
    const n = units.filter(({ unit }) => unit.state === state).length;
    out.sample('m2fleet_units', { state }, n);
  }

  out.declare('m2fleet_units_desired', 'gauge', 'Units the configuration asks for (processes x threads).');
  out.sample('m2fleet_units_desired', {}, s.desiredUnits);

  out.declare('m2fleet_process_resident_memory_bytes', 'gauge',
    'Resident set size of each worker process in bytes.');
  for (const p of s.processes) {
    out.sample('m2fleet_process_resident_memory_bytes', { pid: p.pid, slot: p.slot }, p.rssBytes);
  }

  out.declare('m2fleet_log_lines_dropped_total', 'counter',
    'Log lines dropped because the ZeroMQ log collector was away.');
  out.sample('m2fleet_log_lines_dropped_total', {}, s.logDropped);
}

// Cluster mode: datagrams by kind and result, this node's version, and
// the members it hears from by state.
function writeCluster(out: Exposition, s: FleetSnapshot): void {
  const c = s.cluster;
  if (!c) return;
  out.declare('m2fleet_cluster_received_total', 'counter',
    'Cluster datagrams received, by kind and result (accepted or the refusal reason).');
  for (const [key, n] of Object.entries(c.received)) {
    const [kind, result] = key.split(':');
    out.sample('m2fleet_cluster_received_total', { kind: kind!, result: result! }, n);
  }
  out.declare('m2fleet_cluster_sent_total', 'counter', 'Cluster datagrams sent, by kind.');
  for (const [kind, n] of Object.entries(c.sent)) {
    out.sample('m2fleet_cluster_sent_total', { kind }, n);
  }
  out.declare('m2fleet_cluster_config_version', 'gauge', 'Config version this node runs.');
  out.sample('m2fleet_cluster_config_version', { role: c.role, state: c.state }, c.version);
  out.declare('m2fleet_cluster_members', 'gauge', 'Members heard from, by state.');
  const states = new Map<string, number>();
  for (const m of c.members) states.set(m.state, (states.get(m.state) ?? 0) + 1);
  for (const [state, n] of states) out.sample('m2fleet_cluster_members', { state }, n);
}

/**
 * Renders the snapshot as Prometheus text format 0.0.4. Per-unit metrics
 * carry the labels `pid`, `thread` and `unit` (the unit's identity);
 * `m2fleet_restarts_total` lists every reason and `m2fleet_units` every
 * state, with 0 where none, so that rates and alerts never see a gap.
 */
export function renderPrometheus(s: FleetSnapshot): string {
  const out = new Exposition();
  const units = unitsOf(s);

  writeUnitCounter(out, units, 'm2fleet_requests_total', 'counter',
    'Requests answered or abandoned per unit.', (u) => u.requests);
  writeHistogram(out, units);
  writeUnitCounter(out, units, 'm2fleet_inflight_requests', 'gauge',
    'Requests received and not yet answered per unit.', (u) => u.inflight);
  writeUnitCounter(out, units, 'm2fleet_malformed_messages_total', 'counter',
    'Messages from Mongrel2 skipped as malformed per unit.', (u) => u.malformed);
  writeUnitCounter(out, units, 'm2fleet_refused_requests_total', 'counter',
    'Requests refused (too large, bad upload) per unit.',
    (u) => u.refused);
  writeUnitCounter(out, units, 'm2fleet_notices_total', 'counter',
    'Mongrel2 notices (disconnect, credits, other) per unit.',
    (u) => u.notices);
  writeTransports(out, units);
  writeFleet(out, s, units);
  writeCluster(out, s);
  return out.toString();
}
