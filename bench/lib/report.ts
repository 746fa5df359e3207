/**
 * Turns one run's data into the tables (terminal and markdown), the target
 * verdicts and the chart panels. Every ratio is paired: taken per round
 * between two runs of the same round, then summarised.
 */
import type { GeneratorResult } from '../generator.ts';
import type { ChartPanel } from './chart.ts';
import type { BenchData, HandlerOnlyCell, HttpCell } from './model.ts';
import {
  formatMs, formatRate, formatRatio, formatSummary, markdownTable, pairedRatio, summarize, textTable,
  type Summary,
} from './stats.ts';
import { judge, judgeFlag, type TargetRow } from './targets.ts';

/** A header and rows, printable as text or markdown. */
export interface Table {
  header: string[];
  rows: string[][];
}

function cell(data: BenchData, workload: string, server: string, c: number): HttpCell | undefined {
  return data.http.find((x) => x.workload === workload && x.server === server && x.concurrency === c);
}

/** Requests/s per round of one cell (NaN where a round failed). */
export function rates(x: HttpCell | undefined): number[] {
  return x ? x.rounds.map((r) => r?.requestsPerSecond ?? NaN) : [];
}

function label(data: BenchData, server: string): string {
  return data.servers.find((s) => s.id === server)?.label ?? server;
}

/** Every concurrency any workload used, ascending. */
export function allConcurrencies(data: BenchData): number[] {
  return [...new Set(data.workloads.flatMap((w) => w.concurrencies))].sort((a, b) => a - b);
}

/**
 * The HTTP table: per workload and server, requests/s per concurrency as
 * "median (min–max)", then " · R×" where R = base ÷ this (paired), and the
 * latency p50 / p99 at 8 connections.
 */
export function httpTable(data: BenchData): Table {
  const concs = allConcurrencies(data);
  const header = ['workload', 'setup', ...concs.map((c) => `${c} conn${c === 1 ? '' : 's'}: req/s · m2fleet÷this`), 'p50 / p99 at 8 conns'];
  const rows: string[][] = [];
  for (const w of data.workloads) {
    w.servers.forEach((server, i) => {
      const row = [i === 0 ? w.title : '', label(data, server)];
      for (const c of concs) {
        const x = cell(data, w.id, server, c);
        if (!w.concurrencies.includes(c) || !x) {
          row.push('');
          continue;
        }
        if (x.error) {
          row.push(`failed: ${x.error}`);
          continue;
        }
        let text = formatSummary(summarize(rates(x)));
        if (server !== w.base) text += ` · ${formatRatio(pairedRatio(rates(cell(data, w.id, w.base, c)), rates(x)))}`;
        row.push(text);
      }
      const at8 = cell(data, w.id, server, 8);
      const p50 = summarize(at8?.rounds.map((r) => r?.latencyMs.p50 ?? NaN) ?? []);
      const p99 = summarize(at8?.rounds.map((r) => r?.latencyMs.p99 ?? NaN) ?? []);
      row.push(p50.n > 0 ? `${formatMs(p50.median)} / ${formatMs(p99.median)}` : '');
      rows.push(row);
    });
  }
  return { header, rows };
}

function hoValues(x: HandlerOnlyCell | undefined, pick: (r: NonNullable<HandlerOnlyCell['rounds'][number]>) => number): number[] {
  return x ? x.rounds.map((r) => (r ? pick(r) : NaN)) : [];
}

/** Largest RSS of any process of the handler, per round. */
function maxRss(x: HandlerOnlyCell | undefined): number[] {
  return hoValues(x, (r) => Math.max(...Object.values(r.result.rssMiBByPid)));
}

/**
 * Share of the handler's CPU used by its root process (m2fleet: the master,
 * which only forwards messages); null for a single-process handler. Runs
 * saved before `rootPid` was recorded fall back to the lowest pid.
 */
export function rootShare(r: GeneratorResult): number | null {
  const pids = Object.keys(r.cpuSecondsByPid).map(Number);
  if (pids.length < 2) return null;
  const root = r.rootPid ?? Math.min(...pids);
  const total = Object.values(r.cpuSecondsByPid).reduce((a, b) => a + b, 0);
  return total > 0 ? (r.cpuSecondsByPid[root] ?? 0) / total : null;
}

/** The handler-only table. */
export function handlerOnlyTable(data: BenchData): Table {
  const header = ['setup', 'window', 'req/s', 'handler CPU µs/req', 'master share', 'p50', 'p99', 'RSS MiB per process',
    'frames/response · close frames', 'generator cores'];
  const rows = data.handlerOnly.map((x) => {
    const failed = x.rounds.filter((r) => r === null).length;
    if (x.error || failed === x.rounds.length) {
      return [x.label, String(x.window), `failed: ${x.error ?? 'every round'}`, '', '', '', '', '', '', ''];
    }
    const share = summarize(hoValues(x, (r) => rootShare(r.result) ?? NaN));
    const last = [...x.rounds].reverse().find((r) => r !== null);
    const rss = last ? Object.values(last.result.rssMiBByPid).map((v) => v.toFixed(0)).join(' + ') : '–';
    const fpr = summarize(hoValues(x, (r) => r.result.framesPerResponse));
    const closes = hoValues(x, (r) => r.result.closeFrames + r.result.connectionCloseHeaders).reduce((a, b) => a + (b || 0), 0);
    return [
      x.label + (x.pinned ? ' (pinned)' : '') + (failed > 0 ? ` (${failed} round${failed > 1 ? 's' : ''} failed)` : ''),
      String(x.window),
      formatSummary(summarize(hoValues(x, (r) => r.result.requestsPerSecond))),
      formatSummary(summarize(hoValues(x, (r) => r.result.handlerCpuMicrosPerRequest)), (v) => v.toFixed(1)),
      share.n > 0 ? `${(share.median * 100).toFixed(0)} %` : '',
      formatMs(summarize(hoValues(x, (r) => r.result.latencyMs.p50)).median),
      formatMs(summarize(hoValues(x, (r) => r.result.latencyMs.p99)).median),
      rss,
      `${fpr.n > 0 ? fpr.median.toFixed(2) : '–'} · ${closes}`,
      formatSummary(summarize(hoValues(x, (r) => r.result.generatorCores)), (v) => v.toFixed(2)),
    ];
  });
  return { header, rows };
}

function ho(data: BenchData, id: string): HandlerOnlyCell | undefined {
  return data.handlerOnly.find((x) => x.id === id);
}

function ratioAtTop(data: BenchData, workload: string, a: string, b: string): Summary | null {
  const w = data.workloads.find((x) => x.id === workload);
  if (!w) return null;
  const c = Math.max(...w.concurrencies);
  const s = pairedRatio(rates(cell(data, workload, a, c)), rates(cell(data, workload, b, c)));
  return s.n > 0 ? s : null;
}

function orNull(s: Summary): Summary | null {
  return s.n > 0 ? s : null;
}

/**
 * RSS growth of the long run, in %: per process, the peak of the last
 * quarter of the samples against the peak of the first quarter; the
 * largest over the processes. A V8 heap swings by tens of MiB between
 * collections, so two single samples compare two points of that swing; the
 * peaks of two stretches that each span several collections show a leak
 * and not the swing.
 */
export function rssGrowthPercent(samples: { rssMiB: number[] }[]): number | null {
  if (samples.length < 2) return null;
  const span = Math.max(1, Math.floor(samples.length / 4));
  const peak = (from: number, to: number, i: number): number =>
    Math.max(...samples.slice(from, to).map((s) => s.rssMiB[i] ?? NaN));
  const growth = samples[0]!.rssMiB.map((_, i) => {
    const first = peak(0, span, i);
    const last = peak(samples.length - span, samples.length, i);
    return first > 0 ? ((last - first) / first) * 100 : NaN;
  });
  const ok = growth.filter(Number.isFinite);
  return ok.length > 0 ? Math.max(...ok) : null;
}

/** The targets, judged on this run. */
export function targetRows(data: BenchData): TargetRow[] {
  const top = (id: string): number => Math.max(...(data.workloads.find((w) => w.id === id)?.concurrencies ?? [0]));
  const hello = ho(data, 'hello-p1');
  const hello8 = ho(data, 'hello-p1-w8');
  const lat = cell(data, 'hello', 'm2f-p1', 8);
  const latFc = cell(data, 'hello', 'm2f-p1-fc', 8);
  const helloFc = ho(data, 'hello-p1-fc');
  const helloFc8 = ho(data, 'hello-p1-w8-fc');
  const ready = data.handlerOnly.flatMap((x) => x.rounds.flatMap((r) => r?.processReadyMs ?? []));
  const rss = [hello, hello8, helloFc, helloFc8].map(maxRss).flat();
  const runs = [hello, hello8, helloFc, helloFc8].flatMap((x) => x?.rounds ?? []).filter((r) => r !== null);
  const kept = runs.length === 0 ? null : runs.every((r) =>
    r.result.closeFrames === 0 && r.result.connectionCloseHeaders === 0 && r.result.framesPerResponse === 1);
  const growth = data.longRss ? rssGrowthPercent(data.longRss.result.rssSamples) : null;
  const t = top('hello');
  return [
    judge({ target: `hello via Mongrel2, m2fleet -p 1 ÷ Python handler (${t} conns)`, value: ratioAtTop(data, 'hello', 'm2f-p1', 'python'), op: '>=', threshold: 1.0, unit: '×' }),
    judge({ target: `hello via Mongrel2, m2fleet -p 1 ÷ nginx + uWSGI (${t} conns)`, value: ratioAtTop(data, 'hello', 'm2f-p1', 'uwsgi'), op: '>=', threshold: 1.4, unit: '×' }),
    judge({ target: `hello, m2fleet -p 1 ÷ Mongrel2 static file (${t} conns)`, value: ratioAtTop(data, 'hello', 'm2f-p1', 'static'), op: '>=', threshold: 0.9, unit: '×' }),
    judge({ target: 'handler only, hello: handler CPU per request', value: orNull(summarize(hoValues(hello, (r) => r.result.handlerCpuMicrosPerRequest))), op: '<=', threshold: 15, unit: 'µs' }),
    judge({ target: 'handler only, hello: requests/s on one core', value: orNull(summarize(hoValues(hello, (r) => r.result.requestsPerSecond))), op: '>=', threshold: 65_000, unit: 'req/s' }),
    judge({ target: `Express via Mongrel2 -p 1 ÷ Express on node:http (${top('express')} conns)`, value: ratioAtTop(data, 'express', 'm2f-express', 'node-express'), op: '>=', threshold: 0.8, unit: '×' }),
    judge({ target: 'handler only, 5 ms CPU app: -p 2 ÷ -p 1', value: orNull(pairedRatio(hoValues(ho(data, 'cpu-p2'), (r) => r.result.requestsPerSecond), hoValues(ho(data, 'cpu-p1'), (r) => r.result.requestsPerSecond))), op: '>=', threshold: 1.7, unit: '×' }),
    judge({ target: 'hello via Mongrel2 at 8 conns: latency p50', value: orNull(summarize(lat?.rounds.map((r) => r?.latencyMs.p50 ?? NaN) ?? [])), op: '<=', threshold: 0.5, unit: 'ms' }),
    judge({ target: 'hello via Mongrel2 at 8 conns: latency p99', value: orNull(summarize(lat?.rounds.map((r) => r?.latencyMs.p99 ?? NaN) ?? [])), op: '<=', threshold: 1.5, unit: 'ms' }),
    judge({ target: 'same, Mongrel2 with download.flow_control=1: latency p50', value: orNull(summarize(latFc?.rounds.map((r) => r?.latencyMs.p50 ?? NaN) ?? [])), op: '<=', threshold: 0.5, unit: 'ms' }),
    judge({ target: 'same, Mongrel2 with download.flow_control=1: latency p99', value: orNull(summarize(latFc?.rounds.map((r) => r?.latencyMs.p99 ?? NaN) ?? [])), op: '<=', threshold: 1.5, unit: 'ms' }),
    judge({ target: 'RSS per process (largest m2fleet process after a handler-only hello run)', value: orNull(summarize(rss)), op: '<=', threshold: 70, unit: 'MiB' }),
    judge({ target: 'a worker process ready after its spawn', value: orNull(summarize(ready)), op: '<=', threshold: 300, unit: 'ms' }),
    judge({ target: 'RSS growth over 1,000,000 requests (--long-rss)', value: growth === null ? null : summarize([growth]), op: '<=', threshold: 10, unit: '%' }),
    judgeFlag('keep-alive kept, each ordinary response one ZeroMQ message (handler only)', 'no close, 1 frame/response', kept,
      kept === null ? '' : kept ? 'no close; 1.00 frame/response' : 'closes or extra frames seen (see table)'),
  ];
}

/** The targets as a table. */
export function targetTable(rows: TargetRow[]): Table {
  return { header: ['target', 'goal', 'measured: median (range)', 'status'], rows: rows.map((r) => [r.target, r.goal, r.measured, r.status]) };
}

/** One chart panel per workload. */
export function chartPanels(data: BenchData): ChartPanel[] {
  return data.workloads.map((w) => ({
    title: w.title,
    concurrencies: w.concurrencies,
    series: w.servers.map((server) => ({
      label: label(data, server),
      colour: data.servers.find((s) => s.id === server)?.colour ?? '#888',
      values: w.concurrencies.map((c) => {
        const x = cell(data, w.id, server, c);
        const s = summarize(rates(x));
        return x && !x.error && s.n > 0 ? s : null;
      }),
    })),
  }));
}

/** The terminal report. */
export function textReport(data: BenchData): string {
  const t = (table: Table): string => textTable(table.header, table.rows);
  return [
    `HTTP through wrk: median (min–max) of ${data.meta.rounds} round(s); "· R×" = the workload's m2fleet setup ÷ this row, paired per round`,
    t(httpTable(data)),
    '',
    'Handler only (ZeroMQ load generator, no HTTP):',
    t(handlerOnlyTable(data)),
    '',
    'Targets (issue 7):',
    t(targetTable(targetRows(data))),
    ...(data.notes.length > 0 ? ['', ...data.notes.map((n) => `note: ${n}`)] : []),
  ].join('\n');
}

/** The markdown document written to docs/bench.md. */
export function markdownReport(data: BenchData, chartFile: string | null): string {
  const md = (table: Table): string => markdownTable(table.header, table.rows);
  const m = data.meta;
  return [
    '# m2fleet benchmarks',
    '',
    `Measured by \`npm run bench\` (${m.mode}) on ${m.date}, commit \`${m.commit}\`, ` +
      `${m.machine}, Node ${m.node}; the whole run took ${m.minutes.toFixed(1)} minutes. ` +
      'This is a noisy shared 2-core machine: compare the paired ratios of this one run, ' +
      'not absolute numbers across runs or machines.',
    '',
    ...(chartFile ? [`![throughput by setup and concurrency](${chartFile})`, ''] : []),
    '## Through HTTP (wrk, keep-alive, 1 thread)',
    '',
    `Requests per second as median (min–max) of ${m.rounds} round(s) of ${m.seconds} s; ` +
      'setups interleaved, their order rotated every round. "· R×" is the workload\'s m2fleet ' +
      'setup ÷ that row, a ratio taken within each round and then summarised.',
    '',
    md(httpTable(data)),
    '',
    '## Handler only (ZeroMQ load generator in place of Mongrel2)',
    '',
    `Each run: a fresh handler, warm-up, then up to ${m.handlerOnlySeconds} s measured; median (range) of ` +
      `${m.rounds} round(s). Handler CPU is utime + stime of every process of the handler ` +
      '(m2fleet: the master, which forwards each message, and its workers) over the measured ' +
      'requests; "master share" is the part of it spent in the master process. "Pinned": the ' +
      'generator runs on CPU 0 and the whole handler on CPU 1.',
    '',
    md(handlerOnlyTable(data)),
    '',
    '## Targets (issue 7)',
    '',
    md(targetTable(targetRows(data))),
    '',
    ...(data.notes.length > 0 ? ['## Notes', '', ...data.notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
}

export { formatRate };
