// The uwsgi and FastCGI codecs, the response re-framer and the CGI
// variable mapping: exact cases, then fuzzing (nothing but the codec's own
// error may come out of a parser, whatever the bytes).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodePairs, encodeBeginRequest, encodeEndRequest, encodePairs, encodeRecords, FastCgiError,
  FCGI, FcgiReader, parseBeginRequest,
} from '../../src/handler/fastcgi-codec.ts';
import {
  DEFAULT_SOCKET_LIMITS, GatewayRefusal, requestFromVars,
} from '../../src/handler/gateway.ts';
import { ReframeError, ResponseReframer } from '../../src/handler/response-reframer.ts';
import { encodeUwsgiPacket, parseUwsgiPacket, UwsgiError } from '../../src/handler/uwsgi-codec.ts';

describe('uwsgi packets', () => {
  const vars: [string, string][] = [['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/a?b=1'], ['HTTP_X', '\xff\x00']];

  test('round-trip, byte for byte, with the body left after the packet', () => {
    const packet = encodeUwsgiPacket(vars);
    const withBody = Buffer.concat([packet, Buffer.from('BODY')]);
    const parsed = parseUwsgiPacket(withBody);
    assert.deepEqual(parsed?.vars, vars);
    assert.equal(parsed?.size, packet.length);
    assert.equal(withBody.subarray(parsed!.size).toString(), 'BODY');
    // The wire layout: modifier1, little-endian size, modifier2.
    assert.equal(packet[0], 0);
    assert.equal(packet.readUInt16LE(1), packet.length - 4);
  });

  test('every prefix of a packet asks for more bytes', () => {
    const packet = encodeUwsgiPacket(vars);
    for (let i = 0; i < packet.length; i++) assert.equal(parseUwsgiPacket(packet.subarray(0, i)), null);
  });

  test('refuses a size over the limit before the bytes arrive', () => {
    const head = Buffer.from([0, 0xff, 0xff, 0]);
    assert.throws(() => parseUwsgiPacket(head, 1024), UwsgiError);
  });

  test('refuses lengths that run past the packet, and empty names', () => {
    const bad = Buffer.from([0, 4, 0, 0, 10, 0, 65, 66]);
    assert.throws(() => parseUwsgiPacket(bad), /runs past/);
    const empty = Buffer.from([0, 4, 0, 0, 0, 0, 0, 0]);
    assert.throws(() => parseUwsgiPacket(empty), /empty variable name/);
  });

  test('fuzz: any bytes give a packet, null or UwsgiError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        const p = parseUwsgiPacket(Buffer.from(bytes), 200);
        if (p) assert.ok(p.size <= bytes.length);
      } catch (err) {
        assert.ok(err instanceof UwsgiError, String(err));
      }
    }), { numRuns: 3000 });
  });

  test('fuzz: packets built from any variables parse back to them', () => {
    const text = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 });
    fc.assert(fc.property(fc.array(fc.tuple(text.filter((k) => k.length > 0), text), { maxLength: 20 }), (pairs) => {
      assert.deepEqual(parseUwsgiPacket(encodeUwsgiPacket(pairs))?.vars, pairs);
    }), { numRuns: 500 });
  });
});

describe('FastCGI records', () => {
  test('records split across reads come out whole, padding skipped', () => {
    const stream = Buffer.concat([
      encodeRecords(FCGI.BEGIN_REQUEST, 1, encodeBeginRequest(1, true)),
      encodeRecords(FCGI.PARAMS, 1, encodePairs([['REQUEST_METHOD', 'POST']])),
      encodeRecords(FCGI.PARAMS, 1),
      encodeRecords(FCGI.STDIN, 1, Buffer.from('abc')),
    ]);
    const reader = new FcgiReader();
    const got = [];
    for (let i = 0; i < stream.length; i += 3) got.push(...reader.push(stream.subarray(i, i + 3)));
    assert.deepEqual(got.map((r) => [r.type, r.requestId, r.content.length]), [
      [FCGI.BEGIN_REQUEST, 1, 8], [FCGI.PARAMS, 1, 20], [FCGI.PARAMS, 1, 0], [FCGI.STDIN, 1, 3],
    ]);
    assert.deepEqual(parseBeginRequest(got[0]!.content), { role: 1, keepConn: true });
    assert.deepEqual(decodePairs(got[1]!.content), [['REQUEST_METHOD', 'POST']]);
    assert.equal(reader.buffered, 0);
  });

  test('content over 65535 bytes becomes several records', () => {
    const big = Buffer.alloc(70_000, 7);
    const records = new FcgiReader().push(encodeRecords(FCGI.STDOUT, 3, big));
    assert.deepEqual(records.map((r) => r.content.length), [65535, 70_000 - 65535]);
    assert.ok(Buffer.concat(records.map((r) => r.content)).equals(big));
  });

  test('long names and values use four-byte lengths', () => {
    const pairs: [string, string][] = [['N'.repeat(200), 'v'.repeat(70_000)], ['a', '']];
    const encoded = encodePairs(pairs);
    assert.equal(encoded[0]! & 0x80, 0x80);
    assert.deepEqual(decodePairs(encoded), pairs);
  });

  test('a wrong version and truncated pairs are FastCgiErrors', () => {
    const rec = encodeRecords(FCGI.STDIN, 1, Buffer.from('x'));
    rec[0] = 2;
    assert.throws(() => new FcgiReader().push(rec), FastCgiError);
    assert.throws(() => decodePairs(Buffer.from([5, 1, 65])), FastCgiError);
    assert.throws(() => decodePairs(Buffer.from([0x80, 0, 0])), FastCgiError);
  });

  test('END_REQUEST carries the app and protocol status', () => {
    const [rec] = new FcgiReader().push(encodeEndRequest(9, 3, 1));
    assert.equal(rec!.type, FCGI.END_REQUEST);
    assert.equal(rec!.requestId, 9);
    assert.equal(rec!.content.readUInt32BE(0), 3);
    assert.equal(rec!.content[4], 1);
  });

  test('fuzz: any byte stream gives records or a FastCgiError, pairs likewise', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
      const reader = new FcgiReader();
      try {
        for (const c of chunks) {
          for (const r of reader.push(Buffer.from(c))) {
            try {
              decodePairs(r.content);
            } catch (err) {
              assert.ok(err instanceof FastCgiError, String(err));
            }
          }
        }
      } catch (err) {
        assert.ok(err instanceof FastCgiError, String(err));
      }
    }), { numRuns: 3000 });
  });
});

describe('response re-framer', () => {
  function run(parts: string[], head = false): { status: number; lines: string; body: string; ends: boolean[] } {
    const out = { status: 0, lines: '', body: '', ends: [] as boolean[] };
    const r = new ResponseReframer({
      head: (status, _reason, lines) => { out.status = status; out.lines = lines; },
      body: (c) => { out.body += c.toString('latin1'); },
      end: (complete) => out.ends.push(complete),
    }, head);
    for (const p of parts) r.write(Buffer.from(p, 'latin1'));
    r.finish();
    return out;
  }

  test('de-chunks, drops hop-by-hop headers and trailers, ends once', () => {
    const raw = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n'
      + 'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n';
    // One byte at a time: every state must survive a split anywhere.
    const out = run([...raw]);
    assert.equal(out.status, 200);
    assert.equal(out.lines, 'Content-Type: text/plain\r\n');
    assert.equal(out.body, 'hello world');
    assert.deepEqual(out.ends, [true]);
  });

  test('content-length bodies end at the length; 1xx heads are dropped', () => {
    const out = run(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc']);
    assert.equal(out.status, 201);
    assert.equal(out.body, 'abc');
    assert.deepEqual(out.ends, [true]);
  });

  test('HEAD, 204 and 304 have no body; a close-delimited body ends at the end', () => {
    assert.equal(run(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n'], true).ends[0], true);
    assert.equal(run(['HTTP/1.1 204 No Content\r\n\r\n']).ends[0], true);
    const closed = run(['HTTP/1.0 200 OK\r\n\r\nall', ' of it']);
    assert.equal(closed.body, 'all of it');
    assert.deepEqual(closed.ends, [true]);
  });

  test('a stream that ends early is reported incomplete', () => {
    assert.deepEqual(run(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc']).ends, [false]);
    assert.deepEqual(run([]).ends, [false]);
  });

  test('garbage is a ReframeError', () => {
    assert.throws(() => run(['SMTP ready\r\n\r\n']), ReframeError);
    assert.throws(() => run(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']), ReframeError);
  });
});

describe('CGI variables to a request', () => {
  const L = DEFAULT_SOCKET_LIMITS;
  const base: [string, string][] = [
    ['REQUEST_METHOD', 'POST'], ['REQUEST_URI', '/p?q=1'], ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['CONTENT_TYPE', 'text/plain'], ['CONTENT_LENGTH', '5'], ['REMOTE_ADDR', '10.0.0.9'],
    ['REMOTE_PORT', '5555'], ['HTTPS', 'on'], ['HTTP_HOST', 'example.org'],
    ['HTTP_X_MULTI', 'a'], ['HTTP_X_MULTI', 'b'], ['HTTP_CONNECTION', 'upgrade'],
    ['HTTP_UPGRADE', 'websocket'], ['HTTP_CONTENT_LENGTH', '5'],
  ];

  test('builds the head Node will parse, with the client as the socket peer', () => {
    const r = requestFromVars(base, L, 'localhost', false);
    const head = r.head.toString('latin1');
    assert.match(head, /^POST \/p\?q=1 HTTP\/1\.1\r\n/);
    assert.match(head, /\r\nhost: example.org\r\n/);
    assert.match(head, /\r\nx-multi: a\r\nx-multi: b\r\n/);
    assert.match(head, /\r\ncontent-type: text\/plain\r\n/);
    assert.match(head, /\r\ncontent-length: 5\r\n/);
    // Hop-by-hop headers of the client's own connection stay behind.
    assert.doesNotMatch(head, /upgrade|connection/i);
    assert.equal(head.match(/content-length/g)?.length, 1);
    assert.deepEqual([r.remote, r.remotePort, r.tls, r.bodyLength], ['10.0.0.9', 5555, true, 5]);
  });

  test('without REQUEST_URI the path comes from SCRIPT_NAME, PATH_INFO and QUERY_STRING', () => {
    const r = requestFromVars([['REQUEST_METHOD', 'GET'], ['SCRIPT_NAME', '/app'], ['PATH_INFO', '/x'],
      ['QUERY_STRING', 'a=b'], ['SERVER_NAME', 'srv']], L, 'localhost', false);
    assert.match(r.head.toString('latin1'), /^GET \/app\/x\?a=b HTTP\/1\.1\r\nhost: srv\r\n/);
  });

  test('refuses CR/LF in values, a bad length, too many headers and too big a body', () => {
    const refused = (vars: [string, string][], status: number, limits = L): void => {
      assert.throws(() => requestFromVars(vars, limits, 'h', true),
        (e: unknown) => e instanceof GatewayRefusal && e.status === status);
    };
    refused([['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['HTTP_X', 'a\r\nx-evil: 1']], 400);
    refused([['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['CONTENT_LENGTH', '-1']], 400);
    refused([['REQUEST_METHOD', 'G ET'], ['REQUEST_URI', '/']], 400);
    refused([['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['HTTP_A', '1'], ['HTTP_B', '2']], 431,
      { ...L, maxHeaders: 1 });
    refused([['REQUEST_METHOD', 'PUT'], ['REQUEST_URI', '/'], ['CONTENT_LENGTH', '11']], 413,
      { ...L, maxBody: 10 });
  });

  test('a FastCGI body of unknown length is declared chunked', () => {
    const r = requestFromVars([['REQUEST_METHOD', 'POST'], ['REQUEST_URI', '/'],
      ['HTTP_TRANSFER_ENCODING', 'chunked']], L, 'h', true);
    assert.equal(r.bodyLength, undefined);
    assert.match(r.head.toString('latin1'), /transfer-encoding: chunked/);
  });
});
