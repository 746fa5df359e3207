/**
 * Free TCP ports on 127.0.0.1 for tests. Each port comes from the kernel
 * (listen on port 0), so two test runs on one machine do not collide.
 */
import { createServer, type Server } from 'node:net';

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
