// deploy/: ansible-lint, a syntax check, systemd-analyze on the units, and a
// real converge of deploy/ansible/site.yml onto test hosts: a Mongrel2 host,
// a main and a fleet host (and a second fleet host that a failing first
// batch must never reach). A test host is a network namespace plus
// a private directory mounted over one shared path (the fleet's paths are
// the same on every host, as the cluster requires, but each host has its
// own files); Ansible reaches it through its Python, a wrapper that enters
// both. There is no systemd here, so the roles run their service scripts.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateGroupKeyLine } from '../../src/cluster/keys.ts';
import { REPO_ROOT } from '../helpers/fleet.ts';
import { createLan, netnsAvailable, type Lan } from '../helpers/netns.ts';
import { startWatchdog } from '../helpers/watchdog.ts';

const DEPLOY = path.join(REPO_ROOT, 'deploy');
const ANSIBLE = path.join(DEPLOY, 'ansible');
const ROLES = path.join(ANSIBLE, 'roles');

interface Ran { code: number | null; stdout: string; stderr: string }

/** Commands still running (each the leader of its own process group). */
const running = new Set<ChildProcess>();

/** Runs a command in its own process group; kills the group after timeoutMs. */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const timer = setTimeout(() => {
      stderr += `\n[test: killed after ${opts.timeoutMs} ms]`;
      killGroup(child);
    }, opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Whether a command is on the PATH. */
function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const TOOLS = ['ansible-playbook', 'ansible-lint', 'systemd-analyze'];
function requireTools(): void {
  const missing = TOOLS.filter((t) => !have(t));
  assert.deepEqual(missing, [], `missing ${missing.join(', ')}: run scripts/setup.sh`);
}

/** Ansible's environment: its temp files under `dir`, no colour, JSON output when asked. */
function ansibleEnv(dir: string, json: boolean): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ANSIBLE_CONFIG: path.join(ANSIBLE, 'ansible.cfg'),
    ANSIBLE_LOCAL_TEMP: path.join(dir, 'ansible-local'),
    ANSIBLE_REMOTE_TEMP: path.join(dir, 'ansible-remote'),
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORCE_COLOR: '0',
    NO_COLOR: '1',
    ...(json ? { ANSIBLE_STDOUT_CALLBACK: 'json' } : {}),
  };
}

describe('deploy/: lint, syntax and units', () => {
  let dir = '';
  before(() => {
    requireTools();
    dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-deploy-static-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ansible-lint passes with the production profile', async () => {
    const r = await run('ansible-lint', ['-c', path.join(DEPLOY, '.ansible-lint'), 'ansible'],
      { cwd: DEPLOY, env: ansibleEnv(dir, false), timeoutMs: 120_000 });
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    assert.match(out, /Passed with production profile: 0 failure\(s\), 0 warning\(s\) on \d+ files/);
  });

  test('the playbook passes ansible-playbook --syntax-check with the example inventory', async () => {
    const r = await run('ansible-playbook', ['--syntax-check', '-i', 'inventory/example', 'site.yml'],
      { cwd: ANSIBLE, env: ansibleEnv(dir, false), timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /playbook: site\.yml/);
  });

  test('the role stops on a Node.js older than 20.6, or none, naming what it found', async () => {
    const old = path.join(dir, 'node18');
    writeFileSync(old, '#!/bin/sh\necho v18.19.0\n', { mode: 0o755 });
    const inventory = path.join(dir, 'preflight-hosts.yml');
    const host = { ansible_connection: 'local', ansible_python_interpreter: '/usr/bin/python3' };
    writeFileSync(inventory, JSON.stringify({ all: { hosts: {
      old: { ...host, m2fleet_node: old },
      missing: { ...host, m2fleet_node: path.join(dir, 'no-such-node') },
      current: { ...host, m2fleet_node: process.execPath },
    } } }));
    const play = path.join(dir, 'preflight.yml');
    writeFileSync(play, JSON.stringify([{
      name: 'Preflight', hosts: 'all', gather_facts: false,
      vars: { m2fleet_release_archive: '/nonexistent.tar.gz', m2fleet_zeromq: ['tcp://127.0.0.1:1,tcp://127.0.0.1:2'],
        m2fleet_packages: [] },
      tasks: [{ name: 'Preflight', 'ansible.builtin.include_role': { name: path.join(ROLES, 'm2fleet'), tasks_from: 'preflight' } }],
    }]));
    const r = summarize(await run('ansible-playbook', ['-i', inventory, play],
      { cwd: dir, env: ansibleEnv(dir, true), timeoutMs: 60_000 }));
    assert.notEqual(r.code, 0);
    assert.equal(r.stats['current']?.['failures'], 0, r.failures.join('\n'));
    assert.equal(r.failures.length, 2, r.failures.join('\n'));
    const failure = (h: string): string => r.failures.find((f) => f.startsWith(`${h}: `)) ?? '';
    assert.match(failure('old'), /needs Node\.js 20\.6 or newer at \S+node18, found v18\.19\.0\. Debian 12/);
    assert.match(failure('missing'),
      /needs Node\.js 20\.6 or newer at \S+no-such-node, found none \(.*No such file.*\)\. Debian 12/);
  });

  test('the units the roles write pass systemd-analyze verify, and deploy/systemd holds the defaults',
    async () => {
      // Rendered by Ansible from the roles' own templates and variables.
      const render = path.join(dir, 'render.yml');
      const m2fleetRole = path.join(ROLES, 'm2fleet');
      const mongrel2Role = path.join(ROLES, 'mongrel2');
      writeFileSync(render, JSON.stringify([{
        name: 'Render the units', hosts: 'localhost', connection: 'local', gather_facts: false,
        vars_files: [`${m2fleetRole}/defaults/main.yml`, `${m2fleetRole}/vars/main.yml`,
          `${mongrel2Role}/defaults/main.yml`, `${mongrel2Role}/vars/main.yml`],
        tasks: [
          { name: 'defaults', 'ansible.builtin.template': {
            src: `${m2fleetRole}/templates/m2fleet.service.j2`, dest: `${dir}/defaults/m2fleet.service`, mode: '0644' } },
          { name: 'here', 'ansible.builtin.template': {
            src: `${m2fleetRole}/templates/m2fleet.service.j2`, dest: `${dir}/here/m2fleet.service`, mode: '0644' },
          vars: { m2fleet_node: process.execPath, m2fleet_mercy: 7 } },
          { name: 'mongrel2', 'ansible.builtin.template': {
            src: `${mongrel2Role}/templates/mongrel2.service.j2`, dest: `${dir}/here/mongrel2.service`, mode: '0644' } },
        ],
      }]));
      mkdirSync(path.join(dir, 'defaults'));
      mkdirSync(path.join(dir, 'here'));
      const r = await run('ansible-playbook', ['-i', 'localhost,', render],
        { cwd: dir, env: ansibleEnv(dir, false), timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);

      // The unit for people without Ansible is the role's, with the defaults.
      const body = (text: string): string => text.replace(/^(#.*\n)+/, '');
      const shipped = readFileSync(path.join(DEPLOY, 'systemd/m2fleet.service'), 'utf8');
      assert.equal(body(shipped), body(readFileSync(path.join(dir, 'defaults/m2fleet.service'), 'utf8')));

      // Stop waits for the drain: mercy 7 s gives TimeoutStopSec 27; reload is SIGHUP.
      const here = readFileSync(path.join(dir, 'here/m2fleet.service'), 'utf8');
      assert.match(here, /^TimeoutStopSec=27$/m);
      assert.match(here, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
      assert.match(here, /^KillMode=mixed$/m);
      assert.match(here, new RegExp(`^ExecStart=${process.execPath} /opt/m2fleet/current/dist/node/cli\\.js --config /etc/m2fleet/m2fleet\\.json$`, 'm'));

      // systemd is not PID 1 here; verify still loads and checks unit files
      // offline. It exits 0 on warnings, so any output fails too.
      const units = ['m2fleet.service', 'mongrel2.service'].map((u) => path.join(dir, 'here', u));
      if (!existsSync('/usr/bin/mongrel2')) units.pop();
      const verify = await run('systemd-analyze', ['verify', ...units], { timeoutMs: 30_000 });
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.equal(verify.stdout + verify.stderr, '');

      // ...and it does catch a broken unit here.
      const broken = path.join(dir, 'broken', 'm2fleet.service');
      mkdirSync(path.dirname(broken));
      writeFileSync(broken, here.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node')
        .replace(/^KillMode=mixed$/m, 'KillMode=mixed\nNoSuchSetting=1'));
      const bad = await run('systemd-analyze', ['verify', broken], { timeoutMs: 30_000 });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /\/nonexistent\/node/);
      assert.match(bad.stderr, /NoSuchSetting/);
    });
});

// ---------------------------------------------------------------- converge

/**
 * One host of the test inventory: its namespace and address, and `root`,
 * its private directory, which it sees at the shared path.
 */
interface TestHost { name: string; ns: string; address: string; root: string; python: string }

/** What the JSON callback says of one run. */
interface PlaybookRun {
  code: number | null;
  /** Per host: ok, changed, failures, unreachable, skipped. */
  stats: Record<string, Record<string, number>>;
  /** Failed task results, one line each, for assertion messages. */
  failures: string[];
  /** Tasks that reported a change (name and diff), per host. */
  changedTasks: Record<string, string[]>;
  /** Every task name run, per host, in order. */
  tasks: Record<string, string[]>;
  raw: string;
}

interface JsonCallback {
  plays: { tasks: { task: { name: string }; hosts: Record<string, Record<string, unknown>> }[] }[];
  stats: Record<string, Record<string, number>>;
}

function summarize(r: Ran): PlaybookRun {
  const start = r.stdout.indexOf('{');
  let parsed: JsonCallback | null = null;
  try {
    parsed = start < 0 ? null : JSON.parse(r.stdout.slice(start)) as JsonCallback;
  } catch {
    parsed = null;
  }
  const failures: string[] = [];
  const changedTasks: Record<string, string[]> = {};
  const tasks: Record<string, string[]> = {};
  for (const play of parsed?.plays ?? []) {
    for (const t of play.tasks) {
      for (const [host, res] of Object.entries(t.hosts)) {
        (tasks[host] ??= []).push(t.task.name);
        if (res['changed'] === true) {
          const diff = res['diff'] === undefined ? '' : ` ${JSON.stringify(res['diff']).slice(0, 400)}`;
          (changedTasks[host] ??= []).push(`${t.task.name}${diff}`);
        }
        if (res['failed'] === true || res['unreachable'] === true) {
          const why = [res['msg'], res['stderr'], (res['results'] as unknown[] | undefined)
            ?.map((x) => (x as Record<string, unknown>)['msg'])]
            .filter((x) => x !== undefined && x !== '').map((x) => JSON.stringify(x)).join(' ');
          failures.push(`${host}: ${t.task.name}: ${why}`);
        }
      }
    }
  }
  if (parsed === null) failures.push(`no JSON from ansible-playbook; stderr: ${r.stderr.slice(-2000)}`);
  return { code: r.code, stats: parsed?.stats ?? {}, failures, changedTasks, tasks, raw: r.stdout + r.stderr };
}

const available = netnsAvailable();

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone
  }
}

/** Alive and not a zombie (this machine's init may not reap). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('deploy/ansible/site.yml converges on namespace hosts and serves through Mongrel2',
  { skip: available.ok ? false : available.why }, () => {
    let lan: Lan | undefined;
    let dir = '';
    let inventoryFile = '';
    let keyLine = '';
    const hosts: Record<'m2' | 'main' | 'f1' | 'f2', TestHost> = {} as never;
    const group = `239.${10 + (randomBytes(1)[0]! % 200)}.${randomBytes(1)[0]! % 250}.${1 + (randomBytes(1)[0]! % 250)}:1717`;
    /**
     * Per host, the service pid last seen and the disarm of its watchdog,
     * which kills it (Mongrel2's also removes `dir`) if this test
     * process dies before after() runs.
     */
    const watchdogs = new Map<string, { pid: number; disarm: () => void }>();
    const appArchive = (version: string): string => path.join(dir, `app-${version}.tar.gz`);

    /** The m2fleet hosts deployed to; f2 only appears when the first batch fails. */
    const fleetHosts = (): TestHost[] => [hosts.main, hosts.f1];
    /** Where a host sees its private directory. */
    let shared = '';
    const pidfileOf = (h: TestHost): string => h === hosts.m2
      ? path.join(h.root, 'srv/mongrel2/run/mongrel2.pid') : path.join(h.root, 'run/m2fleet-service.pid');
    const configOf = (h: TestHost): string => path.join(h.root, 'etc/m2fleet.json');

    /** The service pid of a host from its pidfile; a watchdog follows it. */
    function pidOf(h: TestHost): number {
      const pid = Number(readFileSync(pidfileOf(h), 'utf8').trim());
      assert.ok(Number.isSafeInteger(pid) && pid > 1, `bad pidfile of ${h.name}`);
      const watched = watchdogs.get(h.name);
      if (watched?.pid !== pid) {
        // A replaced pid is gone; its number may be reused by anyone.
        watched?.disarm();
        watchdogs.set(h.name, { pid, disarm: startWatchdog(pid, h === hosts.m2 ? dir : '') });
      }
      return pid;
    }

    function writeInventory(extra: Record<string, Record<string, unknown>> = {}, withF2 = false): void {
      const hostVars = (h: TestHost): Record<string, unknown> => ({
        ansible_python_interpreter: h.python, ...extra[h.name],
      });
      const m2 = hosts.m2;
      const inventory = {
        all: {
          vars: { ansible_connection: 'local', ansible_become: false },
          children: {
            mongrel2: {
              hosts: { m2: hostVars(m2) },
              vars: {
                mongrel2_address: m2.address,
                // Installed already; the apt task would only look.
                mongrel2_package: '',
                mongrel2_chroot: `${shared}/srv/mongrel2`, mongrel2_log_dir: `${shared}/log`,
                mongrel2_user: 'root', mongrel2_group: 'root', mongrel2_user_create: false,
                mongrel2_service_manager: 'script',
                mongrel2_bind: m2.address, mongrel2_port: 6767,
                mongrel2_settings: { 'zeromq.threads': 1 },
                mongrel2_handlers: [{
                  route: '/', send_spec: `tcp://${m2.address}:9999`,
                  recv_spec: `tcp://${m2.address}:9998`,
                  ident: "{{ ('m2fleet-' ~ inventory_hostname) | to_uuid }}",
                }],
                mongrel2_m2fleet_endpoint: `tcp://${m2.address}:9999,tcp://${m2.address}:9998`,
              },
            },
            m2fleet: {
              vars: {
                m2fleet_release_archive: path.join(dir, 'm2fleet.tar.gz'),
                m2fleet_app_archive: appArchive('v1'),
                m2fleet_app_name: 'probe', m2fleet_app_module: 'app.mjs',
                m2fleet_node: process.execPath, m2fleet_packages: [],
                m2fleet_prefix: `${shared}/opt`, m2fleet_config_dir: `${shared}/etc`,
                m2fleet_state_dir: `${shared}/var`, m2fleet_run_dir: `${shared}/run`,
                m2fleet_log_dir: `${shared}/log`, m2fleet_app_root: `${shared}/srv/apps`,
                m2fleet_user: 'root', m2fleet_group: 'root', m2fleet_user_create: false,
                m2fleet_service_manager: 'script',
                m2fleet_cluster_group: group, m2fleet_cluster_name: 'deploy-test',
                m2fleet_cluster_key: keyLine,
                m2fleet_cluster_endpoint_hosts: [m2.address],
                m2fleet_mercy: 5, m2fleet_health_delay: 1, m2fleet_health_retries: 40,
              },
              children: {
                m2fleet_main: {
                  hosts: { main: { ...hostVars(hosts.main), m2fleet_cluster_iface: hosts.main.address } },
                  vars: {
                    m2fleet_zeromq: "{{ groups['mongrel2'] | map('extract', hostvars, 'mongrel2_m2fleet_endpoint') | list }}",
                  },
                },
                m2fleet_fleet: {
                  hosts: {
                    f1: { ...hostVars(hosts.f1), m2fleet_cluster_iface: hosts.f1.address },
                    ...(withF2 ? { f2: { ...hostVars(hosts.f2), m2fleet_cluster_iface: hosts.f2.address } } : {}),
                  },
                },
              },
            },
          },
        },
      };
      writeFileSync(inventoryFile, JSON.stringify(inventory, null, 2));
    }

    async function playbook(extraVars: Record<string, unknown> = {},
      { batch = 2, limit = 'all' } = {}): Promise<PlaybookRun> {
      const r = await run('ansible-playbook', ['-i', inventoryFile, 'site.yml', '--diff', '--limit', limit,
        '-e', JSON.stringify({ m2fleet_batch: batch, ...extraVars })],
      { cwd: ANSIBLE, env: ansibleEnv(dir, true), timeoutMs: 150_000 });
      const summary = summarize(r);
      // The group key never shows in Ansible's output.
      assert.ok(!summary.raw.includes(keyLine.split(' ')[1]!), 'the cluster key was printed');
      return summary;
    }

    /** Runs a node script in a host's namespace; returns its JSON output. */
    function inNamespace(h: TestHost, script: string): Promise<unknown> {
      return new Promise((resolve, reject) => {
        execFile('ip', ['netns', 'exec', h.ns, process.execPath, '--input-type=module', '-e', script],
          { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
            if (err) reject(new Error(`${h.name}: ${err.message} ${stderr}`));
            else resolve(JSON.parse(stdout));
          });
      });
    }

    interface Status {
      masterPid: number;
      desiredUnits: number;
      processes: { pid: number; units: { state: string }[] }[];
      cluster?: { role: string; state: string; version: number; digest: string | null };
    }
    const statusOf = (h: TestHost): Promise<Status> => inNamespace(h, `
      const r = await fetch('http://127.0.0.1:9191/status', { signal: AbortSignal.timeout(5000) });
      console.log(JSON.stringify(await r.json()));`) as Promise<Status>;

    /** `count` requests from the Mongrel2 host through Mongrel2: each answer's JSON or an error. */
    const requests = (count: number): Promise<({ pid: number; app: string } | string)[]> =>
      inNamespace(hosts.m2, `
        const out = [];
        for (let i = 0; i < ${count}; i++) {
          try {
            const r = await fetch('http://${hosts.m2.address}:6767/who?i=' + i,
              { headers: { connection: 'close' }, signal: AbortSignal.timeout(10000) });
            out.push(r.status === 200 ? await r.json() : 'status ' + r.status);
          } catch (e) { out.push(String(e.cause?.code ?? e.message)); }
        }
        console.log(JSON.stringify(out));`) as Promise<({ pid: number; app: string } | string)[]>;

    function writeApp(version: string): void {
      const src = path.join(dir, `app-${version}`);
      mkdirSync(src);
      writeFileSync(path.join(src, 'app.mjs'), `// deploy test app ${version}
export default function app(req, res) {
  const body = JSON.stringify({ pid: process.pid, app: ${JSON.stringify(version)} });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
`);
      const tar = spawnSync('tar', ['-czf', appArchive(version), '-C', src, '.']);
      assert.equal(tar.status, 0, String(tar.stderr));
    }

    const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

    /**
     * Kills, by pid, a running ansible-playbook (its process group) and
     * everything still running in our namespaces, and removes `dir`: at the
     * end, on exit or on Ctrl-C. Registered before the namespaces exist, so
     * it runs before netns.ts deletes them.
     */
    const sweep = (): void => {
      for (const child of running) killGroup(child);
      for (const h of lan?.hosts ?? []) {
        const left = spawnSync('ip', ['netns', 'pids', h.ns], { encoding: 'utf8' }).stdout ?? '';
        for (const pid of left.split('\n').map(Number).filter((p) => p > 1)) signal(pid, 'SIGKILL');
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    };
    const onSignal = (name: NodeJS.Signals): void => {
      sweep();
      // netns.ts's own handler, when there is one, deletes the namespaces and exits.
      if (process.listenerCount(name) === 1) process.exit(name === 'SIGINT' ? 130 : 143);
    };

    before(async () => {
      requireTools();
      process.on('exit', sweep);
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      dir = mkdtempSync(path.join(tmpdir(), 'm2fleet-deploy-'));
      const release = await run(path.join(DEPLOY, 'make-release.sh'), [path.join(dir, 'm2fleet.tar.gz')],
        { timeoutMs: 60_000 });
      assert.equal(release.code, 0, release.stderr);
      writeApp('v1');
      writeApp('v2');
      keyLine = generateGroupKeyLine(1);
      lan = await createLan(4);
      shared = path.join(dir, 'fleet');
      mkdirSync(shared);
      (['m2', 'main', 'f1', 'f2'] as const).forEach((name, i) => {
        const root = path.join(dir, 'hosts', name);
        mkdirSync(root, { recursive: true });
        const { ns, address } = lan!.hosts[i]!;
        // The host's Python: in its namespace, with its directory mounted at
        // the shared path (ip netns exec gives each command its own mount
        // namespace, so the mount is seen by that command alone, and by the
        // services it starts).
        const python = path.join(dir, `python-${name}`);
        writeFileSync(python, `#!/bin/sh
exec ip netns exec ${ns} /bin/sh -c 'mount --bind "$1" "$2" && shift 2 && exec /usr/bin/python3 "$@"' ${name} ${root} ${shared} "$@"
`, { mode: 0o755 });
        hosts[name] = { name, ns, address, root, python };
      });
      inventoryFile = path.join(dir, 'inventory.yml');
      writeInventory();
    });

    after(async () => {
      for (const child of running) killGroup(child);
      // The services, by pid: SIGTERM (a drain of at most mercy, 5 s), then
      // SIGKILL for whatever still runs in our namespaces.
      const pids = Object.values(hosts).flatMap((h) => {
        try {
          return [Number(readFileSync(pidfileOf(h), 'utf8').trim())].filter((p) => p > 1);
        } catch {
          return [];
        }
      });
      for (const pid of pids) signal(pid, 'SIGTERM');
      for (let i = 0; i < 80 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
      sweep();
      for (const { disarm } of watchdogs.values()) disarm();
      await lan?.destroy();
      process.off('exit', sweep);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });

    test('a first run installs and starts everything; a second run changes nothing', async () => {
      const first = await playbook();
      assert.deepEqual(first.failures, []);
      assert.equal(first.code, 0, first.raw.slice(-3000));
      for (const name of ['m2', 'main', 'f1']) {
        assert.equal(first.stats[name]?.['failures'], 0, name);
        assert.ok((first.stats[name]?.['changed'] ?? 0) > 0, `${name} changed nothing`);
      }
      for (const h of fleetHosts()) {
        // The key is private; the config was written (and checked) by the role.
        assert.equal(statSync(path.join(h.root, 'etc/cluster.key')).mode & 0o777, 0o600);
        assert.equal(readFileSync(path.join(h.root, 'etc/cluster.key'), 'utf8'), `${keyLine}\n`);
        const config = JSON.parse(readFileSync(configOf(h), 'utf8')) as Record<string, unknown>;
        assert.equal(config['cluster'], group);
        assert.equal('zeromq' in config, h === hosts.main, `${h.name}: ${JSON.stringify(config)}`);
        pidOf(h);
      }
      pidOf(hosts.m2);

      const second = await playbook();
      assert.deepEqual(second.failures, []);
      assert.equal(second.code, 0);
      for (const name of ['m2', 'main', 'f1']) {
        assert.equal(second.stats[name]?.['failures'], 0, name);
        assert.equal(second.stats[name]?.['changed'], 0,
          `${name} changed: ${JSON.stringify(second.changedTasks[name])}`);
      }
    });

    test('the main and the fleet host serve through Mongrel2, and the fleet runs the main\'s version',
      async () => {
        const statuses = await Promise.all(fleetHosts().map(statusOf));
        const [main, ...followers] = statuses;
        assert.equal(main!.cluster?.role, 'main');
        assert.ok((main!.cluster?.version ?? 0) > 0);
        for (const f of followers) {
          assert.equal(f.cluster?.role, 'follower');
          assert.equal(f.cluster?.state, 'running');
          assert.equal(f.cluster?.version, main!.cluster!.version);
          assert.equal(f.cluster?.digest, main!.cluster!.digest);
        }
        const answers = await requests(30);
        assert.ok(answers.every((a) => typeof a === 'object' && a.app === 'v1'), JSON.stringify(answers));
        statuses.forEach((s, i) => {
          const workers = new Set(s.processes.map((p) => p.pid));
          assert.ok(answers.some((a) => typeof a === 'object' && workers.has(a.pid)),
            `${fleetHosts()[i]!.name} served none of ${JSON.stringify(answers)}`);
        });
      });
    test('a new app reloads the fleet host, a new config restarts the main, and the fleet adopts it',
      async () => {
        const before = Object.fromEntries(fleetHosts().map((h) => [h.name, pidOf(h)]));
        const oldVersion = (await statusOf(hosts.main)).cluster!.version;
        // Only the fleet changes, so only the fleet is deployed.
        const changed = await playbook({ m2fleet_app_archive: appArchive('v2'), m2fleet_processes: 2 },
          { limit: 'm2fleet' });
        assert.deepEqual(changed.failures, []);
        assert.equal(changed.code, 0);
        assert.deepEqual(Object.keys(changed.stats).sort(), ['f1', 'main']);

        // The main restarted (its config changed); the fleet host only
        // switched the app's link and reloaded.
        const ran = (host: string, task: string): boolean =>
          (changed.changedTasks[host] ?? []).some((t) => t.startsWith(`m2fleet : ${task}`));
        assert.ok(ran('main', 'Restart m2fleet (script)'), JSON.stringify(changed.changedTasks['main']));
        assert.ok(!ran('main', 'Reload m2fleet'), 'the main was reloaded after its restart');
        assert.ok(ran('f1', 'Reload m2fleet (script)'), JSON.stringify(changed.changedTasks['f1']));
        assert.ok(!ran('f1', 'Restart m2fleet'), 'f1 was restarted');
        assert.notEqual(pidOf(hosts.main), before['main']);
        assert.equal(pidOf(hosts.f1), before['f1']);

        // The main announced a new version and the follower runs it: two
        // processes each, all serving the new app.
        const [main, ...followers] = await Promise.all(fleetHosts().map(statusOf));
        assert.ok(main!.cluster!.version > oldVersion, `${main!.cluster!.version} <= ${oldVersion}`);
        for (const f of [main!, ...followers]) {
          assert.equal(f.cluster!.version, main!.cluster!.version);
          assert.equal(f.desiredUnits, 2);
        }
        const answers = await requests(20);
        assert.ok(answers.every((a) => typeof a === 'object' && a.app === 'v2'), JSON.stringify(answers));
      });

    test('a bad variable fails the first batch in m2fleet check, and nothing after it runs', async () => {
      const configs = Object.fromEntries(fleetHosts().map((h) => [h.name, sha256(configOf(h))]));
      const pids = Object.fromEntries(fleetHosts().map((h) => [h.name, pidOf(h)]));
      // f1, the first batch of one, gets a value m2fleet refuses; f2, a new
      // fleet host, is the second batch; the main would get a new process
      // count if its play ran.
      writeInventory({ f1: { m2fleet_extra_config: { 'max-inflight': 0 } } }, true);
      const failed = await playbook({ m2fleet_app_archive: appArchive('v2'), m2fleet_processes: 3 },
        { batch: 1, limit: 'm2fleet' });
      assert.notEqual(failed.code, 0);
      assert.equal(failed.failures.length, 1, failed.failures.join('\n'));
      assert.match(failed.failures[0]!, /^f1: m2fleet : Write the configuration, checked by m2fleet: /);
      assert.match(failed.failures[0]!, /maxInflight \(--max-inflight\): expected a whole number >= 1/);
      // Nothing ran after the failing batch: not f2's batch, not the main.
      assert.deepEqual(Object.keys(failed.tasks), ['f1']);
      assert.deepEqual(readdirSync(hosts.f2.root), [], 'something was installed on f2');
      for (const h of fleetHosts()) {
        assert.equal(sha256(configOf(h)), configs[h.name], `${h.name}'s config changed`);
        assert.equal(pidOf(h), pids[h.name], `${h.name} was restarted`);
      }
      const answers = await requests(10);
      assert.ok(answers.every((a) => typeof a === 'object' && a.app === 'v2'), JSON.stringify(answers));
    });
  });
