/**
 * Loopback helpers: free ports (the kernel's choice, port 0) and one
 * bounded HTTP request to check a setup answers what it should before it
 * is measured. Waiting for a port to accept is test/helpers/ports.ts's
 * waitForPort.
 */
import http from 'node:http';
import { createServer, type Server } from 'node:net';

/** `count` distinct ports that were free on 127.0.0.1 a moment ago. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      servers.push(await new Promise<Server>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(s));
      }));
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** One response, fully read. */
export interface CheckResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP/1.1 request to 127.0.0.1 (5 s bound). */
export function httpRequest(port: number, path: string, method = 'GET', body?: Buffer): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { host: 'localhost' };
    if (body) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
    }
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`no answer from 127.0.0.1:${port}${path} in 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}
