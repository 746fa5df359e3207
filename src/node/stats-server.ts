/**
 * The master's stats server: a small node:http server answering
 *
 *   GET /metrics  Prometheus text format 0.0.4
 *   GET /healthz  200 "ok" while the master runs
 *   GET /readyz   200 when enough units are ready, else 503 and why
 *   GET /status   the fleet snapshot as JSON (what `m2fleet status` reads)
 *
 * Anything else is 404; another method on these paths is 405.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { M2FleetError } from '../handler/errors.js';
import type { Logger } from '../handler/types.js';
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './metrics.js';
import type { FleetSnapshot } from './snapshot.js';

/** Options of {@link startStatsServer}. */
export interface StatsServerOptions {
  /** Address to listen on; must be loopback unless `allowPublic`. */
  host: string;
  /** TCP port; 0 picks a free one (see the returned address). */
  port: number;
  /** Called on every request for the fleet's current state. */
  snapshot: () => FleetSnapshot;
  log?: Logger;
  /**
   * Listen on a non-loopback address (default false). The endpoints show
   * pids, unit ids and memory, so exposing them is a deliberate choice; a
   * warning is logged when it is made.
   */
  allowPublic?: boolean;
}

/** A running stats server. */
export interface StatsServer {
  /** Where it listens, with the real port when 0 was asked. */
  address: { host: string; port: number };
  /** Stops listening and ends idle keep-alive connections. */
  close(): Promise<void>;
}

/** True for 127.0.0.0/8, ::1, an IPv4-mapped loopback, and `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

type Reply = { status: number; type: string; body: string };

function text(status: number, body: string): Reply {
  return { status, type: 'text/plain; charset=utf-8', body: body + '\n' };
}

function readiness(s: FleetSnapshot): Reply {
  const ready = s.processes
    .flatMap((p) => p.units)
    .filter((u) => u.state === 'ready').length;
  if (ready >= s.desiredUnits) return text(200, `ready ${ready}/${s.desiredUnits}`);
  return text(503, `not ready: ${ready} of ${s.desiredUnits} units ready`);
}

function route(path: string, snapshot: () => FleetSnapshot): Reply {
  switch (path) {
    case '/metrics':
      return { status: 200, type: PROMETHEUS_CONTENT_TYPE, body: renderPrometheus(snapshot()) };
    case '/healthz':
      return text(200, 'ok');
    case '/readyz':
      return readiness(snapshot());
    case '/status':
      return {
        status: 200,
        type: 'application/json; charset=utf-8',
        body: JSON.stringify(snapshot()) + '\n',
      };
    default:
      return text(404, 'not found');
  }
}

const PATHS = new Set(['/metrics', '/healthz', '/readyz', '/status']);

function handle(
  req: IncomingMessage, res: ServerResponse, opts: StatsServerOptions,
): void {
  const path = (req.url ?? '/').split('?')[0]!;
  let reply: Reply;
  if (PATHS.has(path) && req.method !== 'GET' && req.method !== 'HEAD') {
    reply = text(405, 'method not allowed');
    res.setHeader('allow', 'GET, HEAD');
  } else {
    try {
      reply = route(path, opts.snapshot);
    } catch (err) {
      opts.log?.error({ err, path }, 'stats snapshot failed');
      reply = text(500, 'snapshot failed');
    }
  }

  res.writeHead(reply.status, {
    'content-type': reply.type,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : reply.body);
}

/**
 * Starts the stats server and resolves once it listens. Throws
 * `M2F_STATS_PUBLIC` for a non-loopback host without `allowPublic`, and
 * rejects with the listen error (EADDRINUSE, EACCES) otherwise.
 */
export async function startStatsServer(opts: StatsServerOptions): Promise<StatsServer> {
  if (!isLoopback(opts.host)) {
    if (!opts.allowPublic) {
      throw new M2FleetError('M2F_STATS_PUBLIC',
        `stats server: refusing to listen on non-loopback address ${opts.host}; allow it explicitly to expose pids, unit ids and memory`,
        { value: opts.host });
    }
    opts.log?.warn({ host: opts.host, port: opts.port }, 'stats server listens on a public address');
  }

  const server = createServer((req, res) => handle(req, res, opts));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const bound = server.address() as AddressInfo;
  const address = { host: opts.host, port: bound.port };
  opts.log?.info(address, 'stats server listening');
  return {
    address,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeIdleConnections();
    }),
  };
}
