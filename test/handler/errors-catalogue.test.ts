import { NODE_ERROR_CODES } from '../../src/node/errors.ts';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { APP_LOAD_ERROR } from '../../src/handler/app-loader.js';
import {
  M2FleetError,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
} from '../../src/handler/errors.js';
import { ConfigError } from '../../src/node/config.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/** Every `'M2F_...'` string literal in src/, with the file it is in. */
function codesInSource(): { code: string; file: string }[] {
  const found: { code: string; file: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(full, 'utf8');
        for (const m of text.matchAll(/'(M2F_[A-Z0-9_]+)'/g)) {
          found.push({ code: m[1]!, file: path.relative(SRC, full) });
        }
      }
    }
  };
  walk(SRC);
  return found;
}

describe('error code catalogue', () => {
  it('when the protocol codes are listed then each starts with M2F_ and none repeats', () => {
    assert.ok(PROTOCOL_ERROR_CODES.length > 0);
    for (const code of PROTOCOL_ERROR_CODES) {
      assert.match(code, /^M2F_[A-Z0-9_]+$/);
    }
    assert.equal(new Set(PROTOCOL_ERROR_CODES).size, PROTOCOL_ERROR_CODES.length);
  });

  it('when the other codes are added then config and app-load codes stay distinct', () => {
    const all = [...PROTOCOL_ERROR_CODES, ...NODE_ERROR_CODES, APP_LOAD_ERROR];
    assert.equal(APP_LOAD_ERROR, 'M2F_APP_LOAD');
    assert.equal(new Set(all).size, all.length);
  });

  it('when src/ names an M2F_ code then that code is in the catalogue', () => {
    const known = new Set<string>([...PROTOCOL_ERROR_CODES, ...NODE_ERROR_CODES, APP_LOAD_ERROR]);
    const unknown = codesInSource().filter((c) => !known.has(c.code));
    assert.deepEqual(unknown, []);
  });

  it('when a protocol code is in the catalogue then some module outside errors.ts raises it', () => {
    const used = new Set(codesInSource()
      .filter((c) => c.file !== path.join('handler', 'errors.ts'))
      .map((c) => c.code));
    const unused = PROTOCOL_ERROR_CODES.filter((code) => !used.has(code));
    assert.deepEqual(unused, []);
  });
});

describe('error classes carry their code', () => {
  for (const code of PROTOCOL_ERROR_CODES) {
    it(`when a ProtocolError is made with ${code} then it carries that code and its context`, () => {
      const err = new ProtocolError(code, `broken ${code}`,
        { sender: 'abc', connId: '7', offset: 3, value: 'x' });
      assert.ok(err instanceof M2FleetError);
      assert.ok(err instanceof Error);
      assert.equal(err.code, code);
      assert.equal(err.name, 'ProtocolError');
      assert.equal(err.message, `broken ${code}`);
      assert.deepEqual([err.sender, err.connId, err.offset, err.value], ['abc', '7', 3, 'x']);
    });
  }

  it('when no context is given then every context field is undefined', () => {
    const err = new ProtocolError('M2F_BAD_REPLY', 'no');
    assert.deepEqual([err.sender, err.connId, err.offset, err.value],
      [undefined, undefined, undefined, undefined]);
  });

  it('when a ConfigError is made then it carries M2F_CONFIG and its key', () => {
    const err = new ConfigError('maxInflight', 'ten', 'expected a whole number >= 1');
    assert.ok(err instanceof M2FleetError);
    assert.equal(err.code, 'M2F_CONFIG');
    assert.equal(err.key, 'maxInflight');
    assert.equal(err.name, 'ConfigError');
  });
});
