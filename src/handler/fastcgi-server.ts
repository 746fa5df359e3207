/**
 * Serves one FastCGI connection (nginx `fastcgi_pass`) as a Responder: one
 * request at a time (FCGI_MPXS_CONNS is 0), several in turn when the web
 * server keeps the connection. The response goes out as CGI: a `Status:`
 * line, the headers and the body in stdout records, then END_REQUEST.
 */
import type { Socket } from 'node:net';
import { reasonOf, refusalText } from './canned-responses.js';
import {
  decodePairs, encodeEndRequest, encodePairs, encodeRecords, FastCgiError, FCGI,
  FCGI_RESPONDER, FCGI_STATUS, FcgiReader, parseBeginRequest, type FcgiRecord,
} from './fastcgi-codec.js';
import {
  GatewayExchange, GatewayRefusal, RequestTimers, requestFromVars, type GatewayContext,
} from './gateway.js';

/** What m2fleet answers to FCGI_GET_VALUES. */
const VALUES: Record<string, string> = {
  FCGI_MAX_CONNS: '1024', FCGI_MAX_REQS: '1024', FCGI_MPXS_CONNS: '0',
};

interface Current {
  id: number;
  keepConn: boolean;
  params: Buffer[];
  paramBytes: number;
  exchange: GatewayExchange | null;
  /** Body bytes received (for a body of unknown length). */
  received: number;
  /** Stdin records after the response ended are read and dropped. */
  finished: boolean;
}

/**
 * Takes over an accepted connection until it closes. Returns whether the
 * connection is between requests (a draining unit closes those).
 */
export function serveFastCgi(tcp: Socket, ctx: GatewayContext): () => boolean {
  const { limits } = ctx;
  const reader = new FcgiReader();
  let current: Current | null = null;
  // Requests refused with CANT_MPX_CONN: their remaining records are dropped.
  const refusedIds = new Set<number>();
  const timers = new RequestTimers(limits);

  // Broken framing: nothing more on this connection can be trusted.
  const fail = (reason: string): void => {
    ctx.refused('fastcgi', reason);
    ctx.log.warn({ via: 'fastcgi', remote: tcp.remoteAddress, reason }, 'fastcgi connection closed');
    timers.clear();
    current?.exchange?.abort();
    tcp.destroy();
  };

  const endRequest = (c: Current, protocolStatus: number = FCGI_STATUS.REQUEST_COMPLETE): void => {
    c.finished = true;
    timers.clear();
    if (tcp.destroyed) return;
    // Body records the app left unread are still read (and dropped).
    tcp.resume();
    tcp.write(encodeEndRequest(c.id, 0, protocolStatus));
    // A kept connection now waits for the next BEGIN_REQUEST; the idle
    // timer closes it if none comes.
    if (!c.keepConn || ctx.draining()) tcp.end();
  };

  // A refusal is an ordinary CGI response, so nginx shows it to the client.
  const refuse = (c: Current, status: number, reason: string): void => {
    ctx.refused('fastcgi', reason);
    ctx.log.warn({ via: 'fastcgi', remote: tcp.remoteAddress, status, reason }, 'fastcgi request refused');
    const text = refusalText(status);
    const head = `Status: ${status} ${reasonOf(status)}\r\nContent-Type: text/plain\r\n`
      + `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n`;
    tcp.write(encodeRecords(FCGI.STDOUT, c.id, Buffer.from(head + text, 'latin1')));
    tcp.write(encodeRecords(FCGI.STDOUT, c.id));
    endRequest(c);
  };

  function startHeaderTimer(): void {
    timers.startHead(() => {
      if (current && !current.finished && current.exchange === null) refuse(current, 408, 'request head too slow');
      else if (!current || current.finished) tcp.end();
    });
  }

  const begin = (c: Current): void => {
    let request;
    try {
      request = requestFromVars(decodePairs(Buffer.concat(c.params)), limits, ctx.defaultHost, true);
    } catch (err) {
      if (err instanceof FastCgiError) return fail(err.reason);
      if (!(err instanceof GatewayRefusal)) throw err;
      return refuse(c, err.status, err.reason);
    }
    c.params = [];
    timers.headArrived();
    timers.startRequest(() => {
      if (!c.exchange || c.exchange.bodyDone || c.finished) return;
      if (c.exchange.headSent) tcp.destroy();
      else {
        c.exchange.abort();
        refuse(c, 408, 'request body too slow');
      }
    });
    c.exchange = new GatewayExchange(ctx.server, request, 'fastcgi', tcp, {
      head: (status, reason, lines) => {
        const text = `Status: ${status} ${reason}\r\n${lines}\r\n`;
        tcp.write(encodeRecords(FCGI.STDOUT, c.id, Buffer.from(text, 'latin1')));
      },
      body: (bytes) => {
        tcp.write(encodeRecords(FCGI.STDOUT, c.id, bytes));
      },
      end: (complete) => {
        if (!complete) {
          // nginx takes a stream without END_REQUEST as a failed upstream.
          tcp.destroy();
          return;
        }
        tcp.write(encodeRecords(FCGI.STDOUT, c.id));
        endRequest(c);
      },
    }, ctx.log);
  };

  const onStdin = (c: Current, content: Buffer): void => {
    const ex = c.exchange;
    if (c.finished) return;
    if (!ex) return fail('STDIN before the parameters ended');
    if (content.length === 0) {
      if (!ex.endBody()) {
        // The declared CONTENT_LENGTH never arrived: the app would wait.
        const answered = ex.headSent;
        ex.abort();
        if (answered) tcp.destroy();
        else refuse(c, 400, 'body shorter than CONTENT_LENGTH');
      }
      return;
    }
    c.received += content.length;
    if (limits.maxBody > 0 && c.received > limits.maxBody) {
      const answered = ex.headSent;
      ex.abort();
      if (answered) tcp.destroy();
      else refuse(c, 413, 'body over the limit');
      return;
    }
    if (!ex.feedBody(content)) ex.holdBack(tcp);
  };

  const onManagement = (rec: FcgiRecord): void => {
    if (rec.type === FCGI.GET_VALUES) {
      const asked = decodePairs(rec.content).map(([name]) => name).filter((n) => n in VALUES);
      tcp.write(encodeRecords(FCGI.GET_VALUES_RESULT, 0,
        encodePairs(asked.map((name) => [name, VALUES[name]!] as const))));
      return;
    }
    const body = Buffer.alloc(8);
    body[0] = rec.type;
    tcp.write(encodeRecords(FCGI.UNKNOWN_TYPE, 0, body));
  };

  const onRecord = (rec: FcgiRecord): void => {
    if (rec.requestId === 0) return onManagement(rec);
    if (refusedIds.has(rec.requestId) && rec.type !== FCGI.BEGIN_REQUEST) return;
    const c = current;
    switch (rec.type) {
      case FCGI.BEGIN_REQUEST: {
        const { role, keepConn } = parseBeginRequest(rec.content);
        if (c && !c.finished) {
          if (refusedIds.size >= 64) return fail('too many requests at once');
          refusedIds.add(rec.requestId);
          tcp.write(encodeEndRequest(rec.requestId, 0, FCGI_STATUS.CANT_MPX_CONN));
          return;
        }
        refusedIds.delete(rec.requestId);
        current = {
          id: rec.requestId, keepConn, params: [], paramBytes: 0, exchange: null,
          received: 0, finished: false,
        };
        startHeaderTimer();
        if (role !== FCGI_RESPONDER) {
          current.finished = true;
          tcp.write(encodeEndRequest(rec.requestId, 0, FCGI_STATUS.UNKNOWN_ROLE));
          if (!keepConn) tcp.end();
        }
        return;
      }
      case FCGI.ABORT_REQUEST:
        if (c && c.id === rec.requestId && !c.finished) {
          c.exchange?.abort();
          endRequest(c);
        }
        return;
      case FCGI.PARAMS:
        if (!c || c.id !== rec.requestId) return fail('PARAMS for no request');
        if (c.finished) return;
        if (c.exchange) return fail('PARAMS after the parameters ended');
        if (rec.content.length === 0) return begin(c);
        c.paramBytes += rec.content.length;
        if (c.paramBytes > limits.maxHeaderSize) {
          refuse(c, 431, 'parameters over the limit');
          return;
        }
        c.params.push(rec.content);
        return;
      case FCGI.STDIN:
        if (!c || c.id !== rec.requestId) return fail('STDIN for no request');
        return onStdin(c, rec.content);
      default:
        // DATA (Filter role only) and anything else for a request: ignored.
        return;
    }
  };

  startHeaderTimer();
  tcp.setTimeout(limits.idleTimeoutMs, () => {
    const ex = current?.exchange;
    // The app at work is never cut; a web server that stopped sending is.
    if (ex && !current!.finished && ex.bodyDone) return;
    ex?.abort();
    tcp.destroy();
  });
  tcp.on('data', (chunk: Buffer) => {
    let records: FcgiRecord[];
    try {
      records = reader.push(chunk);
      for (const rec of records) {
        if (tcp.destroyed) return;
        onRecord(rec);
      }
    } catch (err) {
      if (err instanceof FastCgiError) fail(err.reason);
      else throw err;
    }
    // A peer that sends records (management ones, say) without reading our
    // answers is not read from until they drain: memory stays bounded.
    if (tcp.writableNeedDrain && !tcp.destroyed) {
      tcp.pause();
      tcp.once('drain', () => tcp.resume());
    }
  });
  // The web server may half-close after the request; the answer still goes.
  tcp.on('end', () => {
    if (!current || current.finished) tcp.end();
  });
  tcp.on('error', (err) => ctx.log.debug({ via: 'fastcgi', err: err.message }, 'connection error'));
  tcp.on('close', () => {
    timers.clear();
    if (current && !current.finished) current.exchange?.abort();
  });
  return () => current === null || current.finished;
}
