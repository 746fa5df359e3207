import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ACCESS_MSG, formatAccessLine } from '../../src/node/access-log.js';
import { createLogger } from '../../src/node/log.js';

const request = {
  method: 'GET', path: '/items/7', status: 200, bytes: 512, durationMs: 3.14159,
  unit: '0f1e2d3c-aaaa-bbbb-cccc-000000000001', connId: '42',
};

describe('formatAccessLine', () => {
  it('when a request is answered then the record has short keys and ms rounded to 0.1', () => {
    assert.deepEqual(formatAccessLine({ ...request, remote: '192.0.2.9' }), {
      m: 'GET', path: '/items/7', st: 200, b: 512, ms: 3.1,
      unit: '0f1e2d3c-aaaa-bbbb-cccc-000000000001', conn: '42', ip: '192.0.2.9',
    });
  });

  it('when the target has a query string then it is not logged', () => {
    assert.equal(formatAccessLine({ ...request, path: '/items/7?token=secret&x=1' }).path, '/items/7');
  });

  it('when the client address is unknown or empty then ip is left out', () => {
    assert.equal('ip' in formatAccessLine(request), false);
    assert.equal('ip' in formatAccessLine({ ...request, remote: '' }), false);
  });

  it('when logged at info with ACCESS_MSG then one JSON line carries msg access and the fields after it', () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l) });
    log.info(formatAccessLine({ ...request, status: 404, bytes: 0 }), ACCESS_MSG);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec['level'], 30);
    assert.equal(rec['msg'], 'access');
    assert.equal(rec['st'], 404);
    const keys = Object.keys(rec);
    assert.deepEqual(keys.slice(keys.indexOf('msg') + 1), ['m', 'path', 'st', 'b', 'ms', 'unit', 'conn']);
  });
});
