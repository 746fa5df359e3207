/**
 * Runs a real nginx (Debian package nginx-light) for the uwsgi and FastCGI
 * socket tests: one server block per upstream, each on its own free port
 * on 127.0.0.1, with `location /` passing every request on. The instance
 * gets its own temp dir (config, pid, logs, temp paths) and `stop()` ends
 * the master it spawned (by pid) and removes the dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, waitForPort } from './ports.ts';
import { startWatchdog } from './watchdog.ts';

export const NGINX_BIN = '/usr/sbin/nginx';

/** One upstream nginx passes to. */
export interface NginxUpstream {
  kind: 'uwsgi' | 'fastcgi';
  /** `127.0.0.1:PORT` or `unix:/path`. */
  address: string;
  /** FastCGI only: keep upstream connections (fastcgi_keep_conn). */
  keepConn?: boolean;
  /** Pass responses on as they come instead of buffering them. */
  unbuffered?: boolean;
}

/** A running nginx. */
export interface NginxInstance {
  pid: number;
  /** One port per upstream, in the order given. */
  ports: number[];
  dir: string;
  /** The error log so far (for assertion messages). */
  errorLog(): string;
  stop(): Promise<void>;
}

function serverBlock(u: NginxUpstream, port: number, index: number): string {
  const pass = u.kind === 'uwsgi'
    ? `include /etc/nginx/uwsgi_params;\n        uwsgi_pass up${index};`
    : `include /etc/nginx/fastcgi_params;\n        fastcgi_pass up${index};`
      + (u.keepConn ? '\n        fastcgi_keep_conn on;' : '');
  const buffering = u.unbuffered ? `\n        ${u.kind}_buffering off;` : '';
  return `
    upstream up${index} {
      server ${u.address};${u.keepConn ? '\n      keepalive 4;' : ''}
    }
    server {
      listen 127.0.0.1:${port};
      location / {
        ${pass}${buffering}
      }
    }`;
}

/** Starts nginx in the foreground with one server per upstream. */
export async function startNginx(upstreams: NginxUpstream[]): Promise<NginxInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'm2fleet-nginx-'));
  const ports = await freePorts(upstreams.length);
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = `${user}daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    client_max_body_size 200m;
${upstreams.map((u, i) => serverBlock(u, ports[i]!, i)).join('\n')}
}
`;
  await writeFile(join(dir, 'nginx.conf'), conf);
  const child: ChildProcess = spawn(NGINX_BIN, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
  const stopWatchdog = startWatchdog(child.pid!, dir);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    stopWatchdog();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(ports.map((p) => waitForPort(p, 10_000)));
  } catch (err) {
    await stop();
    throw new Error(`nginx ${(err as Error).message}\n${stderr}`);
  }
  return {
    pid: child.pid!,
    ports,
    dir,
    errorLog: () => {
      const path = join(dir, 'error.log');
      return existsSync(path) ? readFileSync(path, 'utf8') : '';
    },
    stop,
  };
}
