/**
 * The fleet's state as the master sees it: what /metrics, /status and
 * `m2fleet status` render. Plain JSON data, sent from processes to the
 * master over IPC.
 */

import type { ClusterSnapshot } from '../cluster/member.js';
import type { SocketKind, Transport } from '../handler/index.js';

/** Lifecycle of a unit (one Mongrel2 consumer in one thread). */
export type UnitState = 'starting' | 'ready' | 'draining' | 'stopped';

/** Upper bounds (seconds) of the request duration histogram buckets. */
export const DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

/** One unit's counters. */
export interface UnitSnapshot {
  /** The unit's identity (a UUID), as logged at start. */
  identity: string;
  pid: number;
  thread: number;
  state: UnitState;
  /** Requests answered (or abandoned) since the unit started. */
  requests: number;
  inflight: number;
  malformed: number;
  refused: number;
  notices: number;
  /** Count per DURATION_BUCKETS bound (not cumulative), then +Inf last. */
  durationBuckets: number[];
  /** Sum of request durations in seconds. */
  durationSum: number;
  /** Requests started, by how they arrived (ZeroMQ or a standard socket). */
  transports?: Record<Transport, number>;
  /** Bad input or limits on the standard sockets, by kind. */
  socketRefused?: Record<SocketKind, number>;
  startedAt: number;
}

/** One worker process. */
export interface ProcessSnapshot {
  pid: number;
  /** Index of the process slot (0..processes-1), stable across restarts. */
  slot: number;
  generation: number;
  rssBytes: number;
  units: UnitSnapshot[];
}

/** Why the master restarted or replaced a process. */
export type RestartReason =
  | 'crash' | 'reload' | 'max-requests' | 'reload-on-rss' | 'harakiri';

/** The whole fleet. */
export interface FleetSnapshot {
  masterPid: number;
  startedAt: number;
  /** processes × threads the configuration asks for. */
  desiredUnits: number;
  processes: ProcessSnapshot[];
  restarts: Partial<Record<RestartReason, number>>;
  /** Log lines dropped because the ZeroMQ log collector was away. */
  logDropped: number;
  /** Cluster mode: this member's view (absent outside cluster mode). */
  cluster?: ClusterSnapshot;
}
