import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { threadId } from 'node:worker_threads';
import { M2FleetError } from '../../src/handler/errors.js';
import { LEVELS, createLogger, type LoggerOptions } from '../../src/node/log.js';

/** A logger writing into an array instead of stderr. */
function capture(options: Omit<LoggerOptions, 'sink'> = {}): {
  log: ReturnType<typeof createLogger>; lines: string[]; records(): Record<string, unknown>[];
} {
  const lines: string[] = [];
  const log = createLogger({ ...options, sink: (line) => lines.push(line) });
  return {
    log,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('JSON log lines', () => {
  it('when info is logged then one JSON line has time, level, pid, thread, component, msg, fields', () => {
    const { log, lines, records } = capture();
    log.info({ port: 9999, spec: 'tcp://127.0.0.1:9999' }, 'connected');
    assert.equal(lines.length, 1);
    assert.ok(!lines[0]!.includes('\n'));
    const [rec] = records();
    assert.deepEqual(Object.keys(rec!),
      ['time', 'level', 'pid', 'thread', 'component', 'msg', 'port', 'spec']);
    assert.ok(!Number.isNaN(Date.parse(String(rec!['time']))));
    assert.equal(new Date(String(rec!['time'])).toISOString(), rec!['time']);
    assert.equal(rec!['level'], 30);
    assert.equal(rec!['pid'], process.pid);
    assert.equal(rec!['thread'], threadId);
    assert.equal(rec!['component'], 'm2fleet');
    assert.equal(rec!['msg'], 'connected');
    assert.equal(rec!['port'], 9999);
  });

  it('when each level is logged then the level numbers are pino\'s 50, 40, 30', () => {
    const { log, records } = capture();
    log.error({}, 'e');
    log.warn({}, 'w');
    log.info({}, 'i');
    assert.deepEqual(records().map((r) => r['level']), [50, 40, 30]);
    assert.deepEqual(LEVELS, { error: 50, warn: 40, info: 30, debug: 20 });
  });

  it('when the level is warn then info and debug lines are not written', () => {
    const { log, records } = capture({ level: 'warn' });
    log.info({}, 'dropped');
    log.debug({}, 'dropped');
    log.warn({}, 'kept');
    log.error({}, 'kept');
    assert.deepEqual(records().map((r) => r['msg']), ['kept', 'kept']);
  });

  it('when a field is an Error with a code then it becomes {code, message} with no stack', () => {
    const { log, lines, records } = capture();
    const err = new M2FleetError('M2F_BAD_ENVELOPE', 'bad envelope at 3');
    log.error({ err }, 'skipped a message');
    assert.deepEqual(records()[0]!['err'],
      { code: 'M2F_BAD_ENVELOPE', message: 'bad envelope at 3' });
    assert.ok(!lines[0]!.includes('stack'));
    assert.ok(!lines[0]!.includes('.ts:'), 'a stack frame leaked');
  });

  it('when a field is an Error without a code then it becomes {message}', () => {
    const { log, records } = capture();
    log.warn({ err: new TypeError('boom') }, 'oops');
    assert.deepEqual(records()[0]!['err'], { message: 'boom' });
  });
});

describe('child loggers', () => {
  it('when a child is bound then its lines carry the bindings and the parent\'s stay clean', () => {
    const { log, records } = capture();
    const child = log.child({ component: 'handler', unit: 'u1' });
    const grandchild = child.child({ conn: '47' });
    grandchild.info({ status: 200 }, 'done');
    log.info({}, 'root');
    const [a, b] = records();
    assert.equal(a!['component'], 'handler');
    assert.equal(a!['unit'], 'u1');
    assert.equal(a!['conn'], '47');
    assert.equal(a!['status'], 200);
    assert.equal(b!['component'], 'm2fleet');
    assert.equal('unit' in b!, false);
  });

  it('when a child is made then it keeps the parent\'s level', () => {
    const { log, records } = capture({ level: 'error' });
    const child = log.child({ component: 'app' });
    child.warn({}, 'dropped');
    child.error({}, 'kept');
    assert.deepEqual(records().map((r) => r['msg']), ['kept']);
  });
});

describe('debug per component', () => {
  it('when debug names handler then only the handler component writes debug lines', () => {
    const { log, records } = capture({ debug: ['handler'] });
    const handler = log.child({ component: 'handler' });
    const cluster = log.child({ component: 'cluster' });
    assert.equal(handler.isDebug(), true);
    assert.equal(cluster.isDebug(), false);
    handler.debug({ n: 1 }, 'handler detail');
    cluster.debug({ n: 2 }, 'cluster detail');
    const recs = records();
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!['msg'], 'handler detail');
    assert.equal(recs[0]!['level'], 20);
  });

  it('when debug names a component and the level is warn then its debug lines still go out', () => {
    const { log, records } = capture({ level: 'warn', debug: ['app'] });
    log.child({ component: 'app' }).debug({}, 'app detail');
    log.child({ component: 'app' }).info({}, 'not debug');
    assert.deepEqual(records().map((r) => r['msg']), ['app detail']);
  });

  for (const all of ['*', 'all']) {
    it(`when debug is ${all} then every component writes debug lines, children too`, () => {
      const { log, records } = capture({ debug: [all] });
      log.debug({}, 'root');
      log.child({ component: 'x' }).child({ y: 1 }).debug({}, 'deep');
      assert.deepEqual(records().map((r) => r['msg']), ['root', 'deep']);
    });
  }

  it('when no debug is asked for then debug lines are not written', () => {
    const { log, lines } = capture();
    assert.equal(log.isDebug(), false);
    log.child({ component: 'handler' }).debug({}, 'quiet');
    assert.equal(lines.length, 0);
  });

  it('when the level is debug then every component writes debug lines', () => {
    const { log, records } = capture({ level: 'debug' });
    log.child({ component: 'any' }).debug({}, 'shown');
    assert.equal(records().length, 1);
  });
});

describe('pretty format', () => {
  it('when the format is pretty then a line reads time, LEVEL, [component pid/thread], msg, fields', () => {
    const { log, lines } = capture({ format: 'pretty' });
    log.child({ component: 'handler' })
      .warn({ conn: '47', err: new M2FleetError('M2F_BAD_REPLY', 'no') }, 'send refused');
    assert.equal(lines.length, 1);
    const re = new RegExp('^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z WARN '
      + `\\[handler ${process.pid}/${threadId}\\] send refused `
      + 'conn=47 err=\\{"code":"M2F_BAD_REPLY","message":"no"\\}$');
    assert.match(lines[0]!, re);
  });
});
