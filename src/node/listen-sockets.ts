/**
 * The master's side of the standard sockets (--http, --socket,
 * --fastcgi-socket): it binds each address once, at start, and never
 * accepts on it. Every unit thread gets its own duplicate of the bound
 * socket (sent to its process over IPC, which duplicates the descriptor)
 * and listens and accepts on it, so all units of all processes share one
 * accept queue and a reload never closes the port: new processes listen
 * before the old ones stop.
 */
import { chmodSync, lstatSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { M2FleetError } from '../handler/errors.js';
import type { Logger } from '../handler/types.js';
import type { SocketSpec } from './config.js';

/** A bound (not listening) socket handle, as libuv wraps it. */
export interface BoundHandle {
  readonly fd: number;
  close(): void;
  /** TCP only: fills `out` with the bound address; returns 0 or an errno. */
  getsockname?(out: { address?: string; port?: number }): number;
}

/** A socket bound by the master. */
export interface BoundSocket {
  readonly spec: SocketSpec;
  readonly handle: BoundHandle;
  /** Unix sockets: the file's inode, so that only our own file is removed. */
  readonly inode: number | null;
}

// True when some process listens on the unix socket at `path` (Linux:
// /proc/net/unix lists bound sockets; flag 00010000 is "accepting").
function unixSocketListening(path: string): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return false;
  }
  return table.split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return f.length >= 8 && f.slice(7).join(' ') === path && (parseInt(f[3]!, 16) & 0x10000) !== 0;
  });
}

// Node's cluster module binds sockets for its workers with this function;
// it binds without listening, which is what the master needs. It is not
// documented, but it has kept this shape since Node 0.x.
type CreateServerHandle = (
  address: string | null, port: number, addressType: number, fd?: number, flags?: number,
) => BoundHandle | number;
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle;

/** A socket that cannot be bound; the message names the address. */
export class ListenError extends M2FleetError {
  constructor(spec: SocketSpec, why: string) {
    super('M2F_LISTEN', `cannot listen on ${spec.address} (${spec.kind}): ${why}`);
  }
}

function bindOne(spec: SocketSpec, mode: number | null, log: Logger): BoundSocket {
  let result: BoundHandle | number;
  if (spec.path !== null) {
    // A socket file left by a process that died is replaced; anything
    // else at that path is refused.
    try {
      if (!lstatSync(spec.path).isSocket()) throw new ListenError(spec, 'the path exists and is not a socket');
      if (unixSocketListening(spec.path)) throw new ListenError(spec, 'another process listens on that socket');
      log.warn({ path: spec.path }, 'replacing a stale socket file');
      rmSync(spec.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    result = createServerHandle(spec.path, -1, -1);
  } else {
    result = createServerHandle(spec.host, spec.port!, net.isIP(spec.host!));
  }
  if (typeof result === 'number') throw new ListenError(spec, getSystemErrorName(result));
  if (spec.path === null) {
    // libuv reports EADDRINUSE from bind only at listen time, leaving the
    // socket unbound; a thread listening on it would get a random port on
    // every interface. An unbound socket has port 0: refuse it here.
    const name: { address?: string; port?: number } = {};
    const err = result.getsockname?.(name) ?? 0;
    if (err !== 0 || !name.port || (spec.port !== 0 && name.port !== spec.port)) {
      result.close();
      throw new ListenError(spec, err !== 0 ? getSystemErrorName(err) : 'EADDRINUSE');
    }
  }
  if (spec.path !== null && mode !== null) chmodSync(spec.path, mode);
  if (spec.host === '0.0.0.0' || spec.host === '::') {
    log.warn({ kind: spec.kind, address: spec.address },
      'listening on every interface; give an address such as 127.0.0.1:PORT to limit it');
  }
  log.info({ kind: spec.kind, address: spec.path ?? `${spec.host}:${spec.port}` }, 'socket bound');
  return { spec, handle: result, inode: spec.path === null ? null : statSync(spec.path).ino };
}

/** Binds every socket, or none: a failure closes those already bound. */
export function bindSockets(specs: readonly SocketSpec[], mode: number | null, log: Logger): BoundSocket[] {
  const bound: BoundSocket[] = [];
  try {
    for (const spec of specs) bound.push(bindOne(spec, mode, log));
  } catch (err) {
    closeSockets(bound);
    throw err;
  }
  return bound;
}

/**
 * Closes the master's handles and removes its unix socket files (not a
 * file another instance has put at the same path since). Idempotent.
 */
export function closeSockets(bound: readonly BoundSocket[]): void {
  for (const b of bound) {
    if (closed.has(b)) continue;
    closed.add(b);
    b.handle.close();
    if (b.spec.path === null) continue;
    try {
      if (statSync(b.spec.path).ino === b.inode) rmSync(b.spec.path, { force: true });
    } catch {
      // Already gone.
    }
  }
}
const closed = new WeakSet<BoundSocket>();
