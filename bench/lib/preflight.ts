/**
 * Checks, before anything starts, that every tool the bench drives is
 * installed (scripts/setup.sh installs them all) and that dist/ is built.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { RSVG_BIN } from './chart.ts';
import { NGINX_BIN, PYTHON_BIN, UWSGI_BIN, UWSGI_PLUGINS } from './servers.ts';
import { WRK_BIN } from './wrk.ts';

/** What each required file is and which Debian package brings it. */
const REQUIRED: [path: string, what: string][] = [
  ['/usr/bin/mongrel2', 'Mongrel2 (Debian package mongrel2-core)'],
  ['/usr/bin/m2sh', 'm2sh (Debian package mongrel2-core)'],
  [WRK_BIN, 'wrk (Debian package wrk)'],
  [PYTHON_BIN, 'python3'],
  [NGINX_BIN, 'nginx (Debian package nginx-light)'],
  [UWSGI_BIN, 'uWSGI (Debian package uwsgi-core)'],
  [`${UWSGI_PLUGINS}/python3_plugin.so`, 'uWSGI Python 3 plugin (Debian package uwsgi-plugin-python3)'],
  ['/usr/bin/taskset', 'taskset (Debian package util-linux)'],
];

/** Problems that stop the bench (empty when all is there). */
export function checkTools(cli: string): string[] {
  const problems = REQUIRED.filter(([path]) => !existsSync(path)).map(([path, what]) => `missing ${path}: ${what}`);
  if (!existsSync(cli)) problems.push(`missing ${cli}: run npm run build`);
  try {
    execFileSync(PYTHON_BIN, ['-c', 'import zmq'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    problems.push(`${PYTHON_BIN} cannot import zmq (Debian package python3-zmq)`);
  }
  return problems;
}

/** Tools whose absence only costs an output (the PNG chart). */
export function optionalToolNotes(): string[] {
  return existsSync(RSVG_BIN) ? [] : [`${RSVG_BIN} missing (Debian package librsvg2-bin): the chart stays SVG`];
}
