import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BadRequestHead,
  buildRequestHead,
  type RequestHeadOptions,
} from '../../src/handler/request-head.js';
import type { HeaderMap } from '../../src/handler/types.js';

const GET: HeaderMap = {
  PATH: '/a',
  METHOD: 'GET',
  VERSION: 'HTTP/1.1',
  URI: '/a?b=1',
  QUERY: 'b=1',
  PATTERN: '/',
  host: 'example.org',
};

function headers(extra: HeaderMap, base: HeaderMap = GET): HeaderMap {
  return Object.assign(Object.create(null) as HeaderMap, base, extra);
}

// `null` stands for an unknown body length (a default parameter would turn
// an explicit undefined into 0).
function head(h: HeaderMap, bodyLength: number | null = 0, path = '/a'): string {
  const options: RequestHeadOptions = {
    defaultHost: 'fallback.test',
    bodyLength: bodyLength ?? undefined,
  };
  return buildRequestHead(h, path, options).toString('latin1');
}

function lines(text: string): string[] {
  assert.ok(text.endsWith('\r\n\r\n'), 'the head does not end with an empty line');
  return text.slice(0, -4).split('\r\n');
}

function refused(h: HeaderMap, reason: RegExp, bodyLength: number | null = 0): void {
  assert.throws(() => head(h, bodyLength), (err: unknown) => {
    assert.ok(err instanceof BadRequestHead, `not a BadRequestHead: ${String(err)}`);
    assert.match(err.reason, reason);
    return true;
  });
}

describe('buildRequestHead request line and headers', () => {
  it('when a GET arrives then the line is METHOD URI VERSION and Mongrel2 keys are dropped', () => {
    assert.deepEqual(lines(head(headers({}))), [
      'GET /a?b=1 HTTP/1.1',
      'host: example.org',
    ]);
  });

  it('when URI is missing then the line is built from the path and QUERY', () => {
    const h = headers({});
    delete h['URI'];
    assert.equal(lines(head(h, 0, '/p'))[0], 'GET /p?b=1 HTTP/1.1');
    delete h['QUERY'];
    assert.equal(lines(head(h, 0, '/p'))[0], 'GET /p HTTP/1.1');
  });

  it('when a header is repeated then it becomes repeated lines in order', () => {
    const h = headers({ cookie: ['a=1', 'b=2'], accept: 'text/html' });
    assert.deepEqual(lines(head(h)).slice(1), [
      'host: example.org',
      'cookie: a=1',
      'cookie: b=2',
      'accept: text/html',
    ]);
  });

  it('when host is missing then the default host is added', () => {
    const h = headers({});
    delete h['host'];
    assert.deepEqual(lines(head(h)), ['GET /a?b=1 HTTP/1.1', 'host: fallback.test']);
  });

  it('when values hold non-UTF-8 latin1 bytes then those bytes reach the head unchanged', () => {
    const value = 'caf\xe9 \xff\x80';
    const out = buildRequestHead(headers({ 'x-name': value }), '/a',
      { defaultHost: 'h', bodyLength: 0 });
    const expected = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff, 0x80]);
    const line = Buffer.concat([Buffer.from('x-name: '), expected, Buffer.from('\r\n')]);
    assert.ok(out.includes(line));
    assert.equal(out.length, head(headers({ 'x-name': value })).length);
  });
});

describe('buildRequestHead body framing', () => {
  it('when the client sent a content-length then it is re-declared from the body length', () => {
    const h = headers({ METHOD: 'POST', 'content-length': '999' });
    const out = lines(head(h, 12));
    assert.deepEqual(out.filter((l) => l.startsWith('content-length')), ['content-length: 12']);
  });

  it('when a body arrives without any framing header then content-length is added', () => {
    assert.ok(lines(head(headers({ METHOD: 'POST' }), 5)).includes('content-length: 5'));
  });

  it('when a bodiless request had no framing then no content-length is added', () => {
    const out = head(headers({}), 0);
    assert.ok(!/content-length|transfer-encoding/i.test(out), out);
  });

  it('when a client framed an empty body then content-length: 0 is declared', () => {
    const h = headers({ METHOD: 'POST', 'content-length': '0' });
    assert.ok(lines(head(h, 0)).includes('content-length: 0'));
  });

  it('when the body length is unknown then the head says transfer-encoding: chunked only', () => {
    const h = headers({ METHOD: 'PUT', 'content-length': '1000' });
    const out = lines(head(h, null));
    assert.ok(out.includes('transfer-encoding: chunked'));
    assert.ok(!out.some((l) => l.startsWith('content-length')));
  });

  it('when transfer-encoding, expect and upload markers arrive then they are dropped', () => {
    const h = headers({
      METHOD: 'POST',
      'transfer-encoding': 'chunked',
      expect: '100-continue',
      'x-mongrel2-upload-start': '/tmp/upload.abc',
      'x-mongrel2-upload-done': '/tmp/upload.abc',
      'x-kept': 'yes',
    });
    assert.deepEqual(lines(head(h, 3)).slice(1), [
      'host: example.org',
      'x-kept: yes',
      'content-length: 3',
    ]);
  });
});

describe('buildRequestHead refusals', () => {
  for (const key of ['content-length', 'host', 'transfer-encoding']) {
    it(`when ${key} is a list then the head is refused`, () => {
      refused(headers({ [key]: ['1', '2'] }), new RegExp(`repeated ${key}`));
    });
  }

  for (const [name, bad] of [['CR', '\r'], ['LF', '\n'], ['NUL', '\0']]) {
    it(`when a value holds ${name} then the head is refused`, () => {
      refused(headers({ 'x-a': `one${bad!}two` }), /control byte in x-a/);
    });

    it(`when one item of a repeated value holds ${name} then the head is refused`, () => {
      refused(headers({ cookie: ['a=1', `b=2${bad!}x: y`] }), /control byte in cookie/);
    });
  }

  for (const method of ['', 'get', 'GE T', 'G\r\nX', 'A'.repeat(21)]) {
    it(`when METHOD is ${JSON.stringify(method)} then the head is refused`, () => {
      refused(headers({ METHOD: method }), /bad method/);
    });
  }

  for (const version of ['', 'HTTP/2.0', 'HTTP/1.1\r\n', 'http/1.1', 'HTTP/1.2']) {
    it(`when VERSION is ${JSON.stringify(version)} then the head is refused`, () => {
      refused(headers({ VERSION: version }), /bad version/);
    });
  }

  it('when METHOD or VERSION is missing then the head is refused', () => {
    const noMethod = headers({});
    delete noMethod['METHOD'];
    refused(noMethod, /bad method/);
    const noVersion = headers({});
    delete noVersion['VERSION'];
    refused(noVersion, /bad version/);
  });

  it('when the URI holds a space then the head is refused', () => {
    refused(headers({ URI: '/a b' }), /bad request target/);
  });

  it('when a header name is not a token then the head is refused', () => {
    refused(headers({ 'x a': 'v' }), /bad header name/);
  });

  it('when HTTP/1.0 arrives then it is accepted with its version kept', () => {
    assert.equal(lines(head(headers({ VERSION: 'HTTP/1.0' })))[0], 'GET /a?b=1 HTTP/1.0');
  });
});
