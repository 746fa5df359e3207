/**
 * Serves one uwsgi connection (nginx `uwsgi_pass`): one request packet,
 * its body, then the app's response as raw HTTP, ended by closing.
 */
import type { Socket } from 'node:net';
import { plainResponse } from './canned-responses.js';
import {
  GatewayExchange, GatewayRefusal, RequestTimers, requestFromVars, type GatewayContext,
} from './gateway.js';
import { parseUwsgiPacket, UWSGI_REQUEST, UwsgiError } from './uwsgi-codec.js';

/**
 * Takes over an accepted connection until it closes. Returns whether no
 * request has started on it yet (a draining unit closes those).
 */
export function serveUwsgi(tcp: Socket, ctx: GatewayContext): () => boolean {
  const { limits } = ctx;
  let pending: Buffer = Buffer.alloc(0);
  let exchange: GatewayExchange | null = null;
  const timers = new RequestTimers(limits);

  const refuse = (status: number, reason: string): void => {
    ctx.refused('uwsgi', reason);
    ctx.log.warn({ via: 'uwsgi', remote: tcp.remoteAddress, status, reason }, 'uwsgi request refused');
    tcp.removeListener('data', onData);
    if (!tcp.destroyed) tcp.end(plainResponse(status));
    timers.clear();
  };

  // A request must arrive whole within the request timeout and its packet
  // within the header timeout; a stalled body is cut by the idle timer.
  timers.startHead(() => refuse(408, 'request head too slow'));
  timers.startRequest(() => {
    if (exchange?.bodyDone) return;
    if (exchange?.headSent) tcp.destroy();
    else {
      exchange?.abort();
      refuse(408, 'request body too slow');
    }
  });
  tcp.setTimeout(limits.idleTimeoutMs, () => {
    // Only a client that stopped sending is cut; an app at work is not.
    if (exchange === null || !exchange.bodyDone) {
      exchange?.abort();
      if (exchange === null) refuse(408, 'idle connection');
      else tcp.destroy();
    }
  });

  function onData(chunk: Buffer): void {
    if (exchange) {
      if (!exchange.feedBody(chunk)) exchange.holdBack(tcp);
      return;
    }
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    let packet;
    try {
      packet = parseUwsgiPacket(pending, limits.maxHeaderSize);
    } catch (err) {
      if (!(err instanceof UwsgiError)) throw err;
      refuse(err.reason.includes('exceed') ? 431 : 400, err.reason);
      return;
    }
    if (packet === null) return;
    timers.headArrived();
    if (packet.modifier1 !== UWSGI_REQUEST) {
      refuse(501, `modifier1 ${packet.modifier1} is not served`);
      return;
    }
    let request;
    try {
      request = requestFromVars(packet.vars, limits, ctx.defaultHost, false);
    } catch (err) {
      if (!(err instanceof GatewayRefusal)) throw err;
      refuse(err.status, err.reason);
      return;
    }
    const rest = pending.subarray(packet.size);
    pending = Buffer.alloc(0);
    exchange = new GatewayExchange(ctx.server, request, 'uwsgi', tcp, {
      head: (status, reason, lines) => {
        tcp.write(`HTTP/1.1 ${status} ${reason}\r\n${lines}\r\n`, 'latin1');
      },
      body: (bytes) => {
        tcp.write(bytes);
      },
      end: (complete) => {
        timers.clear();
        // A response cut short must not look whole to nginx.
        if (complete) tcp.end();
        else tcp.destroy();
      },
    }, ctx.log);
        if (rest.length > 0) onData(rest);
  }

  tcp.on('data', onData);
  tcp.on('error', (err) => ctx.log.debug({ via: 'uwsgi', err: err.message }, 'connection error'));
  tcp.on('close', () => {
    timers.clear();
    exchange?.abort();
  });
  // nginx may half-close after the request; the answer still goes.
  tcp.on('end', () => {
    if (exchange === null) tcp.end();
  });
  return () => exchange === null && pending.length === 0;
}
