/**
 * listen-capture: HTTP servers are captured without binding; other servers
 * and everything after restore() bind for real (127.0.0.1, port 0 only).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { captureListen, restoreListen } from '../../src/handler/listen-capture.js';

const originalListen = net.Server.prototype.listen;

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('captureListen', () => {
  afterEach(() => {
    restoreListen();
  });

  test('an HTTP server is captured: no bind, callback later, fake address', async () => {
    const capture = captureListen();
    const server = http.createServer();
    let called = false;
    const returned = server.listen(4567, '0.0.0.0', () => {
      called = true;
    });
    assert.equal(returned, server);
    assert.equal(called, false, 'callback is asynchronous');
    await new Promise((resolve) => server.once('listening', resolve));
    assert.equal(called, true);
    assert.equal(server.listening, false);
    assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port: 4567 });
    assert.deepEqual(capture.servers, [server]);
    assert.equal(await capture.waitForServer(10), server);
  });

  test('an https.Server and listen({ port }) are captured too', async () => {
    const capture = captureListen();
    const server = https.createServer();
    server.listen({ port: 8443 });
    assert.equal(server.listening, false);
    assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port: 8443 });
    assert.equal(capture.servers.length, 1);
  });

  test('a plain TCP server passes through to the real listen', async () => {
    const capture = captureListen();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    assert.equal(server.listening, true);
    assert.equal(capture.servers.length, 0);
    await close(server);
  });

  test('restoreAfterNextCapture restores once the next call is captured', async () => {
    const capture = captureListen();
    capture.restoreAfterNextCapture();
    assert.equal(capture.isActive, true);
    const waiting = capture.waitForServer(5_000);
    const server = http.createServer();
    server.listen(3002);
    assert.equal(await waiting, server);
    assert.equal(capture.isActive, false);
    assert.equal(net.Server.prototype.listen, originalListen);
  });

  test('waitForServer resolves undefined after its timeout', async () => {
    const capture = captureListen();
    assert.equal(await capture.waitForServer(10), undefined);
  });

  test('restoreListen puts the real listen back; a bound server shows its real address', async () => {
    const capture = captureListen();
    assert.throws(() => captureListen(), /already active/);
    const server = http.createServer();
    server.listen(3003);
    assert.equal(restoreListen(), true);
    assert.equal(restoreListen(), false);
    assert.equal(capture.isActive, false);
    assert.equal(net.Server.prototype.listen, originalListen);

    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as net.AddressInfo;
    assert.notEqual(address.port, 3003);
    assert.equal(server.listening, true);
    await close(server);
  });
});
