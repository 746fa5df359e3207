// Hono 4 example for m2fleet: `m2fleet --module examples/hono-app.mjs`.
// A fetch-style app: m2fleet hosts `app.fetch` through @hono/node-server.
import { getConnInfo } from '@hono/node-server/conninfo';
import { Hono } from 'hono';

const MIB = 1024 * 1024;
const MAX_MB = 1024;
const PATTERN_PERIOD = 251;
const CHUNK = Uint8Array.from(
  { length: PATTERN_PERIOD * 256 },
  (_, i) => i % PATTERN_PERIOD,
);

/** `size` bytes where byte i is i % 251, produced as the consumer pulls. */
function patternStream(size) {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) {
        controller.close();
        return;
      }
      const n = Math.min(CHUNK.length, size - sent);
      sent += n;
      controller.enqueue(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
}

const app = new Hono();

app.get('/', (c) => c.text('Hello from Hono via m2fleet\n'));

app.get('/json', (c) => c.json({ framework: 'hono', ok: true }));

// The request body stream becomes the response body, unread by Hono.
app.post('/echo', (c) => {
  const headers = {
    'content-type': c.req.header('content-type') ?? 'application/octet-stream',
  };
  const length = c.req.header('content-length');
  if (length !== undefined) headers['content-length'] = length;
  return new Response(c.req.raw.body, { headers });
});

app.get('/stream', (c) => {
  const mb = Number(c.req.query('mb') ?? 1);
  if (!Number.isInteger(mb) || mb < 0 || mb > MAX_MB) {
    return c.text(`mb must be 0..${MAX_MB}\n`, 400);
  }
  return new Response(patternStream(mb * MIB), {
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(mb * MIB),
    },
  });
});

// Hono decodes route parameters (percent-decoding, UTF-8).
app.get('/u/:name', (c) => c.json({ name: c.req.param('name') }));

app.get('/info', (c) => {
  const url = new URL(c.req.url);
  return c.json({
    ip: getConnInfo(c).remote.address,
    protocol: url.protocol.replace(':', ''),
    host: c.req.header('host'),
  });
});

export default app;
