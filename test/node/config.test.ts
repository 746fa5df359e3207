import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { M2FleetError } from '../../src/handler/errors.js';
import {
  ConfigError,
  buildConfig,
  fromEnvironment,
  type RawConfig,
} from '../../src/node/config.js';

const PAIR = 'tcp://127.0.0.1:9999,tcp://127.0.0.1:9998';
const BASE: RawConfig = { zeromq: PAIR };

/** Asserts a ConfigError naming `key` and showing `shown` in its message. */
function refused(layers: RawConfig[], key: string, shown: string): void {
  assert.throws(() => buildConfig(layers), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.equal(err.code, 'M2F_CONFIG');
    assert.equal(err.key, key);
    assert.ok(err.message.startsWith(`${key} (--`), err.message);
    assert.ok(err.message.includes(shown), `${err.message} lacks ${shown}`);
    return true;
  });
}

function assertDeepFrozen(value: unknown, where = 'config'): void {
  if (value === null || typeof value !== 'object') return;
  assert.ok(Object.isFrozen(value), `${where} is not frozen`);
  for (const [k, v] of Object.entries(value)) assertDeepFrozen(v, `${where}.${k}`);
}

describe('buildConfig defaults', () => {
  it('when only --zeromq is given then every other key has its documented default', () => {
    const c = buildConfig([BASE], '/srv/site');
    assert.deepEqual(c.zeromq,
      [{ sendSpec: 'tcp://127.0.0.1:9999', recvSpec: 'tcp://127.0.0.1:9998' }]);
    assert.equal(c.module, null);
    assert.equal(c.interface, 'auto');
    assert.equal(c.fastWebGlobals, false);
    assert.equal(c.mongrel2Chroot, path.resolve('/srv/site'));
    assert.equal(c.uploadDir, '/tmp');
    assert.equal(c.defaultHost, 'localhost');
    assert.equal(c.maxInflight, 64);
    assert.equal(c.receiveHighWaterMark, 16);
    assert.equal(c.maxMessageSize, 64 * 1024 * 1024);
    assert.equal(c.idleTimeoutMs, 5 * 60 * 1000);
    assert.equal(c.subscribeTimeoutMs, 2000);
    assert.equal(c.mercyMs, 30_000);
    assert.equal(c.flowControl, 'auto');
    assert.equal(c.schedPolicy, 'batch');
    assert.deepEqual(c.log, { level: 'info', format: 'json', debug: [] });
  });

  it('when no --zeromq is given anywhere then a ConfigError names zeromq', () => {
    refused([{}], 'zeromq', 'at least one');
  });

  it('when the result is built then it and every nested object are frozen', () => {
    const c = buildConfig([{ zeromq: [PAIR, PAIR], debug: 'handler' }]);
    assertDeepFrozen(c);
    assert.throws(() => {
      (c.log.debug as string[]).push('x');
    }, TypeError);
  });

  it('when the chroot is relative then it is resolved against the given cwd', () => {
    const c = buildConfig([{ ...BASE, mongrel2Chroot: 'm2' }], '/srv/site');
    assert.equal(c.mongrel2Chroot, path.resolve('/srv/site/m2'));
  });
});

describe('buildConfig layering', () => {
  it('when a flag and the environment both set a key then the flag wins', () => {
    const env = fromEnvironment({
      M2FLEET_ZEROMQ: 'ipc:///tmp/a,ipc:///tmp/b',
      M2FLEET_LOG_LEVEL: 'warn',
      M2FLEET_FLOW_CONTROL: 'off',
    });
    const c = buildConfig([env, { zeromq: [PAIR], logLevel: 'debug' }]);
    assert.equal(c.zeromq.length, 1);
    assert.equal(c.zeromq[0]!.sendSpec, 'tcp://127.0.0.1:9999');
    assert.equal(c.log.level, 'debug');
    assert.equal(c.flowControl, 'off', 'a key only the environment sets is kept');
  });

  it('when the environment sets every variable then each lands on its key', () => {
    const raw = fromEnvironment({
      M2FLEET_ZEROMQ: PAIR,
      M2FLEET_MODULE: './app.mjs:handler',
      M2FLEET_INTERFACE: 'fetch',
      M2FLEET_MONGREL2_CHROOT: '/m2',
      M2FLEET_UPLOAD_DIR: '/uploads',
      M2FLEET_FLOW_CONTROL: 'on',
      M2FLEET_LOG_LEVEL: 'warn',
      M2FLEET_LOG_FORMAT: 'pretty',
      M2FLEET_DEBUG: 'handler,app',
      UNRELATED: 'x',
    });
    const c = buildConfig([raw]);
    assert.equal(c.module, './app.mjs:handler');
    assert.equal(c.interface, 'fetch');
    assert.equal(c.mongrel2Chroot, '/m2');
    assert.equal(c.uploadDir, '/uploads');
    assert.equal(c.flowControl, 'on');
    assert.deepEqual(c.log, { level: 'warn', format: 'pretty', debug: ['handler', 'app'] });
  });

  it('when an environment variable is empty then it is treated as unset', () => {
    assert.deepEqual(fromEnvironment({ M2FLEET_LOG_LEVEL: '', M2FLEET_MODULE: '' }), {});
  });

  it('when NODE_DEBUG lists m2fleet then debug is on for every component', () => {
    const raw = fromEnvironment({ NODE_DEBUG: 'http,m2fleet,net', M2FLEET_ZEROMQ: PAIR });
    assert.deepEqual(buildConfig([raw]).log.debug, ['*']);
  });

  it('when NODE_DEBUG names other modules only then debug stays off', () => {
    assert.equal(fromEnvironment({ NODE_DEBUG: 'http,net' }).debug, undefined);
  });

  it('when M2FLEET_DEBUG and NODE_DEBUG are both set then M2FLEET_DEBUG decides', () => {
    const raw = fromEnvironment({ NODE_DEBUG: 'm2fleet', M2FLEET_DEBUG: 'cluster' });
    assert.equal(raw.debug, 'cluster');
  });

  it('when --debug is given without a value then debug is on for every component', () => {
    assert.deepEqual(buildConfig([{ ...BASE, debug: true }]).log.debug, ['*']);
  });
});

describe('buildConfig endpoints', () => {
  it('when --zeromq is repeated then there is one endpoint per value, in order', () => {
    const c = buildConfig([{ zeromq: [PAIR, 'ipc:///tmp/s,ipc:///tmp/r'] }]);
    assert.deepEqual(c.zeromq.map((e) => [e.sendSpec, e.recvSpec]), [
      ['tcp://127.0.0.1:9999', 'tcp://127.0.0.1:9998'],
      ['ipc:///tmp/s', 'ipc:///tmp/r'],
    ]);
  });

  it('when one value lists pairs separated by semicolons then each is an endpoint', () => {
    const c = buildConfig([{ zeromq: `${PAIR} ; inproc://a,inproc://b` }]);
    assert.equal(c.zeromq.length, 2);
    assert.deepEqual({ ...c.zeromq[1] }, { sendSpec: 'inproc://a', recvSpec: 'inproc://b' });
  });

  for (const bad of [
    'tcp://127.0.0.1:9999',
    'tcp://127.0.0.1:9999,tcp://127.0.0.1:9998,tcp://127.0.0.1:9997',
    'http://127.0.0.1:9999,tcp://127.0.0.1:9998',
    'tcp://127.0.0.1,tcp://127.0.0.1:9998',
  ]) {
    it(`when the pair is ${JSON.stringify(bad)} then zeromq is refused naming the pair`, () => {
      refused([{ zeromq: bad }], 'zeromq', JSON.stringify(bad));
      refused([{ zeromq: bad }], 'zeromq', 'SEND_SPEC,RECV_SPEC');
    });
  }

  it('when the second of two --zeromq values is bad then that value is the one named', () => {
    refused([{ zeromq: [PAIR, 'nope'] }], 'zeromq', '"nope"');
  });
});

describe('buildConfig refuses bad values naming key and value', () => {
  const cases: [RawConfig, string, string][] = [
    [{ maxInflight: 'ten' }, 'maxInflight', '"ten"'],
    [{ maxInflight: '0' }, 'maxInflight', '"0"'],
    [{ maxInflight: '1.5' }, 'maxInflight', '"1.5"'],
    [{ receiveHighWaterMark: '-3' }, 'receiveHighWaterMark', '"-3"'],
    [{ maxMessageSize: '-2' }, 'maxMessageSize', '"-2"'],
    [{ idleTimeout: 'soon' }, 'idleTimeout', '"soon"'],
    [{ subscribeTimeout: '-5s' }, 'subscribeTimeout', '"-5s"'],
    [{ mercy: 'forever' }, 'mercy', '"forever"'],
    [{ interface: 'express' }, 'interface', '"express"'],
    [{ flowControl: 'ON' }, 'flowControl', '"ON"'],
    [{ logLevel: 'trace' }, 'logLevel', '"trace"'],
    [{ logFormat: 'xml' }, 'logFormat', '"xml"'],
    [{ schedPolicy: 'fifo' }, 'schedPolicy', '"fifo"'],
    [{ fastWebGlobals: 'yes' }, 'fastWebGlobals', '"yes"'],
    [{ defaultHost: 'a b' }, 'defaultHost', '"a b"'],
  ];
  for (const [raw, key, shown] of cases) {
    it(`when ${key} is ${shown} then a ConfigError names ${key} and ${shown}`, () => {
      refused([BASE, raw], key, shown);
    });
  }

  it('when a key is bad then the message also spells it as the flag and file key', () => {
    refused([BASE, { schedPolicy: 'fifo' }], 'schedPolicy', 'schedPolicy (--sched-policy)');
    refused([BASE, { receiveHighWaterMark: '0' }], 'receiveHighWaterMark',
      'receiveHighWaterMark (--receive-hwm)');
  });

  it('when a choice is bad then the message lists the allowed choices', () => {
    refused([BASE, { flowControl: 'maybe' }], 'flowControl', 'auto, on, off');
  });

  it('when a duration is bad then the message says what a duration looks like', () => {
    refused([BASE, { mercy: 'x' }], 'mercy', 'expected a duration');
  });

  it('when a ConfigError is thrown then it is an M2FleetError with code M2F_CONFIG', () => {
    const err = new ConfigError('mercy', 'x', 'why');
    assert.ok(err instanceof M2FleetError);
    assert.equal(err.code, 'M2F_CONFIG');
    assert.equal(err.name, 'ConfigError');
    assert.equal(err.message, 'mercy (--mercy): why (got "x")');
  });

  it('when a duration is an empty string then a ConfigError names the key', () => {
    refused([BASE, { mercy: '' }], 'mercy', '""');
    refused([BASE, { idleTimeout: '  ' }], 'idleTimeout', '"  "');
  });

  it('when a number is empty, hex or exponent then a ConfigError names the key', () => {
    refused([BASE, { maxMessageSize: '' }], 'maxMessageSize', '""');
    refused([BASE, { maxInflight: '0x10' }], 'maxInflight', '"0x10"');
    refused([BASE, { maxInflight: '1e3' }], 'maxInflight', '"1e3"');
  });
});

describe('buildConfig accepts good values', () => {
  it('when a config file gives durations as numbers then they are seconds, as on flags', () => {
    const c = buildConfig([{ ...BASE, mercy: 30, harakiri: 60 }]);
    assert.equal(c.mercyMs, 30_000);
    assert.equal(c.harakiriMs, 60_000);
  });

  it('when processes or threads are absurd then a ConfigError names the cap', () => {
    refused([BASE, { processes: '100000' }], 'processes', 'at most 1024');
    refused([BASE, { threads: '5000' }], 'threads', 'at most 256');
  });

  it('when durations use units or bare seconds then they become milliseconds', () => {
    const c = buildConfig([{ ...BASE, idleTimeout: '2m', subscribeTimeout: '500ms', mercy: '7' }]);
    assert.equal(c.idleTimeoutMs, 120_000);
    assert.equal(c.subscribeTimeoutMs, 500);
    assert.equal(c.mercyMs, 7000);
  });

  it('when numbers come as strings then they are parsed; -1 means no size limit', () => {
    const c = buildConfig([{ ...BASE, maxInflight: ' 8 ', receiveHighWaterMark: '1',
      maxMessageSize: '-1' }]);
    assert.equal(c.maxInflight, 8);
    assert.equal(c.receiveHighWaterMark, 1);
    assert.equal(c.maxMessageSize, -1);
  });

  it('when a boolean comes as "true" or "1" then it is true', () => {
    assert.equal(buildConfig([{ ...BASE, fastWebGlobals: 'true' }]).fastWebGlobals, true);
    assert.equal(buildConfig([{ ...BASE, fastWebGlobals: '1' }]).fastWebGlobals, true);
    assert.equal(buildConfig([{ ...BASE, fastWebGlobals: true }]).fastWebGlobals, true);
  });
});

describe('buildConfig standard sockets', () => {
  it('reads --http, --socket and --fastcgi-socket: IPs, [v6], :PORT and unix paths', () => {
    const c = buildConfig([{ http: ['127.0.0.1:8080', ':8081'], socket: '[::1]:3031', fastcgiSocket: 'run/f.sock' }], '/srv');
    assert.deepEqual(c.sockets.map((s) => [s.kind, s.host, s.port, s.path]), [
      ['http', '127.0.0.1', 8080, null],
      ['http', '0.0.0.0', 8081, null],
      ['uwsgi', '::1', 3031, null],
      ['fastcgi', null, null, '/srv/run/f.sock'],
    ]);
    assert.deepEqual(c.zeromq, []);
    assertDeepFrozen(c);
  });

  it('sockets alone are enough; limits have defaults and take flags', () => {
    const c = buildConfig([{ http: 'localhost:80', socketMaxBody: '1000', socketHeaderTimeout: '2s', chmodSocket: '660' }]);
    assert.equal(c.sockets[0]!.host, '127.0.0.1');
    assert.equal(c.socketLimits.maxBody, 1000);
    assert.equal(c.socketLimits.headerTimeoutMs, 2000);
    assert.equal(c.socketLimits.maxHeaders, 100);
    assert.equal(c.chmodSocket, 0o660);
  });

  it('refuses bad addresses, repeats and modes, naming the option', () => {
    refused([{ http: 'example.org:80' }], 'http', 'example.org:80');
    refused([{ socket: '127.0.0.1:99999' }], 'socket', '99999');
    refused([{ http: '127.0.0.1:80', fastcgiSocket: '127.0.0.1:80' }], 'fastcgiSocket', 'address given twice');
    refused([{ http: ':80', chmodSocket: 'rw' }], 'chmodSocket', 'rw');
    refused([{ http: ':80', socketMaxHeaderSize: '70000' }], 'socketMaxHeaderSize', '70000');
    refused([{}], 'zeromq', '--http');
    refused([{ socket: `/run/${'x'.repeat(110)}.sock` }], 'socket', 'longer than 107 bytes');
  });
});
