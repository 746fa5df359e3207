/**
 * Test hosts in Linux network namespaces. A LAN is one "switch" namespace
 * holding a bridge, plus one namespace per host joined to it by a veth.
 * Nothing is created in the root namespace: its interfaces, routes and
 * multicast stay untouched, and the 10.x addresses exist only inside the
 * namespaces. Every name is `m2f-<6 hex>...`, and everything made here is
 * deleted by destroy(), or on process exit or SIGINT/SIGTERM at the latest.
 */
import { execFile, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One test host: its namespace, its LAN address and interface name. */
export interface LanHost {
  ns: string;
  address: string;
  iface: string;
}

/** Which incoming datagrams dropRandom() drops. */
export type DropMatch = 'udp' | 'multicast';

/** A LAN of namespaces on one bridge; see {@link createLan}. */
export interface Lan {
  hosts: LanHost[];
  /** Runs `cmd args` in namespace `ns`; rejects on a non-zero exit. */
  exec(ns: string, cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Starts `ip netns exec ns cmd args`; destroy() ends it by pid. */
  spawn(ns: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Adds one more veth to the bridge in `ns`, with its own address. */
  addInterface(ns: string): Promise<{ iface: string; address: string }>;
  /**
   * Drops that share (0-1) of incoming UDP in `ns`, chosen at random by
   * nft `numgen random`; with match 'multicast' only UDP to 224.0.0.0/4.
   * Replaces the previous drop rule of that namespace; 0 removes it.
   */
  dropRandom(ns: string, proportion: number, match?: DropMatch): Promise<void>;
  /** Ends spawned processes, deletes every namespace; throws on leftovers. */
  destroy(): Promise<void>;
}

/** Namespaces still to delete, across every LAN of this process. */
const liveNamespaces = new Set<string>();
/** Processes still to end, across every LAN of this process. */
const liveChildren = new Set<ChildProcess>();
/** Probe script folders still to remove. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/** Whether namespace tests can run here; `why` says what is missing. */
export function netnsAvailable(): { ok: boolean; why?: string } {
  if (process.platform !== 'linux') return { ok: false, why: 'network namespaces need Linux' };
  if (process.getuid?.() !== 0) return { ok: false, why: 'network namespaces need root' };
  const version = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (version.error !== undefined || version.status !== 0) {
    return { ok: false, why: 'the ip command (iproute2) is not installed' };
  }

  const probe = `m2f-${randomBytes(3).toString('hex')}`;
  const added = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (added.status !== 0) {
    return { ok: false, why: `ip netns add failed: ${added.stderr.trim()}` };
  }
  const deleted = spawnSync('ip', ['netns', 'del', probe], { encoding: 'utf8' });
  if (deleted.status !== 0) {
    return { ok: false, why: `ip netns del ${probe} failed: ${deleted.stderr.trim()}` };
  }
  return { ok: true };
}

/** Whether the nft command (nftables) is installed. */
export function nftAvailable(): boolean {
  const result = spawnSync('nft', ['--version'], { encoding: 'utf8' });
  return result.error === undefined && result.status === 0;
}

/** Runs a command and rejects with its stderr on failure. */
export function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

/** Creates a namespace, recorded for cleanup before it exists. */
export async function addNamespace(ns: string): Promise<void> {
  installExitHook();
  liveNamespaces.add(ns);
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

/** Deletes a namespace; veths inside it go with it. */
export async function deleteNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'del', ns]);
  liveNamespaces.delete(ns);
}

/** Starts `ip netns exec ns cmd args`, ended by pid at cleanup. */
export function spawnIn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  installExitHook();
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

/** Ends a spawned process by pid and waits (at most 5 s) for it. */
export async function endChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
  clearTimeout(timer);
}

/**
 * Builds a LAN: a switch namespace with a bridge (multicast snooping off,
 * so every port sees every group), and `hostCount` host namespaces, each
 * with lo up, a veth to the bridge addressed 10.R.R.N/24 (R random, N the
 * host's number from 1) and a 224.0.0.0/4 route on that veth.
 */
export async function createLan(hostCount: number): Promise<Lan> {
  const id = randomBytes(3).toString('hex');
  const prefix = `10.${1 + (randomBytes(1)[0]! % 250)}.${randomBytes(1)[0]! % 250}`;
  const sw = `m2f-${id}-sw`;
  const bridge = `m2f-${id}-br`;
  const namespaces: string[] = [sw];
  const children = new Set<ChildProcess>();
  let links = 0;

  const link = async (ns: string, hostNumber: number): Promise<{ iface: string; address: string }> => {
    links++;
    const iface = `m2f-${id}-${links}`;
    const port = `m2f-${id}-p${links}`;
    const address = `${prefix}.${hostNumber}`;
    // Made inside the switch namespace and moved straight into the host,
    // so neither end ever appears in the root namespace.
    await run('ip', ['-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', iface, 'netns', ns]);
    await run('ip', ['-n', sw, 'link', 'set', port, 'master', bridge, 'up']);
    await run('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', iface]);
    await run('ip', ['-n', ns, 'link', 'set', iface, 'up']);
    return { iface, address };
  };

  const lan: Lan = {
    hosts: [],
    exec: (ns, cmd, args) => run('ip', ['netns', 'exec', ns, cmd, ...args]),
    spawn(ns, cmd, args, opts) {
      const child = spawnIn(ns, cmd, args, opts);
      children.add(child);
      return child;
    },
    addInterface: (ns) => link(ns, 100 + links),
    async dropRandom(ns, proportion, match = 'udp') {
      await dropRandomIn(ns, proportion, match);
    },
    async destroy() {
      await Promise.all([...children].map(endChild));
      const failures: string[] = [];
      for (const ns of namespaces) {
        await deleteNamespace(ns).catch((error: Error) => failures.push(error.message));
      }
      const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
      for (const ns of namespaces) if (left.includes(ns)) failures.push(`namespace ${ns} still exists`);
      if (failures.length > 0) throw new Error(`LAN cleanup failed: ${failures.join('; ')}`);
    },
  };

  try {
    await addNamespace(sw);
    await run('ip', ['-n', sw, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0']);
    await run('ip', ['-n', sw, 'link', 'set', bridge, 'up']);
    for (let n = 1; n <= hostCount; n++) {
      const ns = `m2f-${id}-h${n}`;
      namespaces.push(ns);
      await addNamespace(ns);
      const { iface, address } = await link(ns, n);
      await run('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', iface]);
      lan.hosts.push({ ns, address, iface });
    }
  } catch (error) {
    await lan.destroy().catch(() => {});
    throw error;
  }
  return lan;
}

/** nft rule dropping a random share of incoming UDP; see Lan.dropRandom. */
export async function dropRandomIn(ns: string, proportion: number, match: DropMatch = 'udp'): Promise<void> {
  if (!(proportion >= 0 && proportion <= 1)) throw new Error(`dropRandom: proportion ${proportion} not in 0-1`);
  const table = 'm2f_drop';
  await run('ip', ['netns', 'exec', ns, 'nft', `add table inet ${table}`]);
  await run('ip', ['netns', 'exec', ns, 'nft', `delete table inet ${table}`]);
  if (proportion === 0) return;

  const what = match === 'multicast' ? 'ip daddr 224.0.0.0/4 meta l4proto udp' : 'meta l4proto udp';
  const threshold = Math.round(proportion * 10_000);
  const script = [
    `add table inet ${table}`,
    `add chain inet ${table} input { type filter hook input priority -10; policy accept; }`,
    // numgen yields 0-9999; at 1.0 the comparison would be out of range.
    proportion === 1
      ? `add rule inet ${table} input ${what} counter drop`
      : `add rule inet ${table} input ${what} numgen random mod 10000 < ${threshold} counter drop`,
  ].join('\n');
  await run('ip', ['netns', 'exec', ns, 'nft', script]);
}

/** Deletes whatever is left; synchronous, for exit and signal hooks. */
function cleanupNow(): void {
  for (const child of liveChildren) if (child.pid !== undefined) child.kill('SIGKILL');
  for (const ns of liveNamespaces) {
    const result = spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' });
    if (result.status !== 0) {
      process.stderr.write(`netns cleanup: ip netns del ${ns} failed: ${result.stderr}\n`);
    }
  }
  liveNamespaces.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', cleanupNow);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanupNow();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

const transportModule = fileURLToPath(new URL('../../src/cluster/udp-transport.ts', import.meta.url));

/**
 * A script that runs one UDP transport in a child process (inside a
 * namespace), driven by lines on stdin and reporting JSON lines on stdout:
 *   stdin:  {"op":"send","data":"x"} | {"op":"sendTo","data":"x","address":"a","port":1}
 *           | {"op":"close"}
 *   stdout: {"event":"ready"} | {"event":"message","data":"x","from":{...}}
 *           | {"event":"error","code":"M2F_...","message":"..."}
 * argv[2] is JSON: {"transport": UdpTransportOptions} or {"choose": iface | null}.
 * It exits by itself after 30 s. Returns the script path and a remover.
 */
export function writeTransportProbe(): { path: string; remove(): void } {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), 'm2f-probe-'));
  liveDirs.add(dir);
  const path = join(dir, 'probe.mts');
  writeFileSync(
    path,
    `import { createInterface } from 'node:readline';
import { chooseInterface, createUdpTransport } from ${JSON.stringify(transportModule)};
const print = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\\n');
setTimeout(() => process.exit(3), 30_000).unref();
const args = JSON.parse(process.argv[2] ?? '{}');
try {
  if ('choose' in args) {
    print({ event: 'chosen', ...chooseInterface(args.choose ?? undefined) });
    process.exit(0);
  }
  const transport = await createUdpTransport(args.transport);
  transport.onMessage((d, from) => print({ event: 'message', data: d.toString(), from }));
  const lines = createInterface({ input: process.stdin });
  lines.on('line', async (line) => {
    const cmd = JSON.parse(line);
    if (cmd.op === 'send') transport.send(Buffer.from(cmd.data));
    if (cmd.op === 'sendTo') transport.sendTo(Buffer.from(cmd.data), cmd.address, cmd.port);
    if (cmd.op === 'close') { await transport.close(); process.exit(0); }
  });
  lines.on('close', () => process.exit(0));
  print({ event: 'ready' });
} catch (error) {
  print({ event: 'error', code: (error as { code?: string }).code, message: (error as Error).message });
  process.exit(1);
}
`,
  );
  const remove = (): void => {
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };
  return { path, remove };
}

/** A running probe: commands in, events out. */
export interface Probe {
  child: ChildProcess;
  events: Record<string, unknown>[];
  command(cmd: Record<string, unknown>): void;
  /** Resolves with the first event matching, or rejects after `ms`. */
  waitFor(match: (event: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

/** Starts a probe in `ns` with node + tsx, from the repository root. */
export function startProbe(ns: string, script: string, args: unknown): Probe {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const child = spawnIn(ns, process.execPath, ['--import', 'tsx', script, JSON.stringify(args)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) if (line.trim() !== '') events.push(JSON.parse(line));
    for (const wake of waiters) wake();
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  return {
    child,
    events,
    command: (cmd) => child.stdin!.write(`${JSON.stringify(cmd)}\n`),
    waitFor(match, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = events.find(match);
          if (found === undefined) return;
          done();
          resolve(found);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`probe in ${ns}: no matching event in ${ms} ms; events ${JSON.stringify(events)}; stderr ${stderr}`));
        }, ms);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
