/**
 * Free TCP ports on 127.0.0.1 for tests. Each port comes from the kernel
 * (listen on port 0), so two test runs on one machine do not collide.
 * Also waiting for a port to accept (tests and bench both use it).
 */
import { connect, createServer, type Server } from 'node:net';

/** Listens on 127.0.0.1:0 and resolves with the open server. */
function listenOnAnyPort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Closes a server and waits for it. */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Reads the port a listening server got. */
function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error('free port: server has no TCP address');
  }
  return address.port;
}

/**
 * Returns one TCP port that was free on 127.0.0.1 a moment ago.
 * There is a small race: another process may take it before the caller
 * binds it. Throws if the kernel refuses to bind.
 */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/**
 * Returns `count` distinct free ports on 127.0.0.1. All listeners are held
 * open until every port is known, so the kernel cannot hand one out twice.
 */
export async function freePorts(count: number): Promise<number[]> {
  if (!Number.isInteger(count) || count < 0 || count > 1000) {
    throw new RangeError(`freePorts: count must be 0..1000, got ${count}`);
  }
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnAnyPort());
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(closeServer));
  }
}

/** One TCP connect attempt to 127.0.0.1:port (1 s bound). */
function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok); };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Resolves once 127.0.0.1:port accepts TCP, trying every 50 ms. Throws
 * `exited before listening on 127.0.0.1:PORT` as soon as running() turns
 * false, or `did not listen on 127.0.0.1:PORT within N ms` after timeoutMs;
 * callers put the server's name in front.
 */
export async function waitForPort(port: number, timeoutMs: number, running: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!running()) throw new Error(`exited before listening on 127.0.0.1:${port}`);
    if (await canConnect(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}
