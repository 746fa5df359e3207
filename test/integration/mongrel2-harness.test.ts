/**
 * The real-Mongrel2 harness: a raw ZeroMQ handler in this file answers one
 * request on the JSON route and one on the tnetstring route, and stop()
 * ends Mongrel2 and removes its dir.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Pull, XPublisher } from 'zeromq';
import { ensureMongrel2, startMongrel2, type Mongrel2HandlerInfo, type Mongrel2Instance } from '../helpers/mongrel2.js';
import { RawConnection, rawRequest } from '../helpers/http-client.js';

/** Polls `check` every 50 ms for up to 3 s. */
async function eventually(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 60; i++) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** Reads <dir>/run/mongrel2.pid, or NaN when it is not there. */
function readPidFile(dir: string): number {
  try {
    return Number(readFileSync(`${dir}/run/mongrel2.pid`, 'latin1').trim());
  } catch {
    return NaN;
  }
}

/** One request as the test handler splits it (enough for these checks). */
interface SeenRequest {
  sender: string;
  connId: string;
  path: string;
  headerTag: string;
  headerPayload: string;
}

/** Splits `SENDER ID PATH LEN:HEADERS<tag>LEN:BODY,` without decoding headers. */
function splitRequest(frame: Buffer): SeenRequest {
  const text = frame.toString('latin1');
  const [sender, connId, path] = text.split(' ', 3) as [string, string, string];
  const rest = text.slice(sender.length + connId.length + path.length + 3);
  const colon = rest.indexOf(':');
  const length = Number(rest.slice(0, colon));
  return {
    sender, connId, path,
    headerPayload: rest.slice(colon + 1, colon + 1 + length),
    headerTag: rest.charAt(colon + 1 + length),
  };
}

/** A minimal handler: Pull on sendSpec, XPublisher on recvSpec. */
async function connectHandler(info: Mongrel2HandlerInfo) {
  const pull = new Pull({ receiveTimeout: 5000, linger: 0 });
  const pub = new XPublisher({ receiveTimeout: 5000, linger: 500 });
  pull.connect(info.sendSpec);
  pub.connect(info.recvSpec);

  // Mongrel2's SUB subscribes to recv_ident; once the subscription reaches
  // the XPUB, replies can no longer be lost to the slow-joiner window.
  const [subscription] = await pub.receive();
  assert.equal(subscription![0], 1, 'first XPUB message is a subscribe');
  assert.equal(subscription!.subarray(1).toString('latin1'), info.recvIdent);

  return {
    pull, pub,
    close: () => { pull.close(); pub.close(); },
  };
}

/** `SENDER LEN:ID, BODY` as in the reply grammar (protocol §5.1). */
function reply(sender: string, connId: string, body: string): Buffer {
  return Buffer.from(`${sender} ${connId.length}:${connId}, ${body}`, 'latin1');
}

describe('mongrel2 harness', () => {
  let m2: Mongrel2Instance;

  before(async () => {
    ensureMongrel2();
    m2 = await startMongrel2();
  });
  after(async () => { await m2?.stop(); });

  test('the temp dir holds the config, the pid file and the upload dir', async () => {
    assert.ok(existsSync(`${m2.dir}/config.sqlite`));
    assert.ok(existsSync(m2.uploadDir));
    // Mongrel2 writes both files on its own schedule, after the port opens.
    assert.ok(await eventually(() => /Binding handler PUSH socket/.test(m2.errorLog())), m2.errorLog());
    assert.ok(await eventually(() => readPidFile(m2.dir) === m2.pid), 'pid file holds the pid');
    assert.notEqual(m2.handlers.json.sendIdent, m2.handlers.tnet.sendIdent);
  });

  for (const kind of ['json', 'tnet'] as const) {
    test(`a ${kind} handler sees the request and its reply reaches the client`, async (t) => {
      const info = m2.handlers[kind];
      const handler = await connectHandler(info);
      t.after(() => handler.close());
      const conn = await RawConnection.connect(m2.httpPort);
      t.after(() => conn.close());

      const path = `/${kind}/hello?x=1`;
      await conn.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const [frame] = await handler.pull.receive();
      const seen = splitRequest(frame!);

      assert.equal(seen.sender, info.sendIdent);
      assert.match(seen.connId, /^\d+$/);
      assert.equal(seen.path, `/${kind}/hello`);
      if (kind === 'json') {
        assert.equal(seen.headerTag, ',');
        const headers = JSON.parse(seen.headerPayload);
        assert.equal(headers.METHOD, 'GET');
        assert.equal(headers.PATH, `/${kind}/hello`);
        assert.equal(headers.QUERY, 'x=1');
      } else {
        assert.equal(seen.headerTag, '}');
        assert.ok(seen.headerPayload.includes('6:METHOD,3:GET,'));
        assert.ok(seen.headerPayload.includes('4:PATH,11:/tnet/hello,'));
      }

      const body = `hi ${kind}\u00e9`;
      const length = Buffer.byteLength(body, 'latin1');
      await handler.pub.send(reply(seen.sender, seen.connId,
        `HTTP/1.1 200 OK\r\nContent-Length: ${length}\r\nX-Kind: ${kind}\r\nX-Kind: again\r\n\r\n${body}`));
      const response = await conn.readResponse();
      assert.equal(response.status, 200);
      assert.deepEqual(response.headers['x-kind'], [kind, 'again']);
      assert.deepEqual(response.body, Buffer.from(body, 'latin1'));
    });
  }

  test('a reply with another sender is dropped by the recv_ident filter', async (t) => {
    const handler = await connectHandler(m2.handlers.json);
    t.after(() => handler.close());
    const result = rawRequest(m2.httpPort, 'GET /json/x HTTP/1.1\r\nHost: localhost\r\n\r\n', {
      timeoutMs: 700, until: (data) => data.includes('\r\n\r\n'),
    });
    const [frame] = await handler.pull.receive();
    const seen = splitRequest(frame!);
    await handler.pub.send(reply('m2t-other-ident', seen.connId, 'HTTP/1.1 204 No Content\r\n\r\n'));
    const { data, timedOut } = await result;
    assert.equal(data.length, 0);
    assert.equal(timedOut, true);
  });
});

test('stop() ends the mongrel2 process and removes its dir', async () => {
  ensureMongrel2();
  const m2 = await startMongrel2({ rootRoute: false, flowControl: 1 });
  const { pid, dir } = m2;
  try {
    assert.doesNotThrow(() => process.kill(pid, 0));
  } finally {
    await m2.stop();
  }
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
  assert.equal(existsSync(dir), false);
  await m2.stop();
});

test('an unsafe setting makes startMongrel2 reject before spawning', async () => {
  ensureMongrel2();
  await assert.rejects(
    startMongrel2({ settings: { 'upload.temp_store': '/tmp/"x' } }),
    /unsafe string/,
  );
});
