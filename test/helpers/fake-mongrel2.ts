/**
 * A fake Mongrel2 for tests where the real one cannot be made to misbehave.
 * It binds what Mongrel2 binds (a PUSH for requests, a SUB for replies) on
 * 127.0.0.1, sends any bytes it is given, and checks every frame m2fleet
 * publishes against the reply grammar, more strictly than Mongrel2 itself:
 *
 *   SENDER SP LEN ":" ["X" SP] ID *(SP ID) "," SP BODY
 *   SENDER = [A-Za-z0-9-]+     LEN = exact byte count of ["X" SP] IDS
 *   ID     = canonical uint32 decimal, 1 to 128 of them, single spaces
 *   X body = exactly one tnetstring list [string, dict]
 *
 * Stricter than Mongrel2 on purpose: no trailing space in the id list, no
 * leading zeros (m2fleet's encoder never makes them), no floats in a ctl
 * payload (Mongrel2 cannot parse them) and `credits` only as a `#` integer.
 */
import { Push, Subscriber } from 'zeromq';

/** Wire: `limits.handler_targets`, Mongrel2's cap on ids per reply. */
export const MAX_TARGETS = 128;

/** A strict tnetstring value; strings stay bytes. */
export type TnetParsed =
  | Buffer | number | boolean | null | TnetParsed[] | { [key: string]: TnetParsed };

/** One frame m2fleet published, checked and split. */
export interface Reply {
  /** Arrival order, from 0. */
  index: number;
  raw: Buffer;
  sender: string;
  ids: string[];
  /** An `X` (extended, ctl) reply. */
  extended: boolean;
  /** The bytes after `, ` (the tnetstring for an extended reply). */
  body: Buffer;
  /** For an extended reply: the list's key and its args dict. */
  ctl: { key: string; args: { [key: string]: TnetParsed } } | null;
  /** A plain reply with an empty body: "close these connections". */
  isClose: boolean;
}

/** Header values as Mongrel2 sends them: a string or a list of strings. */
export type FakeHeaders = Record<string, string | readonly string[]>;

/** The parts of one request message; `fake.request` builds the bytes. */
export interface RequestParts {
  sender: string;
  connId: number | string;
  /** The envelope path (`@*` for notices). */
  path: string;
  headers: FakeHeaders;
  body?: Buffer | string;
  /** Header encoding; default 'json'. */
  protocol?: 'json' | 'tnetstring';
}

/** A conventional HTTP request, filled in the way Mongrel2 fills it. */
export interface HttpRequestParts {
  sender: string;
  connId: number | string;
  method?: string;
  /** Path plus optional `?query`; default '/'. */
  uri?: string;
  version?: string;
  /** Client headers, lowercase; `host` defaults to 'localhost'. */
  headers?: FakeHeaders;
  /** Mongrel2's own uppercase extras (DOWNLOAD_CREDITS, UPLOAD_STREAM, ...). */
  extra?: Record<string, string>;
  body?: Buffer | string;
  protocol?: 'json' | 'tnetstring';
}

/** A parsed HTTP/1.x response read from reply bodies. */
export interface FakeHttpResponse {
  version: string;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Bytes of head + framed body. */
  length: number;
}

const SENDER = /^[A-Za-z0-9-]+$/;
const CANONICAL_ID = /^(0|[1-9][0-9]{0,9})$/;

// ------------------------------------------------------------- reply grammar

/** A frame that breaks the reply grammar. */
export class GrammarViolation extends Error {
  readonly frame: Buffer;
  constructor(reason: string, frame: Buffer) {
    const shown = JSON.stringify(frame.subarray(0, 80).toString('latin1'));
    super(`reply grammar: ${reason}; frame (${frame.length} bytes) ${shown}`);
    this.frame = frame;
  }
}

/**
 * Parses `buf[pos..end)` as one strict tnetstring.
 * @throws Error with the reason on any deviation.
 */
export function parseTnetStrict(
  buf: Buffer, pos = 0, end = buf.length, depth = 0,
): { value: TnetParsed; next: number } {
  if (depth > 16) throw new Error('tnetstring nested deeper than 16');
  const colon = buf.indexOf(0x3a, pos);
  if (colon < 0 || colon >= end) throw new Error('tnetstring without ":"');
  const sizeText = buf.toString('latin1', pos, colon);
  if (!/^(0|[1-9][0-9]{0,8})$/.test(sizeText)) {
    throw new Error(`tnetstring SIZE ${JSON.stringify(sizeText)} is not canonical 1-9 digits`);
  }
  const size = Number(sizeText);
  const start = colon + 1;
  if (start + size >= end) throw new Error(`tnetstring SIZE ${size} passes the end`);
  const data = buf.subarray(start, start + size);
  const tag = String.fromCharCode(buf[start + size]!);
  const next = start + size + 1;
  const text = data.toString('latin1');
  switch (tag) {
    case ',':
      return { value: Buffer.from(data), next };
    case '#':
      if (!/^-?[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
        throw new Error(`tnetstring integer ${JSON.stringify(text)} is malformed`);
      }
      return { value: Number(text), next };
    case '!':
      if (text !== 'true' && text !== 'false') throw new Error(`bad boolean ${text}`);
      return { value: text === 'true', next };
    case '~':
      if (size !== 0) throw new Error('null with a non-zero SIZE');
      return { value: null, next };
    case ']': {
      const items: TnetParsed[] = [];
      for (let p = start; p < start + size;) {
        const item = parseTnetStrict(buf, p, start + size, depth + 1);
        items.push(item.value);
        p = item.next;
      }
      return { value: items, next };
    }
    case '}': {
      const dict: { [key: string]: TnetParsed } = {};
      for (let p = start; p < start + size;) {
        const key = parseTnetStrict(buf, p, start + size, depth + 1);
        if (!Buffer.isBuffer(key.value)) throw new Error('dict key is not a string');
        if (key.next >= start + size) throw new Error('dict key without a value');
        const value = parseTnetStrict(buf, key.next, start + size, depth + 1);
        dict[key.value.toString('latin1')] = value.value;
        p = value.next;
      }
      return { value: dict, next };
    }
    default:
      // `^` included: Mongrel2 cannot parse floats.
      throw new Error(`tnetstring tag ${JSON.stringify(tag)} is not allowed`);
  }
}

function checkCtl(raw: Buffer, body: Buffer): Reply['ctl'] {
  let parsed: { value: TnetParsed; next: number };
  try {
    parsed = parseTnetStrict(body);
  } catch (err) {
    throw new GrammarViolation(`X body: ${(err as Error).message}`, raw);
  }
  if (parsed.next !== body.length) {
    throw new GrammarViolation(`${body.length - parsed.next} bytes after the X tnetstring`, raw);
  }
  const list = parsed.value;
  if (!Array.isArray(list) || list.length !== 2 || !Buffer.isBuffer(list[0])) {
    throw new GrammarViolation('X body is not a list [string, dict]', raw);
  }
  const args = list[1];
  if (typeof args !== 'object' || args === null || Array.isArray(args) || Buffer.isBuffer(args)) {
    throw new GrammarViolation('X args are not a dict', raw);
  }
  const key = list[0].toString('latin1');
  const credits = args['credits'];
  if (key === 'ctl' && credits !== undefined && (typeof credits !== 'number' || credits < 0)) {
    throw new GrammarViolation('ctl credits is not a non-negative # integer', raw);
  }
  return { key, args };
}

/**
 * Checks one published frame against the reply grammar (see the file
 * comment) and splits it.
 * @throws GrammarViolation naming the first rule broken.
 */
export function parseReplyStrict(raw: Buffer, index = 0): Reply {
  const sp = raw.indexOf(0x20);
  if (sp <= 0) throw new GrammarViolation('no sender before the first space', raw);
  const sender = raw.toString('latin1', 0, sp);
  if (!SENDER.test(sender)) throw new GrammarViolation('sender is not [A-Za-z0-9-]+', raw);

  const colon = raw.indexOf(0x3a, sp + 1);
  if (colon < 0) throw new GrammarViolation('no ":" after LEN', raw);
  const lenText = raw.toString('latin1', sp + 1, colon);
  if (!/^[1-9][0-9]{0,5}$/.test(lenText)) {
    throw new GrammarViolation(`LEN ${JSON.stringify(lenText)} is not canonical digits`, raw);
  }
  const listEnd = colon + 1 + Number(lenText);
  if (listEnd + 2 > raw.length) throw new GrammarViolation('LEN passes the end', raw);
  if (raw[listEnd] !== 0x2c || raw[listEnd + 1] !== 0x20) {
    throw new GrammarViolation('LEN is not followed by exactly ", "', raw);
  }

  let list = raw.toString('latin1', colon + 1, listEnd);
  const extended = list.startsWith('X ');
  if (extended) list = list.slice(2);
  const ids = list.split(' ');
  for (const id of ids) {
    if (!CANONICAL_ID.test(id) || Number(id) > 0xffff_ffff) {
      throw new GrammarViolation(`id ${JSON.stringify(id)} is not a canonical uint32`, raw);
    }
  }
  if (ids.length > MAX_TARGETS) throw new GrammarViolation(`${ids.length} ids`, raw);

  const body = raw.subarray(listEnd + 2);
  const ctl = extended ? checkCtl(raw, body) : null;
  return { index, raw, sender, ids, extended, body, ctl, isClose: !extended && body.length === 0 };
}

// --------------------------------------------------------- request builders

function toBuffer(b: Buffer | string | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b, 'latin1');
}

function netstring(payload: Buffer, tag: string): Buffer {
  return Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from(tag)]);
}

function tnetDictPayload(headers: FakeHeaders): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(headers)) {
    parts.push(netstring(Buffer.from(key, 'latin1'), ','));
    if (typeof value === 'string') {
      parts.push(netstring(Buffer.from(value, 'latin1'), ','));
    } else {
      const items = value.map((v) => netstring(Buffer.from(v, 'latin1'), ','));
      parts.push(netstring(Buffer.concat(items), ']'));
    }
  }
  return Buffer.concat(parts);
}

/**
 * Builds the bytes of one Mongrel2 request message:
 * `SENDER SP ID SP PATH SP LEN:HEADERS(,|}) LEN:BODY,`.
 */
export function buildRequest(parts: RequestParts): Buffer {
  const head = Buffer.from(`${parts.sender} ${parts.connId} ${parts.path} `, 'latin1');
  const headers = (parts.protocol ?? 'json') === 'json'
    ? netstring(Buffer.from(JSON.stringify(parts.headers), 'latin1'), ',')
    : netstring(tnetDictPayload(parts.headers), '}');
  return Buffer.concat([head, headers, netstring(toBuffer(parts.body), ',')]);
}

/** Builds an HTTP request message with the keys Mongrel2 adds. */
export function buildHttpRequest(parts: HttpRequestParts): Buffer {
  const uri = parts.uri ?? '/';
  const q = uri.indexOf('?');
  const path = q < 0 ? uri : uri.slice(0, q);
  const body = toBuffer(parts.body);
  const headers: FakeHeaders = {
    PATH: path,
    host: 'localhost',
    'x-forwarded-for': '127.0.0.1',
    ...(body.length > 0 ? { 'content-length': String(body.length) } : {}),
    ...parts.headers,
    METHOD: parts.method ?? 'GET',
    VERSION: parts.version ?? 'HTTP/1.1',
    URI: uri,
    ...(q < 0 ? {} : { QUERY: uri.slice(q + 1) }),
    PATTERN: '/',
    URL_SCHEME: 'http',
    REMOTE_ADDR: '127.0.0.1',
    ...parts.extra,
  };
  return buildRequest({
    sender: parts.sender, connId: parts.connId, path, headers, body, protocol: parts.protocol,
  });
}

/** A `@*` notice: `{"type":"disconnect"}` or `{"type":"credits"}` (+ bytes). */
export function buildNotice(
  sender: string, connId: number | string, type: string,
  options: { credits?: number; protocol?: 'json' | 'tnetstring' } = {},
): Buffer {
  const headers: FakeHeaders = { METHOD: 'JSON' };
  if (options.credits !== undefined) headers['DOWNLOAD_CREDITS'] = String(options.credits);
  return buildRequest({
    sender, connId, path: '@*', headers, body: JSON.stringify({ type }),
    protocol: options.protocol,
  });
}

/** An `upload.stream` follow-up piece: only UPLOAD_STREAM (+ _DONE). */
export function buildUploadPiece(
  sender: string, connId: number | string, path: string, offset: number,
  piece: Buffer, last: boolean, protocol: 'json' | 'tnetstring' = 'json',
): Buffer {
  const headers: FakeHeaders = { UPLOAD_STREAM: String(offset) };
  if (last) headers['UPLOAD_STREAM_DONE'] = '1';
  return buildRequest({ sender, connId, path, headers, body: piece, protocol });
}

// ---------------------------------------------------------- HTTP responses

function readChunked(buf: Buffer, at: number): { body: Buffer; end: number } | null {
  const pieces: Buffer[] = [];
  let pos = at;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return null;
    const size = parseInt(buf.toString('latin1', pos, eol).split(';')[0]!, 16);
    if (!Number.isFinite(size)) throw new Error('bad chunk size line');
    if (size === 0) {
      const end = buf.indexOf('\r\n\r\n', eol);
      const endAt = buf.indexOf('\r\n', eol + 2) === eol + 2 ? eol + 4 : end < 0 ? -1 : end + 4;
      return endAt < 0 ? null : { body: Buffer.concat(pieces), end: endAt };
    }
    if (eol + 2 + size + 2 > buf.length) return null;
    pieces.push(buf.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  throw new Error('too many chunks');
}

/**
 * Parses one complete HTTP/1.x response at the start of `buf`, or returns
 * null while it is incomplete. A response without Content-Length or chunked
 * framing is complete only when `closed` (read until close).
 */
export function parseHttpResponse(buf: Buffer, closed = false): FakeHttpResponse | null {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const lines = buf.toString('latin1', 0, headEnd).split('\r\n');
  const m = /^(HTTP\/1\.[01]) (\d{3})/.exec(lines[0]!);
  if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':');
    const name = line.slice(0, c).toLowerCase();
    const value = line.slice(c + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const start = headEnd + 4;
  const status = Number(m[2]);
  if (status === 204 || status === 304) {
    return { version: m[1]!, status, headers, body: Buffer.alloc(0), length: start };
  }
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const framed = readChunked(buf, start);
    return framed && { version: m[1]!, status, headers, body: framed.body, length: framed.end };
  }
  if (headers['content-length'] !== undefined) {
    const end = start + Number(headers['content-length']);
    if (buf.length < end) return null;
    return { version: m[1]!, status, headers, body: buf.subarray(start, end), length: end };
  }
  if (!closed) return null;
  return { version: m[1]!, status, headers, body: buf.subarray(start), length: buf.length };
}

// ---------------------------------------------------------------- the fake

/** Options of {@link FakeMongrel2.replies}. */
export interface RepliesOptions {
  /** Only replies that target this connection id. */
  connId?: number | string;
  /** Start at this reply index (default 0: every reply so far, then new ones). */
  from?: number;
  /** Throw when no next reply arrives within this long (default 10000 ms). */
  timeoutMs?: number;
}

/** The PUSH/SUB pair, the send queue and the reply log. */
export class FakeMongrel2 {
  /** Where m2fleet connects its PULL (Mongrel2's send_spec). */
  readonly sendSpec: string;
  /** Where m2fleet connects its PUB (Mongrel2's recv_spec). */
  readonly recvSpec: string;
  /** Every frame published so far that passed the grammar. */
  readonly all: Reply[] = [];
  /** Frames that broke the grammar. */
  readonly violations: GrammarViolation[] = [];
  /** connId → the sender of the last request message sent for it. */
  readonly senders = new Map<string, string>();
  readonly #push: Push;
  readonly #sub: Subscriber;
  #queue: Promise<void> = Promise.resolve();
  #listeners = new Set<() => void>();
  #loop: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(push: Push, sub: Subscriber) {
    this.#push = push;
    this.#sub = sub;
    this.sendSpec = push.lastEndpoint!;
    this.recvSpec = sub.lastEndpoint!;
  }

  /** Binds both sockets on free 127.0.0.1 ports and starts collecting. */
  static async start(): Promise<FakeMongrel2> {
    const push = new Push({ linger: 0, sendTimeout: 10_000 });
    const sub = new Subscriber({ linger: 0 });
    try {
      await push.bind('tcp://127.0.0.1:*');
      sub.subscribe();
      await sub.bind('tcp://127.0.0.1:*');
    } catch (err) {
      push.close();
      sub.close();
      throw err;
    }
    const fake = new FakeMongrel2(push, sub);
    fake.#loop = fake.#collect();
    return fake;
  }

  /** The `--zeromq` argument for m2fleet. */
  get zeromqArg(): string {
    return `${this.sendSpec},${this.recvSpec}`;
  }

  /**
   * Queues one single-part message; sends go out one at a time, in order.
   * Resolves once ZeroMQ took it (rejects after 10 s without a peer).
   */
  send(frame: Buffer): Promise<void> {
    return this.sendParts([frame]);
  }

  /** Queues one message of several parts (Mongrel2 never sends these). */
  sendParts(parts: Buffer[]): Promise<void> {
    this.#remember(parts);
    const next = this.#queue.then(() => this.#push.send(parts.length === 1 ? parts[0]! : parts));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Builds a request message (see {@link buildRequest}). */
  request(parts: RequestParts): Buffer {
    return buildRequest(parts);
  }

  /** Builds an HTTP request message (see {@link buildHttpRequest}). */
  httpRequest(parts: HttpRequestParts): Buffer {
    return buildHttpRequest(parts);
  }

  /**
   * Yields every checked reply (past and future, in order) matching the
   * options. Throws on the first grammar violation and when the next reply
   * takes longer than `timeoutMs`.
   */
  async *replies(options: RepliesOptions = {}): AsyncGenerator<Reply> {
    const want = options.connId === undefined ? undefined : String(options.connId);
    const timeoutMs = options.timeoutMs ?? 10_000;
    let i = options.from ?? 0;
    for (;;) {
      this.assertClean();
      if (i < this.all.length) {
        const r = this.all[i++]!;
        if (want === undefined || r.ids.includes(want)) yield r;
        continue;
      }
      if (this.#closed) return;
      if (!(await this.#changed(timeoutMs))) {
        throw new Error(`no reply${want ? ` for conn ${want}` : ''} within ${timeoutMs} ms`);
      }
    }
  }

  /**
   * Reads the HTTP response(s) sent to `connId` from reply index `from`:
   * resolves once `count` complete responses arrived (and, with
   * `untilClose`, the close frame). Returns the responses and the frames.
   */
  async responses(
    connId: number | string,
    options: { count?: number; untilClose?: boolean; from?: number; timeoutMs?: number } = {},
  ): Promise<{ responses: FakeHttpResponse[]; frames: Reply[]; closed: boolean }> {
    const count = options.count ?? 1;
    const frames: Reply[] = [];
    const responses: FakeHttpResponse[] = [];
    let pending = Buffer.alloc(0);
    let closed = false;
    const opts = { connId, from: options.from, timeoutMs: options.timeoutMs };
    for await (const r of this.replies(opts)) {
      frames.push(r);
      if (r.extended) continue;
      if (r.isClose) closed = true;
      else pending = Buffer.concat([pending, r.body]);
      for (let parsed; (parsed = parseHttpResponse(pending, closed)) !== null;) {
        responses.push(parsed);
        pending = pending.subarray(parsed.length);
        if (pending.length === 0) break;
      }
      if (responses.length >= count && (!options.untilClose || closed)) break;
      if (closed) throw new Error(`conn ${connId} closed after ${responses.length} responses`);
    }
    return { responses, frames, closed };
  }

  /** Throws the first grammar violation seen, if any. */
  assertClean(): void {
    if (this.violations.length > 0) throw this.violations[0]!;
  }

  /**
   * Checks rule "echo the request's sender": every reply targets ids this
   * fake sent requests for, with the sender of those requests. Returns the
   * problems found (empty when all is well).
   */
  senderMismatches(): string[] {
    const out: string[] = [];
    for (const r of this.all) {
      for (const id of r.ids) {
        const sent = this.senders.get(id);
        if (sent !== r.sender) {
          out.push(`reply #${r.index} to ${id} has sender ${r.sender}, request had ${sent}`);
        }
      }
    }
    return out;
  }

  /** Stops collecting and closes both sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#push.close();
    this.#sub.close();
    await this.#loop;
    this.#wake();
  }

  // Notes (connId → sender) for well-formed-looking envelopes only.
  #remember(parts: Buffer[]): void {
    if (parts.length !== 1) return;
    const m = /^([A-Za-z0-9-]+) ([0-9]+) /.exec(parts[0]!.toString('latin1', 0, 200));
    if (m) this.senders.set(m[2]!, m[1]!);
  }

  async #collect(): Promise<void> {
    for (;;) {
      let parts: Buffer[];
      try {
        parts = await this.#sub.receive();
      } catch {
        return;
      }
      const frame = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      try {
        if (parts.length !== 1) throw new GrammarViolation(`${parts.length}-part message`, frame);
        this.all.push(parseReplyStrict(frame, this.all.length));
      } catch (err) {
        this.violations.push(err instanceof GrammarViolation
          ? err : new GrammarViolation(String(err), frame));
      }
      this.#wake();
    }
  }

  #wake(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  #changed(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve(ok);
      };
      const listener = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#listeners.add(listener);
    });
  }
}
