/**
 * One bounded HTTP request to 127.0.0.1, to check a setup answers what it
 * should before it is measured. Free ports and waiting for a port to accept
 * are test/helpers/ports.ts's, shared with the tests.
 */
import http from 'node:http';

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
