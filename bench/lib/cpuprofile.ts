/**
 * Reads V8 .cpuprofile files (written by `node --cpu-prof`) and sums the
 * time per function: self time (the function itself) and total time (with
 * everything it called), so a profile can be read as a top-N list.
 */

/** The parts of a V8 CPU profile this reader uses. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** One function's share of a profile. */
export interface FunctionCost {
  name: string;
  /** file:line, shortened to the part after node_modules/ or the repo. */
  where: string;
  selfMs: number;
  totalMs: number;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '').replace(/^.*\/bench\//, 'bench/');
}

/** Sums self and total time per function (keyed by name + place). */
export function summarizeProfile(profile: CpuProfile): { totalMs: number; functions: FunctionCost[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }

  const costs = new Map<string, FunctionCost>();
  const keyOf = (id: number): { key: string; name: string; where: string } => {
    const f = byId.get(id)!.callFrame;
    const name = f.functionName || '(anonymous)';
    const where = f.url ? `${shortUrl(f.url)}:${f.lineNumber + 1}` : '';
    return { key: `${name} ${where}`, name, where };
  };
  const entry = (id: number): FunctionCost => {
    const { key, name, where } = keyOf(id);
    let c = costs.get(key);
    if (!c) {
      c = { name, where, selfMs: 0, totalMs: 0 };
      costs.set(key, c);
    }
    return c;
  };
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    totalUs += us;
    entry(id).selfMs += us / 1000;
    // Charge total time once per distinct function on the stack (recursion).
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { key } = keyOf(at);
      if (seen.has(key)) continue;
      seen.add(key);
      entry(at).totalMs += us / 1000;
    }
  }
  return { totalMs: totalUs / 1000, functions: [...costs.values()] };
}

/** "name (where)  self  total" lines for the top `n` by self time, idle excluded. */
export function topBySelf(summary: { totalMs: number; functions: FunctionCost[] }, n: number): string[] {
  const busy = summary.functions.filter((f) => f.name !== '(idle)' && f.name !== '(program)' && f.name !== '(root)');
  const busyMs = busy.reduce((a, f) => a + f.selfMs, 0);
  return busy.sort((a, b) => b.selfMs - a.selfMs).slice(0, n).map((f) =>
    `${((f.selfMs / Math.max(busyMs, 1e-9)) * 100).toFixed(1).padStart(5)}%  ${f.selfMs.toFixed(0).padStart(6)} ms  ${f.name}  ${f.where}`);
}

/** Self time summed per source file (node internals, packages, dist/ files), top `n`. */
export function topByFile(summary: { functions: FunctionCost[] }, n: number): string[] {
  const byFile = new Map<string, number>();
  let busyMs = 0;
  for (const f of summary.functions) {
    if (f.name === '(idle)' || f.name === '(program)' || f.name === '(root)') continue;
    const file = f.where ? f.where.replace(/:\d+$/, '') : f.name;
    byFile.set(file, (byFile.get(file) ?? 0) + f.selfMs);
    busyMs += f.selfMs;
  }
  return [...byFile].sort((a, b) => b[1] - a[1]).slice(0, n).map(([file, ms]) =>
    `${((ms / Math.max(busyMs, 1e-9)) * 100).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(6)} ms  ${file}`);
}
