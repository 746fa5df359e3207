import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { camelCaseKey, readConfigFile } from '../../src/node/config-file.js';

const dir = mkdtempSync(join(tmpdir(), 'm2fleet-config-file-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let count = 0;
function file(ext: string, text: string): string {
  const path = join(dir, `c${count++}${ext}`);
  writeFileSync(path, text);
  return path;
}

/** Asserts readConfigFile throws M2F_CONFIG_FILE whose message matches `pattern`. */
function rejects(path: string, pattern: RegExp): void {
  assert.throws(() => readConfigFile(path), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'M2F_CONFIG_FILE');
    assert.ok(err.message.startsWith(path), `names the file: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('camelCaseKey', () => {
  it('converts kebab and snake case per dotted part and leaves camelCase alone', () => {
    assert.equal(camelCaseKey('max-requests'), 'maxRequests');
    assert.equal(camelCaseKey('reload_on_rss'), 'reloadOnRss');
    assert.equal(camelCaseKey('mongrel2-chroot'), 'mongrel2Chroot');
    assert.equal(camelCaseKey('limits.max-inflight'), 'limits.maxInflight');
    assert.equal(camelCaseKey('logFormat'), 'logFormat');
  });

  it('maps a flag spelled unlike its key (receive-hwm) to the key it sets', () => {
    assert.equal(camelCaseKey('receive-hwm'), 'receiveHighWaterMark');
  });
});

describe('readConfigFile .ini', () => {
  it('when keys sit under [m2fleet] then they come back camelCase, repeated keys as lists', () => {
    const path = file('.ini', [
      '; m2fleet settings', '# another comment', '', '[m2fleet]',
      'zeromq = tcp://127.0.0.1:9997', 'zeromq=tcp://127.0.0.1:9996',
      'module = ./app.js:default', '  processes = 4  ', 'threads = 2',
      'max-requests = 5000', 'harakiri = 30', 'log-format = "pretty"',
      "interface = 'a = b'", 'empty =', 'some-future-key = yes',
    ].join('\r\n'));
    assert.deepEqual(readConfigFile(path), {
      zeromq: ['tcp://127.0.0.1:9997', 'tcp://127.0.0.1:9996'],
      module: './app.js:default', processes: '4', threads: '2',
      maxRequests: '5000', harakiri: '30', logFormat: 'pretty',
      interface: 'a = b', empty: '', someFutureKey: 'yes',
    });
  });

  it('when a key is repeated three times then the list keeps all three in order', () => {
    const path = file('.ini', '[m2fleet]\ndebug = a\ndebug = b\ndebug = c\n');
    assert.deepEqual(readConfigFile(path), { debug: ['a', 'b', 'c'] });
  });

  it('when the file holds only comments then the result is empty', () => {
    assert.deepEqual(readConfigFile(file('.ini', '; nothing\n')), {});
  });

  it('when a section other than [m2fleet] appears then the error names the line and section', () => {
    rejects(file('.ini', '[m2fleet]\nthreads = 2\n[uwsgi]\n'), /:3: unknown section \[uwsgi\]/);
  });

  it('when a line is not key = value then the error names the line and quotes it', () => {
    rejects(file('.ini', '[m2fleet]\n\nmaster\n'), /:3: expected "key = value", got "master"/);
    rejects(file('.ini', '[m2fleet]\n= 4\n'), /:2: expected "key = value"/);
  });

  it('when a key comes before the section then the error says so', () => {
    rejects(file('.ini', 'threads = 2\n[m2fleet]\n'), /:1: "threads" comes before the \[m2fleet\] section/);
  });
});

describe('readConfigFile .json', () => {
  it('when the object is flat then keys come back camelCase, arrays and types kept', () => {
    const path = file('.json', JSON.stringify({
      zeromq: ['tcp://127.0.0.1:9997'], processes: 4, 'max-requests': 100,
      'flow-control': true, unknownKey: { a: 1 },
    }));
    assert.deepEqual(readConfigFile(path), {
      zeromq: ['tcp://127.0.0.1:9997'], processes: 4, maxRequests: 100,
      flowControl: true, unknownKey: { a: 1 },
    });
  });

  it('when the object is wrapped as {"m2fleet": {...}} then the inner object is read', () => {
    const path = file('.json', '{"m2fleet": {"log-level": "debug"}}');
    assert.deepEqual(readConfigFile(path), { logLevel: 'debug' });
  });

  it('when the JSON is malformed with a known position then the error names line and column', () => {
    rejects(file('.json', '{\n  "threads": 2,\n}'), /:3: column 1: invalid JSON/);
  });

  it('when the JSON is malformed without a position then the error says invalid JSON, briefly', () => {
    const path = file('.json', '{\n  "threads": tru\n}');
    rejects(path, /: invalid JSON: Unexpected token/);
    assert.throws(() => readConfigFile(path), (err: Error) => !err.message.includes('threads'));
  });

  it('when the JSON is not an object then the error says so', () => {
    rejects(file('.json', '[1, 2]'), /expected a JSON object/);
    rejects(file('.json', '{"m2fleet": 3}'), /"m2fleet" must be a JSON object/);
  });
});

describe('readConfigFile errors', () => {
  it('when the file is missing then the error names it and ENOENT', () => {
    rejects(join(dir, 'missing.ini'), /cannot read config file \(ENOENT\)/);
  });

  it('when the extension is neither .json nor .ini then the error names the extension', () => {
    rejects(file('.yaml', 'a: 1'), /unknown config file type "\.yaml"/);
  });
});
