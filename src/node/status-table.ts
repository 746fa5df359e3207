/**
 * `m2fleet status`: fetches the master's snapshot from its stats server and
 * prints it as a table a person reads at a glance, one row per unit:
 *
 *   master 4242  up 2h05m  units 3/4 ready  restarts crash=1
 *   SLOT  PID   THREAD  UNIT      STATE     REQS  INFL  AVG MS  UPTIME  RSS MiB
 *   0     4250  0       0f1e2d3c  ready     1204     0     3.1  2h05m     48.2
 */
import { M2FleetError } from '../handler/errors.js';
import { RESTART_REASONS } from './metrics.js';
import type { ClusterSnapshot } from '../cluster/member.js';
import type { FleetSnapshot, ProcessSnapshot, UnitSnapshot } from './snapshot.js';

/** Default time {@link fetchStatus} waits for the master, in milliseconds. */
export const STATUS_TIMEOUT_MS = 3000;

/** Renders milliseconds as the two largest units: `45s`, `3m12s`, `2h05m`, `3d04h`. */
export function formatUptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor(s / 3600) % 24)}h`;
}

function averageMs(u: UnitSnapshot): string {
  const count = u.durationBuckets.reduce((a, b) => a + b, 0);
  return count === 0 ? '-' : ((u.durationSum / count) * 1000).toFixed(1);
}

const COLUMNS = [
  'SLOT', 'PID', 'THREAD', 'UNIT', 'STATE', 'REQS', 'INFL', 'AVG MS', 'UPTIME', 'RSS MiB',
] as const;

// Numbers read best right-aligned; names and states left-aligned.
const RIGHT = new Set<string>(['REQS', 'INFL', 'AVG MS', 'UPTIME', 'RSS MiB']);

function row(p: ProcessSnapshot, u: UnitSnapshot, now: number): string[] {
  return [
    String(p.slot), String(u.pid), String(u.thread), u.identity.slice(0, 8), u.state,
    String(u.requests), String(u.inflight), averageMs(u),
    formatUptime(now - u.startedAt), (p.rssBytes / 2 ** 20).toFixed(1),
  ];
}

function header(s: FleetSnapshot, now: number): string {
  const units = s.processes.flatMap((p) => p.units);
  const ready = units.filter((u) => u.state === 'ready').length;
  const restarts = RESTART_REASONS
    .filter((r) => (s.restarts[r] ?? 0) > 0)
    .map((r) => `${r}=${s.restarts[r]}`);
  const parts = [
    `master ${s.masterPid}`,
    `up ${formatUptime(now - s.startedAt)}`,
    `units ${ready}/${s.desiredUnits} ready`,
    `restarts ${restarts.length === 0 ? 'none' : restarts.join(' ')}`,
  ];
  if (s.logDropped > 0) parts.push(`log lines dropped ${s.logDropped}`);
  return parts.join('  ');
}

/**
 * Formats the snapshot as a header line and an aligned table, one row per
 * unit in slot then thread order. `now` (ms since the epoch) sets uptimes.
 * A fleet with no units prints `(no units)` under the column names.
 */
export function formatStatusTable(s: FleetSnapshot, now = Date.now()): string {
  const rows = [...s.processes]
    .sort((a, b) => a.slot - b.slot)
    .flatMap((p) => [...p.units].sort((a, b) => a.thread - b.thread).map((u) => row(p, u, now)));
  const table = [[...COLUMNS], ...rows];
  const widths = COLUMNS.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const lines = table.map((r) => r
    .map((cell, i) => (RIGHT.has(COLUMNS[i]!)
      ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
    .join('  ')
    .trimEnd());
  if (rows.length === 0) lines.push('(no units)');
  return [header(s, now), ...lines].join('\n') + '\n';
}

function align(table: string[][]): string[] {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

/**
 * The cluster as one node sees it: a header with this node's role, state
 * and version, then one row per member heard from.
 */
export function formatClusterTable(c: ClusterSnapshot, now = Date.now()): string {
  const seen = c.mainLastSeen === null ? 'never' : `${formatUptime(now - c.mainLastSeen)} ago`;
  const head = `cluster ${c.cluster}: this node ${c.nodeId.slice(0, 8)} is ${c.role}, `
    + `${c.state}, version ${c.version}; main last seen ${seen}`
    + (c.lastReject ? `; last refusal: ${c.lastReject}` : '');
  const rows = [...c.members].sort((a, b) => a.host.localeCompare(b.host)).map((m) => [
    m.nodeId.slice(0, 8), m.host, m.role, m.state, String(m.version),
    `${m.unitsReady}/${m.unitsDesired}`, `${formatUptime(now - m.lastSeen)} ago`,
  ]);
  const table = [['node', 'host', 'role', 'state', 'version', 'units', 'last seen'], ...rows];
  const lines = align(table);
  if (rows.length === 0) lines.push('(no members heard from yet)');
  return [head, ...lines].join('\n') + '\n';
}

function statusUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new M2FleetError('M2F_STATUS_URL', `status: not a URL: ${url}`, { value: url });
  }
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/status';
  return u;
}

function unreachable(url: URL, err: unknown, timeoutMs: number): M2FleetError {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  const why = e.name === 'TimeoutError'
    ? `no answer within ${timeoutMs} ms`
    : e.cause?.code ?? e.cause?.message ?? String(err);
  return new M2FleetError('M2F_STATUS_UNREACHABLE',
    `cannot reach the m2fleet master at ${url.href}: ${why} (is it running with its stats server on that address?)`,
    { value: url.href });
}

/**
 * Fetches the fleet snapshot with GET (a bare `http://host:port` means
 * `/status`). Throws `M2F_STATUS_UNREACHABLE` when the master does not
 * answer within `timeoutMs` (default {@link STATUS_TIMEOUT_MS}) or refuses
 * the connection, and `M2F_STATUS_BAD_REPLY` for a non-200 or non-snapshot
 * body.
 */
export async function fetchStatus(
  url: string, opts: { timeoutMs?: number } = {},
): Promise<FleetSnapshot> {
  const target = statusUrl(url);
  const timeoutMs = opts.timeoutMs ?? STATUS_TIMEOUT_MS;
  let body: string;
  let status: number;
  try {
    const res = await fetch(target, { signal: AbortSignal.timeout(timeoutMs) });
    status = res.status;
    body = await res.text();
  } catch (err) {
    throw unreachable(target, err, timeoutMs);
  }

  const bad = (why: string): M2FleetError => new M2FleetError('M2F_STATUS_BAD_REPLY',
    `m2fleet master at ${target.href} answered ${why}`, { value: body.slice(0, 80) });
  if (status !== 200) throw bad(`HTTP ${status}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw bad('something that is not JSON');
  }
  const snap = parsed as Partial<FleetSnapshot> | null;
  if (typeof snap?.masterPid !== 'number' || !Array.isArray(snap.processes)) {
    throw bad('JSON that is not a fleet snapshot');
  }
  return parsed as FleetSnapshot;
}
