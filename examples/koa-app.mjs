// Koa 3 example for m2fleet: `m2fleet --module examples/koa-app.mjs`.
// Koa has no router; the routes below are matched by hand.
import { Readable } from 'node:stream';
import Koa from 'koa';

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

const app = new Koa();

app.use(async (ctx, next) => {
  const { method, path } = ctx;
  if (method === 'GET' && path === '/') {
    ctx.type = 'text/plain';
    ctx.body = 'Hello from Koa via m2fleet\n';
  } else if (method === 'GET' && path === '/json') {
    ctx.body = { framework: 'koa', ok: true };
  } else if (method === 'POST' && path === '/echo') {
    // Koa pipes a stream body; the request stream is echoed unparsed.
    const length = ctx.get('content-length');
    ctx.body = ctx.req;
    // ctx.set, not ctx.type: the type setter would append a charset.
    ctx.set('content-type', ctx.get('content-type') || 'application/octet-stream');
    if (length !== '') ctx.length = Number(length);
  } else if (method === 'GET' && path === '/stream') {
    const mb = Number(ctx.query.mb ?? 1);
    ctx.assert(Number.isInteger(mb) && mb >= 0 && mb <= MAX_MB, 400, `mb must be 0..${MAX_MB}`);
    ctx.body = patternStream(mb * MIB);
    ctx.type = 'application/octet-stream';
    ctx.length = mb * MIB;
  } else if (method === 'GET' && path.startsWith('/u/') && path.indexOf('/', 3) === -1) {
    let name;
    try {
      name = decodeURIComponent(path.slice(3));
    } catch {
      ctx.throw(400, 'bad percent-encoding');
    }
    ctx.body = { name };
  } else if (method === 'GET' && path === '/info') {
    ctx.body = { ip: ctx.ip, protocol: ctx.protocol, host: ctx.host };
  } else {
    await next();
  }
});

export default app;
