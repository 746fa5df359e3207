// The master's inbox with real ZeroMQ sockets: a PUSH playing Mongrel2, the
// inbox reading it, and a PULL playing the unit. When the unit stops
// reading, the inbox's queue to it fills (its PUSH answers EAGAIN at once)
// and then waits for room: nothing is lost, a connection's messages keep
// their order, and the drain marker comes last.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Pull, Push } from 'zeromq';
import { DRAIN_MARKER } from '../../src/handler/endpoint.ts';
import { createLogger } from '../../src/node/log.ts';
import { Inbox } from '../../src/node/inbox.ts';
import { freePort } from '../helpers/ports.ts';

const lines: string[] = [];
const log = createLogger({ level: 'warn', sink: (line) => lines.push(line) });
const sockets: { close(): void; closed: boolean }[] = [];
after(() => {
  for (const s of sockets) if (!s.closed) s.close();
});

function message(conn: number, seq: number): Buffer {
  const headers = JSON.stringify({ METHOD: 'GET', seq: String(seq) });
  return Buffer.from(`m2-sender ${conn} / ${headers.length}:${headers},0:,`);
}

test('a unit that stops reading loses nothing and gets its connections in order', async () => {
  const sendSpec = `tcp://127.0.0.1:${await freePort()}`;
  const mongrel2 = new Push({ sendHighWaterMark: 10_000, linger: 0 });
  sockets.push(mongrel2);
  await mongrel2.bind(sendSpec);
  const inbox = new Inbox(log);
  try {
    const [[address]] = inbox.open(0, 1, 1, [sendSpec]) as [[string]];
    const unit = new Pull({ receiveHighWaterMark: 16, linger: 0 });
    sockets.push(unit);
    await unit.bind(address);
    inbox.activate(0, 1, 1, [sendSpec]);

    const CONNS = 5;
    const PER_CONN = 80;
    for (let seq = 0; seq < PER_CONN; seq++) {
      for (let conn = 1; conn <= CONNS; conn++) await mongrel2.send(message(conn, seq));
    }
    // The unit is busy: far more than every queue on the way can hold waits.
    await new Promise((r) => setTimeout(r, 500));

    const next = new Map<number, number>();
    let got = 0;
    const reading = (async () => {
      for (;;) {
        const [frame] = await unit.receive();
        if (frame!.equals(DRAIN_MARKER)) return;
        const text = frame!.toString('latin1');
        const conn = Number(text.split(' ')[1]);
        const seq = Number(/"seq":"(\d+)"/.exec(text)![1]);
        assert.equal(seq, next.get(conn) ?? 0, `connection ${conn} in order`);
        next.set(conn, seq + 1);
        got++;
      }
    })();
    const deadline = Date.now() + 15_000;
    while (got < CONNS * PER_CONN && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(got, CONNS * PER_CONN, 'every message reached the unit');
    await inbox.drain();
    await reading;
    // A full queue is waited out, not treated as a failed send.
    assert.deepEqual(lines.filter((l) => l.includes('forward failed')), []);
  } finally {
    inbox.close();
  }
});
