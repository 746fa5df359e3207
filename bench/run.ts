/**
 * `npm run bench`: m2fleet side by side with its peers, on 127.0.0.1 only.
 *
 *   npm run bench [-- --quick] [-- --long-rss] [-- --rounds N] [-- --seconds S]
 *                 [-- --workloads hello,echo] [-- --no-http] [-- --no-handler-only]
 *                 [-- --out DIR] [-- --max-minutes M]
 *
 * 1. Starts every server (each Mongrel2, m2fleet, the Python handler,
 *    nginx + uWSGI, node:http) on free ports and checks each answers right.
 * 2. Rounds: per workload and concurrency, runs wrk against every server
 *    in turn, the order rotated each round, so that noise hits all alike.
 * 3. Handler-only runs: the ZeroMQ generator feeds the Python handler and
 *    m2fleet directly (a fresh handler per run; ready time and RSS too).
 * 4. Prints one table and the targets; writes DIR/bench.md, bench.json,
 *    bench.svg and bench.png (default DIR: docs/, or bench/results/ for
 *    --quick). Everything it started is stopped by pid, even on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderChartSvg, svgToPng } from './lib/chart.ts';
import { summarizeProfile, topByFile, topBySelf, type CpuProfile } from './lib/cpuprofile.ts';
import { cleanupAll, killAllNow, makeTempDir } from './lib/children.ts';
import { runHandlerOnly, type HandlerOnlySpec } from './lib/handler-only.ts';
import type { BenchData, HandlerOnlyCell, HttpCell, ServerInfo, WorkloadInfo } from './lib/model.ts';
import { checkTools } from './lib/preflight.ts';
import { httpRequest, type CheckResponse } from './lib/net.ts';
import { chartPanels, markdownReport, textReport } from './lib/report.ts';
import {
  snapshotBuild, startM2fleetServer, startNginxUwsgiServer, startNodeHttpServer, startPythonServer, startStaticServer,
  type BenchPaths, type RunningServer,
} from './lib/servers.ts';
import { postScript, runWrk } from './lib/wrk.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PATHS: BenchPaths = { root: ROOT, cli: join(ROOT, 'dist', 'node', 'cli.js'), apps: join(ROOT, 'bench', 'apps') };

/** A 1 KiB JSON document for the echo workload (exactly 1024 bytes). */
export function jsonBody(size = 1024): string {
  const base = JSON.stringify({ id: 1, name: 'bench', tags: ['a', 'b'], pad: '' });
  return JSON.stringify({ id: 1, name: 'bench', tags: ['a', 'b'], pad: 'x'.repeat(size - base.length) });
}

const ECHO_BODY = jsonBody();
const HELLO = 'hello world\n';

interface ServerDef extends ServerInfo {
  start(): Promise<RunningServer>;
}

const SERVERS: ServerDef[] = [
  { id: 'm2f-p1', label: 'm2fleet -p 1', colour: '#1f77b4', start: () => startM2fleetServer(PATHS, 'plain.mjs', { processes: 1, threads: 1 }) },
  { id: 'm2f-p1-fc', label: 'm2fleet -p 1, flow control', colour: '#17becf', start: () => startM2fleetServer(PATHS, 'plain.mjs', { processes: 1, threads: 1 }, { flowControl: true }) },
  { id: 'm2f-p2', label: 'm2fleet -p 2', colour: '#6baed6', start: () => startM2fleetServer(PATHS, 'plain.mjs', { processes: 2, threads: 1 }) },
  { id: 'm2f-t2', label: 'm2fleet --threads 2', colour: '#9467bd', start: () => startM2fleetServer(PATHS, 'plain.mjs', { processes: 1, threads: 2 }) },
  { id: 'm2f-express', label: 'm2fleet -p 1 Express', colour: '#1f77b4', start: () => startM2fleetServer(PATHS, 'express.mjs', { processes: 1, threads: 1 }) },
  { id: 'm2f-hono', label: 'm2fleet -p 1 Hono', colour: '#1f77b4', start: () => startM2fleetServer(PATHS, 'hono.mjs', { processes: 1, threads: 1 }) },
  { id: 'static', label: 'Mongrel2 static file', colour: '#7f7f7f', start: () => startStaticServer() },
  { id: 'python', label: 'Python handler (pyzmq)', colour: '#2ca02c', start: () => startPythonServer(PATHS) },
  { id: 'uwsgi', label: 'nginx + uWSGI', colour: '#d62728', start: () => startNginxUwsgiServer(PATHS) },
  { id: 'node-plain', label: 'node:http', colour: '#ff7f0e', start: () => startNodeHttpServer(PATHS, 'plain.mjs') },
  { id: 'node-express', label: 'Express on node:http', colour: '#ff7f0e', start: () => startNodeHttpServer(PATHS, 'express.mjs') },
  { id: 'node-hono', label: 'Hono on node:http', colour: '#ff7f0e', start: () => startNodeHttpServer(PATHS, 'hono.mjs') },
];

type Checker = (r: CheckResponse) => string | null;

const expectBody = (want: string): Checker => (r) =>
  r.status !== 200 ? `status ${r.status}` : r.body.toString() === want ? null : `body ${JSON.stringify(r.body.toString().slice(0, 40))}`;
const expectLength = (n: number): Checker => (r) =>
  r.status !== 200 ? `status ${r.status}` : r.body.length === n ? null : `${r.body.length} bytes`;

interface WorkloadDef extends WorkloadInfo {
  method: 'GET' | 'POST';
  /** Path per server. */
  paths: Record<string, string>;
  check: Checker;
}

function workloads(concs: number[], helloConcs: number[]): WorkloadDef[] {
  return [
    { id: 'hello', title: 'plain (req, res) hello', base: 'm2f-p1', concurrencies: helloConcs, method: 'GET', check: expectBody(HELLO),
      servers: ['m2f-p1', 'm2f-p1-fc', 'm2f-p2', 'm2f-t2', 'python', 'uwsgi', 'static', 'node-plain'],
      paths: { static: '/hello.txt' } },
    { id: 'express', title: 'Express hello', base: 'm2f-express', concurrencies: concs, method: 'GET', check: expectBody(HELLO),
      servers: ['m2f-express', 'node-express'], paths: {} },
    { id: 'hono', title: 'fetch-style (Hono) hello', base: 'm2f-hono', concurrencies: concs, method: 'GET', check: expectBody(HELLO),
      servers: ['m2f-hono', 'node-hono'], paths: {} },
    { id: 'echo', title: '1 KB JSON POST echo', base: 'm2f-p1', concurrencies: concs, method: 'POST', check: expectBody(ECHO_BODY),
      servers: ['m2f-p1', 'python', 'uwsgi', 'node-plain'], paths: { '*': '/echo' } },
    { id: '1mb', title: '1 MB download', base: 'm2f-p1', concurrencies: concs, method: 'GET', check: expectLength(1024 * 1024),
      servers: ['m2f-p1', 'm2f-p1-fc', 'uwsgi', 'static', 'node-plain'], paths: { '*': '/1mb', static: '/1mb.bin' } },
    { id: 'cpu', title: '5 ms CPU-bound handler', base: 'm2f-p1', concurrencies: concs, method: 'GET', check: expectBody('done\n'),
      servers: ['m2f-p1', 'm2f-p2', 'm2f-t2', 'node-plain'], paths: { '*': '/cpu' } },
  ];
}

function pathOf(w: WorkloadDef, server: string): string {
  return w.paths[server] ?? w.paths['*'] ?? '/';
}

function handlerOnlySpecs(seconds: number): HandlerOnlySpec[] {
  // The request cap only bounds the latency buffer: runs end by time.
  const hello = { method: 'GET' as const, uri: '/', warmup: 5000, requests: Math.ceil(seconds * 150_000), seconds };
  const cpu = { method: 'GET' as const, uri: '/cpu', warmup: 40, requests: 100_000, seconds, window: 16 };
  return [
    { id: 'python', label: 'Python handler, hello', handler: { kind: 'python' }, load: { ...hello, window: 64 }, pin: true },
    { id: 'hello-p1', label: 'm2fleet -p 1, hello', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } }, load: { ...hello, window: 64 }, pin: true },
    { id: 'hello-p1-w8', label: 'm2fleet -p 1, hello', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } }, load: { ...hello, window: 8 }, pin: true },
    { id: 'hello-p1-fc', label: 'm2fleet -p 1, hello, flow control', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } }, load: { ...hello, window: 64, flowControl: true }, pin: true },
    { id: 'hello-p1-w8-fc', label: 'm2fleet -p 1, hello, flow control', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } }, load: { ...hello, window: 8, flowControl: true }, pin: true },
    { id: 'cpu-p1', label: 'm2fleet -p 1, 5 ms CPU', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } }, load: cpu, pin: false },
    { id: 'cpu-p2', label: 'm2fleet -p 2, 5 ms CPU', handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 2, threads: 1 } }, load: cpu, pin: false },
  ];
}

interface Flags {
  quick: boolean;
  profile: boolean;
  /** Re-render the outputs from a saved bench.json instead of measuring. */
  fromJson: string | null;
  longRss: boolean;
  rounds: number;
  seconds: number;
  workloads: string[] | null;
  http: boolean;
  handlerOnly: boolean;
  out: string;
  maxMinutes: number;
}

function readFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'from-json': { type: 'string' },
      'long-rss': { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      workloads: { type: 'string' },
      'no-http': { type: 'boolean', default: false },
      'no-handler-only': { type: 'boolean', default: false },
      out: { type: 'string' },
      'max-minutes': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(readUsage());
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const num = (v: string | undefined, d: number, name: string): number => {
    const n = v === undefined ? d : Number(v);
    if (!(n > 0)) throw new Error(`--${name} must be a positive number, got ${v}`);
    return n;
  };
  return {
    quick,
    profile: values.profile ?? false,
    fromJson: values['from-json'] ?? null,
    longRss: values['long-rss'] ?? false,
    rounds: Math.round(num(values.rounds, quick ? 1 : 3, 'rounds')),
    seconds: num(values.seconds, quick ? 1 : 5, 'seconds'),
    workloads: values.workloads ? values.workloads.split(',') : null,
    http: !values['no-http'],
    handlerOnly: !values['no-handler-only'],
    out: resolve(values.out ?? (quick ? join(ROOT, 'bench', 'results') : join(ROOT, 'docs'))),
    maxMinutes: num(values['max-minutes'], quick ? 10 : 45, 'max-minutes'),
  };
}

function readUsage(): string {
  return [
    'npm run bench -- [options]',
    '  --quick              1 round of 1 s at 8 connections; results to bench/results/',
    '  --profile            only profile m2fleet -p 1 under handler-only hello load (node --cpu-prof)',
    '                       and print where its time goes; profiles kept in bench/results/profile/',
    '  --from-json FILE     measure nothing: re-render bench.md/.svg/.png from a saved bench.json',
    '  --long-rss           also push 1,000,000 requests through m2fleet and report RSS growth',
    '  --rounds N           rounds of every run (default 3)',
    '  --seconds S          seconds per wrk run and per handler-only run (default 5)',
    '  --workloads a,b      only these of hello,express,hono,echo,1mb,cpu',
    '  --no-http            skip the wrk part',
    '  --no-handler-only    skip the ZeroMQ generator part',
    '  --out DIR            where bench.md/.json/.svg/.png go (default docs/)',
    '  --max-minutes M      stop everything after M minutes (default 45)',
    '',
  ].join('\n');
}

function log(text: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function machine(): string {
  const model = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
  return `${cpus().length} × ${model}, Linux ${release()}`;
}

function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${sha} (src modified)` : sha;
  } catch {
    return 'unknown';
  }
}

/** Starts the servers the chosen workloads need; a server that fails is reported, not fatal. */
async function startServers(chosen: WorkloadDef[], notes: string[]): Promise<Map<string, RunningServer>> {
  const needed = [...new Set(chosen.flatMap((w) => w.servers))];
  const running = new Map<string, RunningServer>();
  for (const def of SERVERS.filter((s) => needed.includes(s.id))) {
    log(`starting ${def.label}`);
    try {
      running.set(def.id, await def.start());
    } catch (err) {
      notes.push(`${def.label} did not start: ${(err as Error).message.split('\n')[0]}`);
      log(`${def.label} did not start: ${(err as Error).message}`);
    }
  }
  return running;
}

async function runHttp(flags: Flags, chosen: WorkloadDef[], data: BenchData, scratch: string): Promise<void> {
  const running = await startServers(chosen, data.notes);
  try {
    // Check every cell answers right before anything is measured.
    for (const w of chosen) {
      for (const server of w.servers) {
        const s = running.get(server);
        let error: string | undefined = s ? undefined : 'server did not start';
        if (s) {
          const body = w.method === 'POST' ? Buffer.from(ECHO_BODY) : undefined;
          error = await httpRequest(s.port, pathOf(w, server), w.method, body)
            .then((r) => w.check(r) ?? undefined, (err: Error) => err.message);
        }
        if (error) log(`${w.id} on ${server}: ${error}`);
        for (const c of w.concurrencies) {
          data.http.push({ workload: w.id, server, concurrency: c, rounds: [], ...(error ? { error } : {}) });
        }
      }
    }
    const cellOf = (w: string, s: string, c: number): HttpCell => data.http.find((x) =>
      x.workload === w && x.server === s && x.concurrency === c)!;
    const wrkOnce = async (w: WorkloadDef, server: string, c: number, seconds: number) => runWrk({
      url: `http://127.0.0.1:${running.get(server)!.port}${pathOf(w, server)}`,
      connections: c, seconds, scratchDir: scratch,
      ...(w.method === 'POST' ? { script: postScript(ECHO_BODY) } : {}),
    });

    if (!flags.quick) {
      log('warm-up: 1 s per setup and workload');
      for (const w of chosen) {
        for (const server of w.servers) {
          if (!cellOf(w.id, server, w.concurrencies[0]!).error) await wrkOnce(w, server, 8, 1).catch(() => null);
        }
      }
    }
    for (let round = 0; round < flags.rounds; round++) {
      for (const w of chosen) {
        for (const c of w.concurrencies) {
          for (const server of rotate(w.servers, round)) {
            const cell = cellOf(w.id, server, c);
            if (cell.error) continue;
            const r = await wrkOnce(w, server, c, flags.seconds).catch((err: Error) => {
              log(`round ${round + 1} ${w.id} ${server} c=${c}: ${err.message.split('\n')[0]}`);
              return null;
            });
            if (r && (r.non2xx > 0 || r.socketErrors > 0)) {
              data.notes.push(`round ${round + 1}, ${w.id} on ${server} at ${c} conns: ${r.non2xx} non-2xx answers, ${r.socketErrors} socket errors`);
            }
            cell.rounds[round] = r;
            log(`round ${round + 1}/${flags.rounds} ${w.id} ${server} c=${c}: ${r ? Math.round(r.requestsPerSecond) : 'failed'} req/s`);
          }
        }
      }
    }
  } finally {
    for (const [id, s] of running) {
      log(`stopping ${id}`);
      await s.stop().catch((err: Error) => log(`stopping ${id}: ${err.message}`));
    }
  }
}

async function runHandlerOnlyPart(flags: Flags, data: BenchData): Promise<void> {
  const specs = handlerOnlySpecs(flags.seconds);
  for (const spec of specs) {
    data.handlerOnly.push({ id: spec.id, label: spec.label, pinned: spec.pin, window: spec.load.window, rounds: [] });
  }
  for (let round = 0; round < flags.rounds; round++) {
    for (const spec of rotate(specs, round)) {
      const cell = data.handlerOnly.find((x) => x.id === spec.id)! as HandlerOnlyCell;
      try {
        const r = await runHandlerOnly(PATHS, spec);
        cell.rounds[round] = r;
        if (r.result.stalled || (r.result.receiveErrors ?? 0) > 0 || r.result.malformed > 0) {
          data.notes.push(`handler-only ${spec.id}, round ${round + 1}: ${r.result.unanswered ?? 0} request(s) left unanswered ` +
            `for 10 s (measured up to the last reply), ${r.result.malformed} malformed or unexpected replies, ` +
            `${r.result.receiveErrors ?? 0} receive errors${r.result.lastReceiveError ? ` (${r.result.lastReceiveError})` : ''}.`);
        }
        log(`handler-only round ${round + 1} ${spec.id}: ${Math.round(r.result.requestsPerSecond)} req/s, ` +
          `${r.result.handlerCpuMicrosPerRequest.toFixed(1)} µs CPU/req, generator ${r.result.generatorCores.toFixed(2)} cores`);
      } catch (err) {
        cell.rounds[round] = null;
        data.notes.push(`handler-only ${spec.id}, round ${round + 1} failed: ${(err as Error).message.split('\n')[0]}`);
        log((err as Error).message);
      }
    }
  }
}

async function runLongRss(data: BenchData): Promise<void> {
  log('long RSS run: 1,000,000 requests through m2fleet -p 1 (a few minutes)');
  const spec: HandlerOnlySpec = {
    id: 'long-rss', label: 'm2fleet -p 1, hello, 1M requests', pin: true,
    handler: { kind: 'm2fleet', app: 'plain.mjs', flags: { processes: 1, threads: 1 } },
    load: { method: 'GET', uri: '/', window: 64, warmup: 20_000, requests: 1_000_000, seconds: 900, sampleRss: true },
  };
  try {
    data.longRss = await runHandlerOnly(PATHS, spec);
  } catch (err) {
    data.notes.push(`long RSS run failed: ${(err as Error).message.split('\n')[0]}`);
  }
}

function addNotes(data: BenchData): void {
  const py = data.handlerOnly.find((x) => x.id === 'python');
  const pyRuns = py?.rounds.filter((r) => r !== null) ?? [];
  if (pyRuns.length > 0) {
    const best = pyRuns.reduce((a, b) => (a.result.requestsPerSecond > b.result.requestsPerSecond ? a : b));
    data.notes.push(`generator ceiling: it drove the Python handler at ${Math.round(best.result.requestsPerSecond).toLocaleString('en-US')} req/s ` +
      `using ${best.result.generatorCores.toFixed(2)} of its core, so it outruns any handler slower than that.`);
  }
  const busy = data.handlerOnly.flatMap((x) => x.rounds.filter((r) => r && x.id !== 'python' && r.result.generatorCores > 0.9));
  if (busy.length > 0) data.notes.push(`${busy.length} m2fleet handler-only run(s) had the generator above 0.9 cores: their rate may be the generator's limit.`);
  if (data.longRss) {
    const s = data.longRss.result.rssSamples;
    const span = Math.max(1, Math.floor(s.length / 4));
    const peaks = (from: number, to: number): string => s[0]!.rssMiB
      .map((_, p) => Math.max(...s.slice(from, to).map((x) => x.rssMiB[p] ?? 0)).toFixed(1)).join(' + ');
    if (s.length >= 2) {
      data.notes.push(`long RSS run: ${data.longRss.result.requests.toLocaleString('en-US')} requests, ${s.length} samples; `
        + `peak RSS MiB per process ${peaks(0, span)} in the first quarter → ${peaks(s.length - span, s.length)} in the last.`);
    }
  }
  data.notes.push('Mongrel2 runs with its defaults (no download.flow_control), so m2fleet keeps keep-alive with several units; every Mongrel2 and nginx writes its access log.');
  data.notes.push('nginx runs 1 worker and uWSGI 1 process (no threads), like m2fleet -p 1 behind one Mongrel2; wrk uses 1 thread.');
  data.notes.push('m2fleet runs with its defaults, which include --sched-policy batch (its threads under SCHED_BATCH); the peers, Mongrel2 and wrk run under the normal policy.');
}

async function writeOutputs(flags: Flags, data: BenchData): Promise<void> {
  mkdirSync(flags.out, { recursive: true });
  const svgPath = join(flags.out, 'bench.svg');
  const pngPath = join(flags.out, 'bench.png');
  const subtitle = `${data.meta.date} · ${data.meta.machine} · median of ${data.meta.rounds} round(s), whiskers = range`;
  writeFileSync(svgPath, renderChartSvg('m2fleet and peers: requests/s by setup and concurrency', subtitle, chartPanels(data)));
  const png = await svgToPng(svgPath, pngPath);
  if (!png.ok) data.notes.push(`no PNG chart: ${png.reason}; see bench.svg`);
  writeFileSync(join(flags.out, 'bench.json'), `${JSON.stringify(data, null, 1)}\n`);
  writeFileSync(join(flags.out, 'bench.md'), markdownReport(data, png.ok ? 'bench.png' : 'bench.svg'));
  log(`wrote ${relative(ROOT, join(flags.out, 'bench.md'))}, bench.json, bench.svg${png.ok ? ', bench.png' : ''}`);
}

/** Runs the hello handler-only load against m2fleet under --cpu-prof and prints the top functions. */
async function runProfile(flags: Flags): Promise<void> {
  const dir = join(ROOT, 'bench', 'results', 'profile');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const spec = handlerOnlySpecs(flags.seconds).find((x) => x.id === 'hello-p1')!;
  const r = await runHandlerOnly({ ...PATHS, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] }, spec);
  const lines = [`profiled m2fleet -p 1 under handler-only hello load (window 64, pinned): ` +
    `${Math.round(r.result.requestsPerSecond)} req/s, ${r.result.handlerCpuMicrosPerRequest.toFixed(1)} µs CPU/req ` +
    `(by pid: ${Object.entries(r.result.cpuSecondsByPid).map(([pid, s]) => `${pid} ${s.toFixed(2)} s`).join(', ')})`];
  lines.push('', 'CPU per request by thread (µs; pid/tid name):');
  for (const [key, sec] of Object.entries(r.result.cpuSecondsByThread ?? {}).sort((a, b) => b[1] - a[1])) {
    lines.push(`  ${((sec / Math.max(1, r.result.requests)) * 1e6).toFixed(1).padStart(6)}  ${key}${key.startsWith(`${r.result.rootPid}/`) ? '  (master)' : ''}`);
  }
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const summary = summarizeProfile(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile);
    lines.push('', `${file} (pid.thread): ${summary.totalMs.toFixed(0)} ms sampled`, ...topBySelf(summary, 25),
      '  by file:', ...topByFile(summary, 12));
  }
  process.stdout.write(`${lines.join('\n')}\n\nprofiles: ${relative(ROOT, dir)}/ (open in Chrome DevTools or speedscope)\n`);
}

async function main(): Promise<void> {
  const flags = readFlags(process.argv.slice(2));
  if (flags.fromJson) {
    const saved = JSON.parse(readFileSync(flags.fromJson, 'utf8')) as BenchData;
    saved.notes = saved.notes.filter((n) => !n.startsWith('no PNG chart'));
    await writeOutputs({ ...flags, out: flags.out === join(ROOT, 'docs') ? dirname(resolve(flags.fromJson)) : flags.out }, saved);
    process.stdout.write(`${textReport(saved)}\n`);
    return;
  }
  const started = Date.now();
  const problems = checkTools(PATHS.cli);
  if (problems.length > 0) {
    throw new Error(`cannot run the bench:\n  ${problems.join('\n  ')}\nrun: bash scripts/setup.sh`);
  }
  const scratch = makeTempDir('m2fleet-bench-');
  PATHS.cli = snapshotBuild(ROOT, scratch);
  if (flags.profile) {
    await runProfile(flags);
    return;
  }
  const concs = flags.quick ? [8] : [8, 64];
  const helloConcs = flags.quick ? [8] : [1, 8, 64];
  const all = workloads(concs, helloConcs);
  const chosen = flags.workloads ? all.filter((w) => flags.workloads!.includes(w.id)) : all;
  const data: BenchData = {
    meta: {
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC', commit: commit(), machine: machine(),
      node: process.versions.node, mode: flags.quick ? 'quick' : flags.longRss ? 'full, with --long-rss' : 'full',
      rounds: flags.rounds, seconds: flags.seconds, handlerOnlySeconds: flags.seconds, minutes: 0,
    },
    servers: SERVERS.map(({ id, label, colour }) => ({ id, label, colour })),
    workloads: chosen.map(({ id, title, base, concurrencies, servers }) => ({ id, title, base, concurrencies, servers })),
    http: [], handlerOnly: [], longRss: null, notes: [],
  };
  if (flags.http) await runHttp(flags, chosen, data, scratch);
  if (flags.handlerOnly) await runHandlerOnlyPart(flags, data);
  if (flags.longRss) await runLongRss(data);
  data.meta.minutes = (Date.now() - started) / 60_000;
  addNotes(data);
  await writeOutputs(flags, data);
  process.stdout.write(`${textReport(data)}\n`);
}

let finishing = false;
async function finish(code: number, why?: string): Promise<never> {
  if (why) log(why);
  if (!finishing) {
    finishing = true;
    await cleanupAll().catch(() => killAllNow());
  }
  process.exit(code);
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  process.on('SIGINT', () => void finish(130, 'interrupted; stopping everything'));
  process.on('SIGTERM', () => void finish(143, 'terminated; stopping everything'));
  process.on('exit', () => killAllNow());
  const flags = (() => {
    try {
      return readFlags(process.argv.slice(2));
    } catch (err) {
      process.stderr.write(`bench: ${(err as Error).message}\n${readUsage()}`);
      process.exit(2);
    }
  })();
  const limit = setTimeout(() => void finish(1, `--max-minutes ${flags.maxMinutes} passed; stopping everything`),
    flags.maxMinutes * 60_000);
  limit.unref();
  main().then(() => finish(0), (err: Error) => finish(1, `failed: ${err.stack ?? err.message}`));
}
