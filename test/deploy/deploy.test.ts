// deploy/: ansible-lint, a syntax check, systemd-analyze on the units, and a
// real converge of deploy/ansible/site.yml onto test hosts made of network
// namespaces: a Mongrel2 host, a main and two fleet hosts, each with its own
// install prefix under a temp dir and its services run by the roles'
// service scripts inside the host's namespace (there is no systemd here).
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
