// Express 5 example for m2fleet: `m2fleet --module examples/express-app.mjs`.
// Every example app answers the same routes; see examples/README.md.
import { Readable, pipeline } from 'node:stream';
import express from 'express';

const MIB = 1024 * 1024;
const MAX_MB = 1024;
const PATTERN_PERIOD = 251;
// A multiple of the period, so one immutable chunk repeats seamlessly.
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

const app = express();

app.get('/', (_req, res) => {
  res.type('text/plain').send('Hello from Express via m2fleet\n');
});

app.get('/json', (_req, res) => {
  res.json({ framework: 'express', ok: true });
});

// Echo the raw body byte for byte, streamed: no body parser is installed.
app.post('/echo', (req, res) => {
  res.setHeader('content-type', req.headers['content-type'] ?? 'application/octet-stream');
  if (req.headers['content-length'] !== undefined) {
    res.setHeader('content-length', req.headers['content-length']);
  }
  pipeline(req, res, () => undefined);
});

app.get('/stream', (req, res) => {
  const mb = Number(req.query.mb ?? 1);
  if (!Number.isInteger(mb) || mb < 0 || mb > MAX_MB) {
    res.status(400).type('text/plain').send(`mb must be 0..${MAX_MB}\n`);
    return;
  }
  res.setHeader('content-type', 'application/octet-stream');
  res.setHeader('content-length', mb * MIB);
  patternStream(mb * MIB).pipe(res);
});

// Express decodes route parameters (percent-decoding, UTF-8).
app.get('/u/:name', (req, res) => {
  res.json({ name: req.params.name });
});

app.get('/info', (req, res) => {
  res.json({ ip: req.ip, protocol: req.protocol, host: req.host });
});

export default app;
