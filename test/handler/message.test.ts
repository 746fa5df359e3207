import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  M2FleetError,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
} from '../../src/handler/errors.js';
import { decodeJsonHeaders } from '../../src/handler/json-headers.js';
import {
  classifyMessage,
  creditsOf,
  headerString,
  parseMessage,
} from '../../src/handler/message.js';
import type {
  HeaderMap,
  MessageKind,
  Mongrel2Message,
} from '../../src/handler/types.js';
import { listCaptures, loadCapture } from '../helpers/captures.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const L = (s: string): Buffer => Buffer.from(s, 'latin1');
const plain = (h: HeaderMap): Record<string, unknown> => ({ ...h });

// ---- builders, written independently of the code under test ----

function netstring(payload: Buffer, tag: string): Buffer {
  return Buffer.concat([L(`${payload.length}:`), payload, L(tag)]);
}

/** JSON the way Mongrel2 writes it: only `"` and `\` escaped, raw bytes. */
function jsonHeaders(h: Record<string, string | string[]>): Buffer {
  const str = (s: string): string => '"' + s.replace(/["\\]/g, '\\$&') + '"';
  const items = Object.keys(h).map((k) => {
    const v = h[k]!;
    const text = typeof v === 'string' ? str(v) : `[${v.map(str).join(',')}]`;
    return `${str(k)}:${text}`;
  });
  return netstring(L(`{${items.join(',')}}`), ',');
}

function tnetHeaders(h: Record<string, string | string[]>): Buffer {
  const parts: Buffer[] = [];
  for (const k of Object.keys(h)) {
    const v = h[k]!;
    parts.push(netstring(L(k), ','));
    parts.push(typeof v === 'string'
      ? netstring(L(v), ',')
      : netstring(Buffer.concat(v.map((s) => netstring(L(s), ','))), ']'));
  }
  return netstring(Buffer.concat(parts), '}');
}

interface Spec {
  sender: string;
  connId: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: Buffer;
  protocol: 'json' | 'tnetstring';
}

function buildFrame(s: Spec): Buffer {
  const headers = s.protocol === 'json'
    ? jsonHeaders(s.headers)
    : tnetHeaders(s.headers);
  return Buffer.concat([
    L(`${s.sender} ${s.connId} ${s.path} `),
    headers,
    netstring(s.body, ','),
  ]);
}

function rejects(frame: Buffer | string, code: string, pattern?: RegExp): void {
  const buf = typeof frame === 'string' ? L(frame) : frame;
  assert.throws(
    () => parseMessage(buf),
    (err: unknown) => {
      assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
      assert.equal(err.code, code, err.message);
      if (pattern) assert.match(err.message, pattern);
      return true;
    },
  );
}

function mustParseOrReject(frame: Buffer): void {
  try {
    parseMessage(frame);
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
  }
}

// ---- captures ----

const requestCaptures = listCaptures().filter((n) => !n.startsWith('resp-'));

const expected: Record<string, [MessageKind, string, string]> = {
  'json-client-forged-headers': ['http', '30', '/json/xff'],
  'json-disconnect': ['notice-disconnect', '5', '@*'],
  'json-disconnect-for-unknown-id': ['notice-disconnect', '99999', '@*'],
  'json-download-credits': ['notice-credits', '2', '@*'],
  'json-get-query': ['http', '1', '/json/hello/w%C3%B6rld.txt'],
  'json-header-escaping': ['http', '24', '/json/esc'],
  'json-http10-no-host': ['http', '26', '/json/old'],
  'json-jssocket-json-message': ['socket', '329', '@chat'],
  'json-post-body-dup-headers': ['http', '5', '/json/form'],
  'json-upload-done': ['http', '40', '/json/upload'],
  'json-upload-start': ['http', '40', '/json/upload'],
  'json-upload-stream-first': ['http', '2', '/json/stream'],
  'json-upload-stream-last': ['upload-chunk', '2', '/json/stream'],
  'json-upload-stream-next': ['upload-chunk', '2', '/json/stream'],
  'json-websocket-close-frame': ['websocket-frame', '328', '/json/ws'],
  'json-websocket-handshake': ['websocket-handshake', '328', '/json/ws'],
  'json-websocket-text-frame': ['websocket-frame', '328', '/json/ws'],
  'tnet-chunked-upload-done': ['http', '44', '/tnet/chunked'],
  'tnet-chunked-upload-start': ['http', '44', '/tnet/chunked'],
  'tnet-disconnect': ['notice-disconnect', '6', '@*'],
  'tnet-disconnect-during-upload': ['notice-disconnect', '42', '@*'],
  'tnet-disconnect-for-unknown-id': ['notice-disconnect', '99999', '@*'],
  'tnet-download-credits': ['notice-credits', '1', '@*'],
  'tnet-get-query': ['http', '3', '/tnet/hello/w%C3%B6rld.txt'],
  'tnet-header-escaping': ['http', '25', '/tnet/esc'],
  'tnet-http-method-JSON-spoof': ['http', '331', '/tnet/spoof'],
  'tnet-jssocket-json-message': ['socket', '330', '@tchat'],
  'tnet-pattern-route': ['http', '29', '/pat/123/x/more'],
  'tnet-post-body-dup-headers': ['http', '6', '/tnet/form'],
  'tnet-upload-done': ['http', '41', '/tnet/upload'],
  'tnet-upload-start': ['http', '41', '/tnet/upload'],
  'tnet-upload-stream-first': ['http', '1', '/tnet/stream'],
  'tnet-upload-stream-last': ['upload-chunk', '1', '/tnet/stream'],
  'tnet-upload-stream-next': ['upload-chunk', '1', '/tnet/stream'],
  'tnet-websocket-close-frame': ['websocket-frame', '327', '/tnet/ws'],
  'tnet-websocket-handshake': ['websocket-handshake', '327', '/tnet/ws'],
  'tnet-websocket-text-frame': ['websocket-frame', '327', '/tnet/ws'],
};

const load = (name: string): Mongrel2Message => parseMessage(loadCapture(name));

describe('parseMessage on the real captures', () => {
  it('when the capture list is read then every request capture has an expectation', () => {
    assert.deepEqual(requestCaptures, Object.keys(expected).sort());
  });

  for (const name of requestCaptures) {
    it(`when ${name} is parsed then envelope, protocol and kind are right`, () => {
      const frame = loadCapture(name);
      const m = parseMessage(frame);
      const [kind, connId, path] = expected[name]!;
      const json = name.startsWith('json-');
      assert.equal(m.sender, json
        ? 'a1b2c3d4-json-0000-0000-000000000001'
        : 'a1b2c3d4-tnet-0000-0000-000000000002');
      assert.equal(m.connId, connId);
      assert.equal(m.path, path);
      assert.equal(m.protocol, json ? 'json' : 'tnetstring');
      assert.equal(classifyMessage(m), kind);
      assert.equal(Object.getPrototypeOf(m.headers), null);
      // The body is a view that ends one byte before the frame's end.
      assert.equal(m.body.buffer, frame.buffer);
      assert.equal(m.body.byteOffset + m.body.length, frame.byteOffset + frame.length - 1);
    });
  }

  it('when GET with a query is parsed then each header value is exact', () => {
    for (const name of ['json-get-query', 'tnet-get-query']) {
      const m = load(name);
      const p = name.slice(0, 4);
      assert.equal(m.headers['PATH'], `/${p}/hello/w%C3%B6rld.txt`);
      assert.equal(m.headers['URI'], `/${p}/hello/w%C3%B6rld.txt?a=1&b=two%20x&a=3`);
      assert.equal(m.headers['QUERY'], 'a=1&b=two%20x&a=3');
      assert.equal(m.headers['METHOD'], 'GET');
      assert.equal(m.headers['host'], 'localhost:17000');
      assert.equal(m.body.length, 0);
    }
  });

  it('when the POST with repeated headers is parsed then lists and a NUL body survive', () => {
    for (const name of ['json-post-body-dup-headers', 'tnet-post-body-dup-headers']) {
      const m = load(name);
      assert.deepEqual(m.headers['x-dup'], ['one', 'two', 'three']);
      assert.deepEqual(m.headers['cookie'], ['a=1', 'b=2']);
      assert.equal(headerString(m.headers, 'x-dup'), 'one');
      assert.deepEqual(m.body, L('hello=world&x=%00\x00bin'));
    }
  });

  it('when header-escaping is parsed then TAB, quotes and \\xff\\xfe bytes are byte-exact', () => {
    for (const name of ['json-header-escaping', 'tnet-header-escaping']) {
      const h = load(name).headers;
      assert.equal(h['x-tab'], 'a\tb', name);
      assert.equal(h['x-bad'], '\xff\xfe raw', name);
      assert.equal(h['x-utf8'], 'caf\xc3\xa9', name);
      assert.equal(h['x-quote'], 'say "hi" \\ back\\slash', name);
      assert.equal(h['x-trail'], 'val   ', name);
      assert.equal(h['x-empty'], '', name);
      assert.equal(h['x_under'], 'u', name);
      assert.deepEqual(h['x-many'], ['0', '1', '2', '3', '4'], name);
      assert.deepEqual(L(h['x-bad'] as string), Buffer.from([0xff, 0xfe, 0x20, 0x72, 0x61, 0x77]));
    }
  });

  it('when json and tnet captures of one request are parsed then headers match', () => {
    const route = (s: string): string =>
      s.replaceAll('/json/', '/tnet/').replace(/^@chat$/, '@tchat');
    const norm = (h: HeaderMap): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(h)) {
        const v = h[k]!;
        out[k] = typeof v === 'string' ? route(v) : v.map(route);
      }
      return out;
    };
    const same = [
      'disconnect', 'disconnect-for-unknown-id', 'download-credits', 'get-query',
      'header-escaping', 'jssocket-json-message', 'post-body-dup-headers',
      'upload-stream-first', 'upload-stream-next', 'websocket-close-frame',
      'websocket-handshake', 'websocket-text-frame',
    ];
    for (const name of same) {
      const a = load(`json-${name}`);
      const b = load(`tnet-${name}`);
      assert.deepEqual(norm(a.headers), norm(b.headers), name);
      if (!name.startsWith('upload-stream')) assert.deepEqual(a.body, b.body, name);
    }
  });

  it('when notices are parsed then type and credits are read from them', () => {
    assert.equal(load('json-disconnect').body.toString(), '{"type":"disconnect"}');
    assert.equal(creditsOf(load('json-download-credits')), 43);
    assert.equal(creditsOf(load('tnet-download-credits')), 43);
    assert.equal(creditsOf(load('json-upload-stream-first')), 102400);
    assert.equal(creditsOf(load('json-get-query')), undefined);
  });

  it('when WebSocket captures are parsed then FLAGS, accept key and payload are exact', () => {
    for (const p of ['json', 'tnet']) {
      assert.equal(load(`${p}-websocket-text-frame`).headers['FLAGS'], '0x81');
      assert.equal(load(`${p}-websocket-text-frame`).body.toString(), 'hello ws');
      assert.equal(load(`${p}-websocket-close-frame`).headers['FLAGS'], '0x88');
      assert.deepEqual(load(`${p}-websocket-close-frame`).body, L('\x03\xe8bye'));
      const hs = load(`${p}-websocket-handshake`);
      const accept = createHash('sha1')
        .update(`${hs.headers['sec-websocket-key']}${WS_GUID}`)
        .digest('base64');
      assert.equal(hs.body.toString('latin1'), accept);
    }
  });

  it('when upload-stream chunks are parsed then only offset headers are present', () => {
    const next = load('json-upload-stream-next');
    assert.deepEqual(plain(next.headers), { UPLOAD_STREAM: '1500' });
    assert.equal(next.body.length, 1024);
    const last = load('tnet-upload-stream-last');
    assert.deepEqual(plain(last.headers),
      { UPLOAD_STREAM_DONE: '1', UPLOAD_STREAM: '9620' });
  });

  it('when forged client headers are parsed then they stay lowercase client keys', () => {
    const h = load('json-client-forged-headers').headers;
    assert.equal(h['method'], 'FAKE');
    assert.equal(h['METHOD'], 'GET');
    assert.equal(h['x-mongrel2-upload-done'], '/etc/passwd');
  });

  it('when every truncation of every capture is parsed then each throws ProtocolError', () => {
    for (const name of requestCaptures) {
      const frame = loadCapture(name);
      for (let n = 0; n < frame.length; n++) {
        assert.throws(() => parseMessage(frame.subarray(0, n)), ProtocolError,
          `${name} cut at ${n}`);
      }
    }
  });
});

// ---- malformed frames, spec 9.1 and 9.3 ----

const OK_JSON = 'S-1 7 /p 16:{"METHOD":"GET"},0:,';
const OK_TNET = 'S-1 7 /p 15:6:METHOD,3:GET,}0:,';

describe('parseMessage on malformed frames (spec 9.3)', () => {
  it('when the reference frames are well formed then they parse', () => {
    assert.equal(parseMessage(L(OK_JSON)).headers['METHOD'], 'GET');
    assert.equal(parseMessage(L(OK_TNET)).headers['METHOD'], 'GET');
  });
  it('when the frame is empty then it is rejected as a bad envelope', () => {
    rejects('', 'M2F_BAD_ENVELOPE');
  });
  it('when there are fewer than three spaces then it is rejected', () => {
    rejects('S-1', 'M2F_BAD_ENVELOPE', /after the sender/);
    rejects('S-1 7', 'M2F_BAD_ENVELOPE', /after the conn id/);
    rejects('S-1 7 /p', 'M2F_BAD_ENVELOPE', /after the path/);
  });
  it('when the sender has a char outside [A-Za-z0-9-] then it is rejected', () => {
    rejects(OK_JSON.replace('S-1', 'S_1'), 'M2F_BAD_ENVELOPE', /sender/);
    rejects(OK_JSON.replace('S-1', 'a.b'), 'M2F_BAD_ENVELOPE', /sender/);
    rejects(OK_JSON.replace('S-1', 'S\xe91'), 'M2F_BAD_ENVELOPE', /sender/);
  });
  it('when the sender is empty (leading space) then it is rejected', () => {
    rejects(' ' + OK_JSON.slice(4), 'M2F_BAD_ENVELOPE', /sender/);
  });
  it('when the conn id is not all digits then it is rejected', () => {
    rejects(OK_JSON.replace(' 7 ', ' 7a '), 'M2F_BAD_ENVELOPE', /connection id/);
    rejects(OK_JSON.replace(' 7 ', ' -7 '), 'M2F_BAD_ENVELOPE', /connection id/);
    rejects(OK_JSON.replace(' 7 ', ' +7 '), 'M2F_BAD_ENVELOPE', /connection id/);
  });
  it('when two spaces separate sender and id then the empty id is rejected', () => {
    rejects(OK_JSON.replace('S-1 7', 'S-1  7'), 'M2F_BAD_ENVELOPE', /connection id/);
  });
  it('when the conn id passes 2^32-1 then it is rejected, and 2^32-1 is kept', () => {
    rejects(OK_JSON.replace(' 7 ', ' 4294967296 '), 'M2F_BAD_ENVELOPE');
    rejects(OK_JSON.replace(' 7 ', ' 99999999999 '), 'M2F_BAD_ENVELOPE');
    assert.equal(parseMessage(L(OK_JSON.replace(' 7 ', ' 4294967295 '))).connId,
      '4294967295');
  });
  it('when the conn id has a leading zero then it is rejected', () => {
    rejects(OK_JSON.replace(' 7 ', ' 07 '), 'M2F_BAD_ENVELOPE');
    assert.equal(parseMessage(L(OK_JSON.replace(' 7 ', ' 0 '))).connId, '0');
  });
  it('when the path is empty then it is rejected', () => {
    rejects(OK_JSON.replace(' /p ', '  '), 'M2F_BAD_ENVELOPE', /empty path/);
  });
  it('when the header LEN is not digits then it is rejected', () => {
    rejects(OK_JSON.replace('16:', '+16:'), 'M2F_BAD_NETSTRING');
    rejects(OK_JSON.replace('16:', ':'), 'M2F_BAD_NETSTRING');
    rejects(OK_JSON.replace('16:', '0x10:'), 'M2F_BAD_NETSTRING');
  });
  it('when the header LEN has 11 digits then it is rejected', () => {
    rejects(OK_JSON.replace('16:', '00000000016:'), 'M2F_BAD_NETSTRING', /1-10 digits/);
  });
  it('when the header LEN is too large then it is rejected', () => {
    rejects(OK_JSON.replace('16:', '17:'), 'M2F_BAD_NETSTRING');
  });
  it('when the header LEN is too small then the tag check fails', () => {
    rejects(OK_JSON.replace('16:', '14:'), 'M2F_BAD_NETSTRING', /header tag/);
    // One short lands on the JSON's own "}", which then is not a tnet dict.
    rejects(OK_JSON.replace('16:', '15:'), 'M2F_BAD_TNETSTRING');
  });
  it('when the header tag is neither , nor } then it is rejected', () => {
    rejects(OK_TNET.replace('}0:,', ']0:,'), 'M2F_BAD_NETSTRING', /header tag/);
  });
  it('when the body tag is not , then it is rejected', () => {
    rejects(OK_JSON.replace(/0:,$/, '0:}'), 'M2F_BAD_NETSTRING', /body tag/);
  });
  it('when the body netstring is missing then it is rejected', () => {
    rejects(OK_JSON.replace(/0:,$/, ''), 'M2F_BAD_NETSTRING', /body/);
  });
  it('when the body LEN is larger than the bytes left then it is rejected', () => {
    rejects(OK_JSON.replace(/0:,$/, '5:abc,'), 'M2F_BAD_NETSTRING', /exceeds/);
  });
  it('when bytes follow the body netstring then it is rejected', () => {
    rejects(OK_JSON + 'x', 'M2F_TRAILING_BYTES');
    rejects(OK_JSON + '0:,', 'M2F_TRAILING_BYTES');
  });
  it('when a body declares 999999999 bytes then it fails fast without allocating', () => {
    const before = process.memoryUsage().arrayBuffers;
    rejects(OK_JSON.replace(/0:,$/, '999999999:x,'), 'M2F_BAD_NETSTRING', /exceeds/);
    rejects(OK_JSON.replace('16:', '9999999999:'), 'M2F_BAD_NETSTRING', /exceeds/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 1_000_000);
  });
  it('when the JSON header block is not JSON then it is rejected', () => {
    rejects('S 1 /p 5:{"a":,0:,', 'M2F_BAD_JSON_HEADERS');
    rejects('S 1 /p 2:[],0:,', 'M2F_BAD_JSON_HEADERS');
    rejects('S 1 /p 4:null,0:,', 'M2F_BAD_JSON_HEADERS');
  });
  it('when a JSON header value is not a string or list of strings then it is rejected', () => {
    rejects('S 1 /p 7:{"a":1},0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 9:{"a":[1]},0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 8:{"a":[]},0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 8:{"a":{}},0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 10:{"a":null},0:,', 'M2F_BAD_HEADER_VALUE');
  });
  it('when a tnet header value is not a string or list of strings then it is rejected', () => {
    rejects('S 1 /p 8:1:a,1:1#}0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 7:1:a,0:]}0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 11:1:a,4:1:1#]}0:,', 'M2F_BAD_HEADER_VALUE');
    rejects('S 1 /p 7:1:a,0:}}0:,', 'M2F_BAD_HEADER_VALUE');
  });
  it('when the tnet header dict is malformed then it is rejected as a bad tnetstring', () => {
    rejects('S 1 /p 4:1:a,}0:,', 'M2F_BAD_TNETSTRING', /no value/);
    rejects('S 1 /p 8:1:1#1:a,}0:,', 'M2F_BAD_TNETSTRING', /key/);
    rejects('S 1 /p 8:1:a,1:b?}0:,', 'M2F_BAD_TNETSTRING', /tag/);
  });
  it('when an error is raised then it names sender and conn id but not the whole frame', () => {
    const frame = OK_JSON.replace(/0:,$/, '0:,' + 'z'.repeat(5000));
    try {
      parseMessage(L(frame));
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.sender, 'S-1');
      assert.equal(err.connId, '7');
      assert.ok(err.message.length < 200);
      assert.ok((err.value ?? '').length < 40);
    }
  });
});

// ---- JSON header decoding (spec 2.6) ----

describe('decodeJsonHeaders', () => {
  const decode = (s: string): HeaderMap => {
    const buf = L(`xx${s}yy`);
    return decodeJsonHeaders(buf, 2, buf.length - 2);
  };

  it('when values hold raw control bytes then they decode as those bytes', () => {
    const h = decode('{"a":"\x00\x01\t\x1f\x7f"}');
    assert.equal(h['a'], '\x00\x01\t\x1f\x7f');
  });
  it('when an escape above 0xFF is present then it becomes its UTF-8 bytes', () => {
    const h = decode('{"a":"\\u20ac\xe9","\\u00e9":"x"}');
    assert.equal(h['a'], '\xe2\x82\xac\xe9');
    assert.equal(h['\xe9'], 'x');
    const pair = decode('{"a":"\\ud83d\\ude00"}');
    assert.deepEqual(L(pair['a'] as string), Buffer.from('😀', 'utf8'));
  });
  it('when a key repeats then the last value wins', () => {
    assert.equal(decode('{"a":"1","a":"2"}')['a'], '2');
  });
  it('when a key is __proto__ then it is an own key of a null-prototype map', () => {
    const h = decode('{"__proto__":"x"}');
    assert.equal(Object.getPrototypeOf(h), null);
    assert.equal(Object.getOwnPropertyDescriptor(h, '__proto__')?.value, 'x');
  });
  it('when a control char sits outside a string then it is rejected', () => {
    assert.throws(() => decode('{"a":\t"b"}'),
      (e: unknown) => e instanceof ProtocolError && e.code === 'M2F_BAD_JSON_HEADERS');
  });
});

// ---- classification (spec 2.4, 4) ----

function msg(path: string, headers: Record<string, string | string[]>, body = ''): Mongrel2Message {
  const h: HeaderMap = Object.assign(Object.create(null), headers);
  return { sender: 's', connId: '1', path, headers: h, body: L(body), protocol: 'json' };
}

describe('classifyMessage', () => {
  const notice = { METHOD: 'JSON' };
  it('when @* has a credits body or DOWNLOAD_CREDITS then it is notice-credits', () => {
    assert.equal(classifyMessage(msg('@*', notice, '{"type":"credits"}')), 'notice-credits');
    assert.equal(classifyMessage(msg('@*', { ...notice, DOWNLOAD_CREDITS: '9' }, '')),
      'notice-credits');
  });
  it('when @* carries an unknown or broken body then it is notice-other and nothing throws', () => {
    for (const body of ['', '{', 'null', '[]', '"x"', '{"type":5}', '{"type":"x"}', '\xff\x00']) {
      assert.equal(classifyMessage(msg('@*', notice, body)), 'notice-other', body);
    }
  });
  it('when @* has VERSION then it is http, not a notice', () => {
    const m = msg('@*', { METHOD: 'JSON', VERSION: 'HTTP/1.1' }, '{"type":"disconnect"}');
    assert.equal(classifyMessage(m), 'http');
  });
  it('when @* has a METHOD other than JSON then it is notice-other', () => {
    assert.equal(classifyMessage(msg('@*', { METHOD: 'GET' }, '{"type":"disconnect"}')),
      'notice-other');
  });
  it('when an HTTP client sends method JSON with a disconnect body then it is http', () => {
    const h = { METHOD: 'JSON', VERSION: 'HTTP/1.1', PATH: '/x' };
    const m = msg('/x', h, '{"type":"disconnect"}');
    assert.equal(classifyMessage(m), 'http');
  });
  it('when an @route message has METHOD XML then it is socket', () => {
    assert.equal(classifyMessage(msg('@x', { METHOD: 'XML', PATH: '@x' })), 'socket');
  });
  it('when METHOD is WEBSOCKET without FLAGS then it is http', () => {
    assert.equal(classifyMessage(msg('/ws', { METHOD: 'WEBSOCKET', VERSION: 'HTTP/1.1' })),
      'http');
  });
  it('when UPLOAD_STREAM comes with a METHOD then it is http, not a chunk', () => {
    assert.equal(classifyMessage(msg('/u', { METHOD: 'POST', UPLOAD_STREAM: '0' })), 'http');
  });
  it('when a header is a list then headerString returns its first value', () => {
    const h = msg('/', { a: ['1', '2'], b: 'x' }).headers;
    assert.equal(headerString(h, 'a'), '1');
    assert.equal(headerString(h, 'b'), 'x');
    assert.equal(headerString(h, 'c'), undefined);
  });
  it('when DOWNLOAD_CREDITS is not plain digits then creditsOf is undefined', () => {
    for (const v of ['', '-1', '1e3', ' 5', 'abc']) {
      assert.equal(creditsOf(msg('@*', { DOWNLOAD_CREDITS: v })), undefined, v);
    }
  });
});

describe('error catalogue', () => {
  it('when the codes are listed then each is unique, M2F_-prefixed and usable', () => {
    assert.equal(new Set(PROTOCOL_ERROR_CODES).size, PROTOCOL_ERROR_CODES.length);
    for (const code of PROTOCOL_ERROR_CODES) {
      assert.match(code, /^M2F_[A-Z_]+$/);
      const err = new ProtocolError(code, 'm', { connId: '3' });
      assert.ok(err instanceof M2FleetError && err instanceof Error);
      assert.equal(err.name, 'ProtocolError');
      assert.equal(err.connId, '3');
    }
  });
});

// ---- properties ----

const latin1Char = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c));
const latin1 = fc.string({ unit: latin1Char, maxLength: 30 });
const headerValue = fc.oneof(latin1, fc.array(latin1, { minLength: 1, maxLength: 5 }));
const spec = fc.record({
  sender: fc.stringMatching(/^[A-Za-z0-9-]{1,40}$/),
  connId: fc.integer({ min: 0, max: 0xffff_ffff }).map(String),
  path: fc.string({
    unit: latin1Char.filter((c) => c !== ' '),
    minLength: 1,
    maxLength: 40,
  }),
  headers: fc.dictionary(latin1, headerValue, { maxKeys: 8 }),
  body: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  protocol: fc.constantFrom('json' as const, 'tnetstring' as const),
});

describe('parseMessage properties', () => {
  it('when any valid frame is built in either protocol then parsing returns its parts', () => {
    fc.assert(fc.property(spec, (s) => {
      const m = parseMessage(buildFrame(s));
      assert.equal(m.sender, s.sender);
      assert.equal(m.connId, s.connId);
      assert.equal(m.path, s.path);
      assert.equal(m.protocol, s.protocol);
      assert.deepEqual(plain(m.headers), { ...s.headers });
      assert.deepEqual(m.body, s.body);
    }), { numRuns: 400 });
  });

  it('when a valid frame is cut anywhere then parsing throws ProtocolError', () => {
    fc.assert(fc.property(spec, fc.nat(), (s, n) => {
      const frame = buildFrame(s);
      assert.throws(() => parseMessage(frame.subarray(0, n % frame.length)), ProtocolError);
    }), { numRuns: 400 });
  });

  it('when bytes of a valid frame are changed then it parses or throws ProtocolError', () => {
    const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })),
      { minLength: 1, maxLength: 4 });
    fc.assert(fc.property(spec, edits, (s, changes) => {
      const frame = Buffer.from(buildFrame(s));
      for (const [pos, byte] of changes) frame[pos % frame.length] = byte;
      mustParseOrReject(frame);
    }), { numRuns: 1000 });
  });

  it('when capture bytes are changed, added or removed then it parses or rejects', () => {
    const frames = requestCaptures.map(loadCapture);
    const op = fc.tuple(fc.constantFrom('set', 'insert', 'delete'), fc.nat(),
      fc.integer({ min: 0, max: 255 }));
    const pick = fc.nat({ max: frames.length - 1 });
    fc.assert(fc.property(pick, fc.array(op, { minLength: 1, maxLength: 3 }),
      (i, ops) => {
        let frame = Buffer.from(frames[i]!);
        for (const [kind, p, byte] of ops) {
          const at = p % frame.length;
          if (kind === 'set') frame[at] = byte;
          else if (kind === 'insert') {
            frame = Buffer.concat([frame.subarray(0, at), Buffer.from([byte]), frame.subarray(at)]);
          } else frame = Buffer.concat([frame.subarray(0, at), frame.subarray(at + 1)]);
        }
        mustParseOrReject(frame);
      }), { numRuns: 2000 });
  });
});
