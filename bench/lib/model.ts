/**
 * The shape of one bench run's data: what was driven (workloads × servers
 * × concurrencies over rounds, and the handler-only runs) and what each
 * run measured. The report and the chart read only this.
 */
import type { HandlerOnlyResult } from './handler-only.ts';
import type { WrkResult } from './wrk.ts';

/** One server as the table names it. */
export interface ServerInfo {
  id: string;
  label: string;
  colour: string;
}

/** One workload: which servers serve it at which path. */
export interface WorkloadInfo {
  id: string;
  title: string;
  /** The m2fleet server whose paired ratio against each other row is shown. */
  base: string;
  concurrencies: number[];
  servers: string[];
}

/** All rounds of one (workload, server, concurrency). */
export interface HttpCell {
  workload: string;
  server: string;
  concurrency: number;
  /** One entry per round; null when that round's run failed. */
  rounds: (WrkResult | null)[];
  /** Why the cell was not measured (a failed check), if so. */
  error?: string;
}

/** One handler-only setup and its rounds. */
export interface HandlerOnlyCell {
  id: string;
  label: string;
  /** Pinned: generator on CPU 0, handler on CPU 1. */
  pinned: boolean;
  window: number;
  rounds: (HandlerOnlyResult | null)[];
  error?: string;
}

/** Everything one `npm run bench` measured. */
export interface BenchData {
  meta: {
    date: string;
    commit: string;
    machine: string;
    node: string;
    mode: string;
    rounds: number;
    seconds: number;
    handlerOnlySeconds: number;
    minutes: number;
  };
  servers: ServerInfo[];
  workloads: WorkloadInfo[];
  http: HttpCell[];
  handlerOnly: HandlerOnlyCell[];
  longRss: HandlerOnlyResult | null;
  notes: string[];
}
