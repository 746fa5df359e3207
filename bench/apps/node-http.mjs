/**
 * Serves a bench app straight from node:http (the Node ceiling):
 *   node bench/apps/node-http.mjs APP_MODULE PORT
 * A fetch-style app goes through @hono/node-server's getRequestListener
 * without replacing the global Request/Response, as m2fleet does by default.
 * Prints "listening" once bound on 127.0.0.1:PORT.
 */
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { getRequestListener } from '@hono/node-server';

const [modulePath, port] = process.argv.slice(2);
const app = (await import(pathToFileURL(resolve(modulePath)).href)).default;
const listener = typeof app?.fetch === 'function'
  ? getRequestListener((req) => app.fetch(req), { overrideGlobalObjects: false })
  : app;
const server = http.createServer(listener);
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
