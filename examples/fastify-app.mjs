// Fastify 5 example for m2fleet: `m2fleet --module examples/fastify-app.mjs`.
// Export the instance without listening; m2fleet calls ready() itself.
import { Readable } from 'node:stream';
import Fastify from 'fastify';

const MIB = 1024 * 1024;
const MAX_MB = 1024;
const PATTERN_PERIOD = 251;
const CHUNK = Buffer.from(
  Array.from({ length: PATTERN_PERIOD * 256 }, (_, i) => i % PATTERN_PERIOD),
);

/** `size` bytes where byte i is i % 251, pushed as the consumer reads. */
function patternStream(size) {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK.length, size - sent);
      sent += n;
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
}

const app = Fastify();

app.get('/', async (_request, reply) => {
  reply.type('text/plain');
  return 'Hello from Fastify via m2fleet\n';
});

app.get('/json', async () => ({ framework: 'fastify', ok: true }));

// In its own plugin scope, /echo drops Fastify's JSON/text parsers and
// leaves every body unread, so the raw request stream is echoed as is.
app.register(async (scope) => {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
  scope.post('/echo', async (request, reply) => {
    const length = request.headers['content-length'];
    reply.type(request.headers['content-type'] ?? 'application/octet-stream');
    if (length !== undefined) reply.header('content-length', length);
    return reply.send(request.raw);
  });
});

app.get('/stream', async (request, reply) => {
  const mb = Number(request.query.mb ?? 1);
  if (!Number.isInteger(mb) || mb < 0 || mb > MAX_MB) {
    return reply.code(400).type('text/plain').send(`mb must be 0..${MAX_MB}\n`);
  }
  reply.type('application/octet-stream').header('content-length', mb * MIB);
  return reply.send(patternStream(mb * MIB));
});

// Fastify decodes route parameters (percent-decoding, UTF-8).
app.get('/u/:name', async (request) => ({ name: request.params.name }));

app.get('/info', async (request) => ({
  ip: request.ip,
  protocol: request.protocol,
  host: request.host,
}));

export default app;
