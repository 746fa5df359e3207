// What each framework reports as client address, scheme and host when
// Mongrel2 says the request came over TLS (URL_SCHEME=https) from a given
// REMOTE_ADDR. A real Mongrel2 would need certificates for this; the fake
// one sends exactly the keys Mongrel2 sends on an SSL listener.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeMongrel2 } from '../helpers/fake-mongrel2.ts';
import { REPO_ROOT, startFleet, type FleetProcess } from '../helpers/fleet.ts';

const EXAMPLES = ['express-app.mjs', 'koa-app.mjs', 'fastify-app.mjs', 'hono-app.mjs'];
let nextId = 1;

for (const file of EXAMPLES) {
  describe(`${file} behind an SSL listener`, () => {
    let fake: FakeMongrel2;
    let fleet: FleetProcess;

    before(async () => {
      fake = await FakeMongrel2.start();
      fleet = await startFleet(['--zeromq', fake.zeromqArg,
        '--module', join(REPO_ROOT, 'examples', file), '--mercy', '1s']);
    });
    after(async () => {
      await fleet?.stop();
      await fake?.close();
    });

    for (const protocol of ['json', 'tnetstring'] as const) {
      test(`sees https, the client address and the Host (${protocol})`, async () => {
        const connId = nextId++;
        await fake.send(fake.httpRequest({
          sender: 'fake-ssl', connId, uri: '/info', protocol,
          headers: { host: 'shop.example.test' },
          extra: { URL_SCHEME: 'https', REMOTE_ADDR: '192.0.2.7' },
        }));
        const { responses } = await fake.responses(connId);
        assert.equal(responses[0]!.status, 200);
        const info = JSON.parse(responses[0]!.body.toString());
        assert.equal(info.protocol, 'https');
        assert.equal(info.ip, '192.0.2.7');
        assert.equal(info.host, 'shop.example.test');
        fake.assertClean();
      });
    }
  });
}
