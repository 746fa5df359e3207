import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { Mongrel2Socket, type SocketPeer } from '../../src/handler/mongrel2-socket.ts';
import { StreamedUpload, UPLOAD_WINDOW } from '../../src/handler/streamed-upload.ts';

// Plays Mongrel2's part: sends a piece only against credits granted.
function feeder(total: number, piece: number, first: number) {
  let granted = 0;
  let sent = 0;
  const state = { maxAhead: 0 };
  const body = new StreamedUpload((n) => {
    granted += n;
    setImmediate(feed);
  }, false);
  function feed(): void {
    while (sent < total && sent - first < granted) {
      const n = Math.min(piece, total - sent, granted - (sent - first));
      body.add(sent, Buffer.alloc(n, sent % 251), sent + n === total);
      sent += n;
      state.maxAhead = Math.max(state.maxAhead, body.readableLength);
    }
  }
  body.add(0, Buffer.alloc(first, 0), false);
  sent = first;
  return { body, state };
}

function serveOnce(
  handler: http.RequestListener, head: string, body: StreamedUpload,
): Promise<string> {
  const server = http.createServer(handler);
  const out: Buffer[] = [];
  return new Promise((resolve) => {
    const peer: SocketPeer = {
      write: (chunks, done) => {
        out.push(...chunks);
        done();
        const text = Buffer.concat(out).toString('latin1');
        if (/\r\n\r\n[^]*got /.test(text)) resolve(text);
      },
      end: (done) => done(),
      destroyed: () => undefined,
    };
    const socket = new Mongrel2Socket(peer, {
      sender: 's', connId: '1', endpoint: 'inproc://x', mongrel2Headers: {},
    }, '127.0.0.1', false);
    server.emit('connection', socket);
    socket.feed(Buffer.from(head));
    socket.feed(body);
  });
}

test('a 3 MB streamed body reaches the app whole when credits track its reads', async () => {
  const total = 3 * 1024 * 1024;
  const { body } = feeder(total, 20480, 3891);
  const text = await serveOnce((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => res.end(`got ${n}`));
  }, `POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: ${total}\r\n\r\n`, body);
  assert.match(text, new RegExp(`got ${total}$`));
});

test('a body of unknown length is framed as chunks for the app', async () => {
  const total = 200_000;
  const { body } = feeder(total, 7000, 100);
  const chunked = new StreamedUpload(() => undefined, true);
  chunked.add(0, Buffer.from('hello '), false);
  chunked.add(6, Buffer.from('world'), true);
  const text = await serveOnce((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => res.end(`got ${Buffer.concat(parts).toString()}`));
  }, 'POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n', chunked);
  assert.match(text, /got hello world$/);
  body.destroy();
});

test('a slow reader holds the credits back to about one window', async () => {
  const { body, state } = feeder(2 * 1024 * 1024, 20480, 0);
  // Nobody reads: only the first grant may be used.
  body.read(0);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(state.maxAhead <= 2 * UPLOAD_WINDOW, `buffered ${state.maxAhead}`);
  assert.ok(state.maxAhead > 0);
  body.destroy();
});

test('a piece behind the bytes received is refused and adds nothing', () => {
  const body = new StreamedUpload(() => undefined, false);
  assert.equal(body.add(0, Buffer.alloc(10), false), true);
  assert.equal(body.add(5, Buffer.alloc(10), false), false);
  assert.equal(body.received, 10);
  assert.equal(body.add(10, Buffer.alloc(5), true), true);
  assert.equal(body.add(15, Buffer.alloc(5), false), false);
});

test('pieces that arrive out of order (relayed by a sibling) are put back in order', async () => {
  const body = new StreamedUpload(() => undefined, false);
  assert.equal(body.add(0, Buffer.from('ab'), false), true);
  assert.equal(body.add(4, Buffer.from('ef'), true), true);
  assert.equal(body.received, 2);
  assert.equal(body.add(2, Buffer.from('cd'), false), true);
  assert.equal(body.received, 6);
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'abcdef');
});

test('a piece far ahead beyond the hold limit is refused', () => {
  const body = new StreamedUpload(() => undefined, false);
  assert.equal(body.add(100, Buffer.alloc(200 * 1024), false), true);
  assert.equal(body.add(300_000, Buffer.alloc(100 * 1024), false), false);
  body.destroy();
});
