// m2fleet against a fake Mongrel2 that sends what the real one never would
// (malformed frames, stray notices, credits only when the test says so) and
// checks every published frame against the reply grammar. The probe app
// answers the requests.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeClose, encodeCtl, encodeReply } from '../../src/handler/reply.js';
import { startFleet, REPO_ROOT, type FleetProcess } from '../helpers/fleet.ts';
import {
  FakeMongrel2, buildNotice, buildUploadPiece, parseReplyStrict, type Reply,
} from '../helpers/fake-mongrel2.ts';

const PROBE = join(REPO_ROOT, 'test/fixtures/probe-app.mjs');
const WARN = 40;
const CREDITS = 102400;

let nextConnId = 1000;
/** A connection id no other test uses, so replies never get mixed up. */
function freshId(): string {
  return String(nextConnId++);
}

interface Rig {
  fake: FakeMongrel2;
  fleet: FleetProcess;
}

async function startRig(): Promise<Rig> {
  const fake = await FakeMongrel2.start();
  try {
    // A short mercy: a request left hanging must not hold up the stop.
    const fleet = await startFleet([
      '--zeromq', fake.zeromqArg, '--module', PROBE, '--mercy', '1s',
    ]);
    return { fake, fleet };
  } catch (err) {
    await fake.close();
    throw err;
  }
}

async function stopRig(rig: Rig | undefined): Promise<void> {
  if (process.env['M2FLEET_TEST_DUMP']) console.log(rig?.fleet.stderr());
  await rig?.fleet.stop();
  await rig?.fake.close();
}

function warnCount(fleet: FleetProcess): number {
  return fleet.logs().filter((r) => r.level === WARN).length;
}

/** Polls (bounded) until fleet has logged at least `n` warn records. */
async function waitForWarns(fleet: FleetProcess, n: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (warnCount(fleet) < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return warnCount(fleet);
}

/** Sends a GET for `uri` and returns its one response (and frames). */
async function get(rig: Rig, sender: string, uri: string, extra: Record<string, string> = {}) {
  const id = freshId();
  const from = rig.fake.all.length;
  await rig.fake.send(rig.fake.httpRequest({ sender, connId: id, uri, extra }));
  const { responses, frames } = await rig.fake.responses(id, { from });
  return { id, response: responses[0]!, frames };
}

/** The reply-wide rules every test run must keep (checked at the end). */
function assertRepliesWellFormed(fake: FakeMongrel2): void {
  fake.assertClean();
  assert.deepEqual(fake.senderMismatches(), []);
  // A close is deliberate: the last frame for its connection, never a stray.
  const lastIndex = new Map<string, number>();
  for (const r of fake.all) for (const id of r.ids) lastIndex.set(id, r.index);
  for (const r of fake.all.filter((x) => x.isClose)) {
    for (const id of r.ids) assert.equal(lastIndex.get(id), r.index, `close of ${id} is not last`);
  }
}

describe('the strict reply-grammar checker', () => {
  const tn = (payload: string, tag: string): string => `${payload.length}:${payload}${tag}`;
  const ctlWith = (credits: string): string =>
    tn(tn('ctl', ',') + tn(tn('credits', ',') + credits, '}'), ']');
  const good = (s: string): Reply => parseReplyStrict(Buffer.from(s, 'latin1'));
  const bad = (s: string): void => {
    assert.throws(() => parseReplyStrict(Buffer.from(s, 'latin1')), /reply grammar/, s);
  };

  test('accepts a reply, a multi-target reply, a close and a ctl credits frame', () => {
    assert.deepEqual(good('abc-1 2:47, HTTP/1.1 200 OK\r\n').ids, ['47']);
    assert.deepEqual(good('abc 8:49 50 51, X').ids, ['49', '50', '51']);
    assert.equal(good('abc 2:47, ').isClose, true);
    const ctl = good(`abc 4:X 47, ${tn(tn('ctl', ',') + tn(tn('credits', ',') + tn('100', '#'), '}'), ']')}`);
    assert.equal(ctl.ctl?.key, 'ctl');
    assert.equal(ctl.ctl?.args['credits'], 100);
    // m2fleet's own encoders pass.
    assert.equal(parseReplyStrict(encodeCtl('a-1', ['7'], { credits: 65536 })).ctl?.key, 'ctl');
    assert.equal(parseReplyStrict(encodeClose('a-1', ['7', '8'])).isClose, true);
    assert.equal(parseReplyStrict(encodeReply('a-1', ['4294967295'], Buffer.from('x'))).isClose,
      false);
  });

  test('rejects every framing Mongrel2 drops, and the ones m2fleet must never make', () => {
    for (const s of [
      'abc 6:49  50, V', 'abc 5:49,50, V', 'abc 3:49, V', 'abc 2:49,V', 'abc 2:49,',
      'abc  2:49, V', 'abc\t2:49, V', 'bad_uuid 2:49, V', 'a.b 2:49, V', ' 2:49, V',
      'abc 0:, V', 'abc 3:049, V', 'abc 3:49 , V', 'abc 02:49, V', 'abc 2:4x, V',
      'abc 4:X 47, 3:abc]', `abc 4:X 47, ${tn(tn('ctl', ',') + tn('nope', ','), ']')}`,
      `abc 4:X 47, ${tn(tn('ctl', ','), ']')}`, `abc 4:X 47, ${ctlWith(tn('100', ','))}`,
      `abc 4:X 47, ${ctlWith(tn('1.5', '^'))}`, `abc 4:X 47, ${ctlWith(tn('100', '#'))}x`,
      `abc 4:X 47, ${ctlWith(tn('0100', '#').replace('4:', '04:'))}`,
    ]) bad(s);
    const ids = Array.from({ length: 129 }, (_, i) => String(i + 1)).join(' ');
    bad(`abc ${ids.length}:${ids}, V`);
  });
});

describe('m2fleet behind a misbehaving fake Mongrel2', () => {
  let rig: Rig;

  before(async () => { rig = await startRig(); });
  after(async () => { await stopRig(rig); });

  test('a WebSocket handshake to an app without an upgrade listener is its GET request, then closed', async () => {
    const id = freshId();
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-ws', connId: id, method: 'WEBSOCKET_HANDSHAKE', uri: '/headers',
      headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
      body: 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    }));
    const { responses, closed } = await rig.fake.responses(id, { from, untilClose: true });
    assert.equal(responses[0]!.status, 200);
    const seen = JSON.parse(responses[0]!.body.toString()) as { method: string; headers: Record<string, string> };
    assert.equal(seen.method, 'GET');
    assert.equal(Buffer.from(seen.headers['upgrade']!, 'hex').toString(), 'websocket');
    assert.equal(closed, true);
  });

  test('a DOWNLOAD_CREDITS that is not a number is ignored; the response still arrives', async () => {
    const { response } = await get(rig, 'fake-credits', '/headers', { DOWNLOAD_CREDITS: 'abc' });
    assert.equal(response.status, 200);
    const again = await get(rig, 'fake-credits', '/headers');
    assert.equal(again.response.status, 200);
  });

  test('a CONNECT request is answered 405 and closed', async () => {
    const id = freshId();
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-connect', connId: id, method: 'CONNECT', uri: 'example.test:443',
    }));
    const { responses, closed } = await rig.fake.responses(id, { from, untilClose: true });
    assert.equal(responses[0]!.status, 405);
    assert.equal(closed, true);
  });

  test('a valid JSON and a valid tnetstring request are answered', async () => {
    for (const protocol of ['json', 'tnetstring'] as const) {
      const id = freshId();
      const from = rig.fake.all.length;
      await rig.fake.send(rig.fake.httpRequest({
        sender: 'fake-valid', connId: id, uri: '/echo', method: 'POST', body: 'hello', protocol,
      }));
      const { responses, frames } = await rig.fake.responses(id, { from });
      assert.equal(responses[0]!.status, 200);
      assert.equal(responses[0]!.body.toString(), 'hello');
      assert.ok(frames.every((f) => f.sender === 'fake-valid' && f.body.length > 0));
    }
  });

  test('every malformed message is skipped with one warning, and the next request is served', async () => {
    const valid = (id: string, protocol: 'json' | 'tnetstring' = 'json'): Buffer =>
      rig.fake.httpRequest({ sender: 'fake-bad', connId: id, uri: '/headers', protocol });
    const text = (s: string): Buffer => Buffer.from(s, 'latin1');
    const v = valid('1').toString('latin1');
    const jsonHeaders = v.slice(v.indexOf(' /headers ') + 10, v.lastIndexOf('0:,'));
    const headerLen = jsonHeaders.slice(0, jsonHeaders.indexOf(':'));
    const cases: [string, Buffer[]][] = [
      ['garbage', [text('\x00\xff\x13 garbage \x01 not a mongrel2 message')]],
      ['truncated', [valid('1').subarray(0, 60)]],
      ['truncated before the body tag', [valid('1').subarray(0, -1)]],
      ['LEN one too large', [text(v.replace(`${headerLen}:{`, `${Number(headerLen) + 1}:{`))]],
      ['LEN one too small', [text(v.replace(`${headerLen}:{`, `${Number(headerLen) - 1}:{`))]],
      ['LEN not digits', [text(v.replace(`${headerLen}:{`, `${headerLen}x:{`))]],
      ['LEN with a sign', [text(v.replace(`${headerLen}:{`, `+${headerLen}:{`))]],
      ['bad header tag', [text(v.replace('},0:,', '}]0:,'))]],
      ['bad body tag', [text(v.slice(0, -1) + ';')]],
      ['trailing bytes', [Buffer.concat([valid('1'), text('xx')])]],
      ['non-digit id', [text(v.replace('fake-bad 1 ', 'fake-bad 1a '))]],
      ['negative id', [text(v.replace('fake-bad 1 ', 'fake-bad -1 '))]],
      ['id past 2^32', [text(v.replace('fake-bad 1 ', 'fake-bad 4294967296 '))]],
      ['bad sender', [text(v.replace('fake-bad 1 ', 'fake_bad 1 '))]],
      ['double space', [text(v.replace('fake-bad 1 ', 'fake-bad  1 '))]],
      ['multi-part message', [valid(freshId()), valid(freshId())]],
      ['zero-length frame', [Buffer.alloc(0)]],
      ['huge declared header size', [text(`fake-bad 1 /x 999999999:{},0:,`)]],
      ['huge declared body size', [text(`fake-bad 1 /x 2:{},9999999999:abc,`)]],
      ['invalid JSON headers', [text(`fake-bad 1 /x 9:{"PATH":},0:,`)]],
      ['a JSON header that is a number', [text(`fake-bad 1 /x 12:{"METHOD":5},0:,`)]],
      ['bad tnetstring tag inside headers', [text(`fake-bad 1 /x 16:6:METHOD,4:JSON?}0:,`)]],
      ['odd tnetstring dict', [text(`fake-bad 1 /x 8:6:METHOD,}0:,`)]],
    ];
    let warns = await waitForWarns(rig.fleet, 0);
    for (const [name, parts] of cases) {
      await rig.fake.sendParts(parts);
      const id = freshId();
      const from = rig.fake.all.length;
      await rig.fake.send(valid(id, name.length % 2 ? 'json' : 'tnetstring'));
      const { responses } = await rig.fake.responses(id, { from });
      assert.equal(responses[0]!.status, 200, name);
      const now = await waitForWarns(rig.fleet, warns + 1);
      assert.equal(now, warns + 1, `${name}: expected exactly one warning, got ${now - warns}`);
      warns = now;
    }
    // Nothing was answered for the malformed messages (id 1 was never valid).
    assert.equal(rig.fake.all.filter((r) => r.ids.includes('1')).length, 0);
    assert.equal(rig.fleet.logs().filter((r) => Number(r.level) >= 50).length, 0);
  });

  test('notices for unknown ids, repeated notices and credits get no reply', async () => {
    const ghost = freshId();
    const credited = freshId();
    const other = freshId();
    for (const protocol of ['json', 'tnetstring'] as const) {
      await rig.fake.send(buildNotice('fake-notice', ghost, 'disconnect', { protocol }));
      await rig.fake.send(buildNotice('fake-notice', ghost, 'disconnect', { protocol }));
      await rig.fake.send(buildNotice('fake-notice', credited, 'credits', { credits: 500, protocol }));
      await rig.fake.send(buildNotice('fake-notice', other, 'surprise', { protocol }));
    }
    // Frames are handled in order, so once a later request is answered any
    // reply the notices caused would already be queued before it.
    const { response } = await get(rig, 'fake-notice', '/headers');
    assert.equal(response.status, 200);
    for (const id of [ghost, credited, other]) {
      assert.equal(rig.fake.all.filter((r) => r.ids.includes(id)).length, 0, `reply to ${id}`);
    }
  });

  test('a disconnect aborts the request in flight once, with no close frame', async () => {
    const id = freshId();
    const tag = `abort-${id}`;
    await rig.fake.send(rig.fake.httpRequest({ sender: 'fake-gone', connId: id, uri: `/slow?id=${tag}` }));
    // The app registers its close listener on arrival; give it a bounded wait.
    const deadline = Date.now() + 10_000;
    let aborted: { id: string }[] = [];
    let sent = false;
    while (Date.now() < deadline) {
      if (!sent) {
        const { response } = await get(rig, 'fake-gone', '/headers');
        assert.equal(response.status, 200);
        await rig.fake.send(buildNotice('fake-gone', id, 'disconnect'));
        await rig.fake.send(buildNotice('fake-gone', id, 'disconnect'));
        sent = true;
      }
      const { response } = await get(rig, 'fake-gone', '/aborted');
      aborted = (JSON.parse(response.body.toString()) as { aborted: { id: string }[] }).aborted;
      if (aborted.some((a) => a.id === tag)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(aborted.filter((a) => a.id === tag).length, 1);
    assert.equal(rig.fake.all.filter((r) => r.ids.includes(id)).length, 0);
  });

  test('an HTTP request with the method JSON on a normal path is handled as HTTP', async () => {
    // Node's HTTP parser knows no method JSON, so the app never sees it and
    // the client gets Node's 400 and a close: HTTP handling, never a notice.
    for (const protocol of ['json', 'tnetstring'] as const) {
      const id = freshId();
      const from = rig.fake.all.length;
      await rig.fake.send(rig.fake.httpRequest({
        sender: 'fake-json-method', connId: id, method: 'JSON', uri: '/headers',
        body: '{"type":"disconnect"}', protocol,
      }));
      const { responses, closed } = await rig.fake.responses(id, { from, untilClose: true });
      assert.ok([200, 400, 405, 501].includes(responses[0]!.status), String(responses[0]!.status));
      assert.equal(closed, true);
    }
  });

  test('an HTTP/1.0 request gets its response, then a close frame', async () => {
    const id = freshId();
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-http10', connId: id, uri: '/headers', version: 'HTTP/1.0',
    }));
    const { responses, frames, closed } = await rig.fake.responses(id, { from, untilClose: true });
    assert.equal(closed, true);
    assert.equal(responses[0]!.status, 200);
    assert.equal(JSON.parse(responses[0]!.body.toString()).httpVersion, '1.0');
    const last = frames.at(-1)!;
    assert.equal(last.raw.toString('latin1'), `fake-http10 ${id.length}:${id}, `);
    assert.ok(frames.slice(0, -1).every((f) => !f.isClose && f.body.length > 0));
  });

  test('upload.stream: pieces sent only against granted credits are echoed whole', async () => {
    for (const protocol of ['json', 'tnetstring'] as const) {
      const id = freshId();
      const size = 150_000;
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 7 + (i >> 8)) & 0xff;
      const first = 1000;
      const from = rig.fake.all.length;
      await rig.fake.send(rig.fake.httpRequest({
        sender: 'fake-upload', connId: id, method: 'POST', uri: '/echo', protocol,
        headers: { 'content-length': String(size) }, extra: { UPLOAD_STREAM: '0' },
        body: body.subarray(0, first),
      }));
      let granted = 0;
      let offset = first;
      let answer = Buffer.alloc(0);
      let grants = 0;
      for await (const r of rig.fake.replies({ connId: id, from })) {
        if (r.extended) {
          assert.equal(r.ctl?.key, 'ctl');
          const credits = r.ctl?.args['credits'];
          assert.equal(typeof credits, 'number');
          granted += credits as number;
          grants++;
          // Send only what the credits cover, as Mongrel2 does.
          while (offset < size && offset - first < granted) {
            const n = Math.min(8192, size - offset, granted - (offset - first));
            const last = offset + n === size;
            await rig.fake.send(buildUploadPiece('fake-upload', id, '/echo', offset,
              body.subarray(offset, offset + n), last, protocol));
            offset += n;
          }
          continue;
        }
        answer = Buffer.concat([answer, r.body]);
        const end = answer.indexOf('\r\n\r\n');
        const m = /content-length: (\d+)/i.exec(answer.toString('latin1', 0, Math.max(0, end)));
        if (m && answer.length >= end + 4 + Number(m[1])) break;
      }
      assert.equal(offset, size);
      assert.ok(grants >= 2, 'the body needed more than one grant');
      const response = answer.subarray(answer.indexOf('\r\n\r\n') + 4);
      assert.match(answer.toString('latin1', 0, 12), /^HTTP\/1\.1 200/);
      assert.ok(response.equals(body), 'echoed body differs');
      assert.match(answer.toString('latin1'),
        new RegExp(`x-body-sha256: ${createHash('sha256').update(body).digest('hex')}`));
    }
  });

  /** Starts a streamed upload of `size` bytes and waits for its first grant. */
  async function startStream(id: string, size: number): Promise<void> {
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-upload', connId: id, method: 'POST', uri: '/echo',
      headers: { 'content-length': String(size) }, extra: { UPLOAD_STREAM: '0' },
    }));
    for await (const r of rig.fake.replies({ connId: id, from })) if (r.extended) return;
  }

  test('a repeated upload piece is refused with a warning; one for no stream harms nothing', async () => {
    const id = freshId();
    await startStream(id, 10_000);
    const before = warnCount(rig.fleet);
    await rig.fake.send(buildUploadPiece('fake-upload', id, '/echo', 0, Buffer.alloc(100, 1), false));
    // Behind the bytes received: can never fit (a piece ahead would wait).
    await rig.fake.send(buildUploadPiece('fake-upload', id, '/echo', 0, Buffer.alloc(100, 2), false));
    // No unit here holds this stream: it is offered to sibling units.
    await rig.fake.send(buildUploadPiece('fake-upload', freshId(), '/echo', 0, Buffer.alloc(10), true));
    assert.ok(await waitForWarns(rig.fleet, before + 1) >= before + 1);

    const { response } = await get(rig, 'fake-upload', '/headers');
    assert.equal(response.status, 200);
    const state = await Promise.race([rig.fleet.exited.then(() => 'exited'), 'running']);
    assert.equal(state, 'running');
  });

  test('a wrong upload offset ends that request cleanly (no uncaught error, client answered or closed)', async () => {
    const id = freshId();
    await startStream(id, 10_000);
    const from = rig.fake.all.length;
    await rig.fake.send(buildUploadPiece('fake-upload', id, '/echo', 0, Buffer.alloc(100, 1), false));
    await rig.fake.send(buildUploadPiece('fake-upload', id, '/echo', 50, Buffer.alloc(100, 2), false));
    const frames: Reply[] = [];
    for await (const r of rig.fake.replies({ connId: id, from, timeoutMs: 3000 })) {
      frames.push(r);
      if (r.isClose) break;
    }
    assert.ok(frames.at(-1)?.isClose);
    const errors = rig.fleet.logs().filter((r) => Number(r.level) >= 50);
    assert.deepEqual(errors, []);
  });

  test('every reply kept the grammar, echoed its sender, and closed only on purpose', async () => {
    const { response } = await get(rig, 'fake-final', '/headers');
    assert.equal(response.status, 200);
    assert.ok(rig.fake.all.length > 40);
    assertRepliesWellFormed(rig.fake);
  });
});

describe('download credits against a fake Mongrel2', () => {
  let rig: Rig;

  before(async () => { rig = await startRig(); });
  after(async () => { await stopRig(rig); });

  test('a 1 MB download never has more than 102400 bytes unacknowledged', async () => {
    const id = freshId();
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-credits', connId: id, uri: '/download?mb=1',
      extra: { DOWNLOAD_CREDITS: String(CREDITS) },
    }));
    let outstanding = 0;
    let maxOutstanding = 0;
    let data = Buffer.alloc(0);
    let frames = 0;
    for await (const r of rig.fake.replies({ connId: id, from })) {
      assert.equal(r.extended || r.isClose, false);
      assert.ok(r.body.length <= CREDITS, `frame body ${r.body.length}`);
      outstanding += r.body.length;
      maxOutstanding = Math.max(maxOutstanding, outstanding);
      assert.ok(outstanding <= CREDITS, `${outstanding} bytes unacknowledged`);
      data = Buffer.concat([data, r.body]);
      frames++;
      // Mongrel2 wrote the frame: it returns exactly that many bytes.
      await rig.fake.send(buildNotice('fake-credits', id, 'credits', { credits: r.body.length }));
      outstanding -= r.body.length;
      const end = data.indexOf('\r\n\r\n');
      if (end >= 0 && data.length >= end + 4 + 1024 * 1024) break;
    }
    const body = data.subarray(data.indexOf('\r\n\r\n') + 4);
    assert.equal(body.length, 1024 * 1024);
    for (let o = 0; o < body.length; o += 4096) assert.equal(body.readUInt32BE(o), o);
    assert.ok(frames > 10);
  });

  test('with no credits returned the stream stalls at 102400 bytes, then completes', async () => {
    const id = freshId();
    const from = rig.fake.all.length;
    await rig.fake.send(rig.fake.httpRequest({
      sender: 'fake-stall', connId: id, uri: '/chunks?n=200&size=10240',
      extra: { DOWNLOAD_CREDITS: String(CREDITS) },
    }));
    let outstanding = 0;
    let seen = 0;
    for await (const r of rig.fake.replies({ connId: id, from })) {
      assert.ok(r.body.length <= CREDITS);
      outstanding += r.body.length;
      seen++;
      if (outstanding >= CREDITS) break;
    }
    assert.equal(outstanding, CREDITS);

    // Stalled: another connection is still served meanwhile, and nothing
    // more arrives for this one (a bounded look, not a timing assertion).
    const { response } = await get(rig, 'fake-stall', '/headers');
    assert.equal(response.status, 200);
    await new Promise((r) => setTimeout(r, 300));
    const stalled = rig.fake.all.filter((r) => r.ids.includes(id));
    assert.equal(stalled.length, seen);

    // Mongrel2 wrote it all: credits come back and the rest flows.
    await rig.fake.send(buildNotice('fake-stall', id, 'credits', { credits: outstanding }));
    outstanding = 0;
    let data = Buffer.concat(stalled.map((r) => r.body));
    for await (const r of rig.fake.replies({ connId: id, from: stalled.at(-1)!.index + 1 })) {
      assert.ok(r.body.length <= CREDITS);
      outstanding += r.body.length;
      assert.ok(outstanding <= CREDITS, `${outstanding} bytes unacknowledged`);
      data = Buffer.concat([data, r.body]);
      await rig.fake.send(buildNotice('fake-stall', id, 'credits', { credits: r.body.length }));
      outstanding -= r.body.length;
      if (data.subarray(-5).toString('latin1') === '0\r\n\r\n') break;
    }
    assert.match(data.toString('latin1', 0, 12), /^HTTP\/1\.1 200/);

    const report = await get(rig, 'fake-stall', '/aborted');
    const { backPressure } = JSON.parse(report.response.body.toString()) as {
      backPressure: { sawFalse?: boolean; drained?: boolean }[];
    };
    assert.ok(backPressure.some((b) => b.sawFalse === true), JSON.stringify(backPressure));
    assert.ok(backPressure.some((b) => b.drained === true));
  });

  test('every reply kept the grammar and echoed its sender', () => {
    assertRepliesWellFormed(rig.fake);
  });
});

describe('a request larger than --max-message-size', () => {
  let fake: FakeMongrel2;
  let fleet: FleetProcess | undefined;

  before(async () => {
    fake = await FakeMongrel2.start();
    fleet = await startFleet([
      '--zeromq', fake.zeromqArg, '--module', PROBE, '--mercy', '1s', '--max-message-size', '1000',
    ]);
  });
  after(async () => { await stopRig(fleet && { fake, fleet }); await fake.close(); });

  test('is refused with a warning and the next request is still served', async () => {
    const big = fake.httpRequest({
      sender: 'fake-big', connId: freshId(), method: 'POST', uri: '/echo', body: Buffer.alloc(2000, 65),
    });
    await fake.send(big);
    const id = freshId();
    const sent = fake.send(fake.httpRequest({ sender: 'fake-big', connId: id, uri: '/headers' }));
    sent.catch(() => undefined);
    const { responses } = await fake.responses(id, { timeoutMs: 4000 });
    assert.equal(responses[0]!.status, 200);
    assert.ok(fleet!.logs().some((r) => r.level === WARN));
  });
});
