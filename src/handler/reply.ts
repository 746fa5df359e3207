/**
 * Encoders for the frames a handler PUBlishes back to Mongrel2:
 *
 *   SENDER SP LEN ":" IDS "," SP BODY          plain reply (empty BODY = close)
 *   SENDER SP LEN ":" "X" SP IDS "," SP TNET   extended (ctl) reply
 *   where IDS = ID *(SP ID) and LEN counts exactly the bytes of [X SP] IDS.
 *
 * Mongrel2 drops a malformed frame and then stalls every reply of the
 * handler for about half a second, so every input is checked here and a
 * bad one throws instead of reaching the wire.
 */
import { ProtocolError } from './errors.js';
import { encodeTnetstring } from './tnetstring.js';

/** Wire: `limits.handler_targets`, Mongrel2's default cap on ids per reply. */
export const MAX_TARGETS = 128;

const SENDER = /^[A-Za-z0-9-]+$/;
const CONN_ID = /^(0|[1-9][0-9]{0,9})$/;
const MAX_CONN_ID = 0xffff_ffff;
const EMPTY = Buffer.alloc(0);

function refuse(message: string, value: string): never {
  throw new ProtocolError('M2F_BAD_REPLY', message, {
    value: value.slice(0, 40),
  });
}

function checkSender(sender: string): void {
  if (!SENDER.test(sender)) {
    refuse(`reply sender ${JSON.stringify(sender.slice(0, 40))} is not ` +
      '[A-Za-z0-9-]+', sender);
  }
}

function checkId(id: string): void {
  if (!CONN_ID.test(id) || Number(id) > MAX_CONN_ID) {
    refuse(`reply target ${JSON.stringify(id.slice(0, 40))} is not a ` +
      'connection id', id);
  }
}

/** Builds `SENDER LEN:[X ]IDS, ` after checking every part. */
function prefixText(
  sender: string,
  ids: readonly string[],
  extended: boolean,
): string {
  checkSender(sender);
  if (ids.length < 1 || ids.length > MAX_TARGETS) {
    refuse(`a reply needs 1 to ${MAX_TARGETS} targets, got ${ids.length}`,
      String(ids.length));
  }
  for (const id of ids) checkId(id);
  const list = extended ? 'X ' + ids.join(' ') : ids.join(' ');
  // Ids and "X " are ASCII, so the char count is the byte count.
  return `${sender} ${list.length}:${list}, `;
}

/** Writes `prefix` then every chunk into one buffer of the exact size. */
function assemble(prefix: string, body: Buffer | readonly Buffer[]): Buffer {
  const chunks: readonly Buffer[] = Buffer.isBuffer(body) ? [body] : body;
  let size = prefix.length;
  for (const c of chunks) size += c.length;
  const out = Buffer.allocUnsafe(size);
  let pos = out.write(prefix, 0, 'latin1');
  for (const c of chunks) pos += c.copy(out, pos);
  return out;
}

/**
 * Encodes a reply carrying `body` (one buffer or chunks written in order)
 * to every connection in `ids`, as a single buffer with one allocation.
 * An empty body means "close these connections".
 * @throws ProtocolError `M2F_BAD_REPLY` when `sender` is not
 * `[A-Za-z0-9-]+`, an id is not a uint32 in canonical decimal, or there are
 * not 1 to {@link MAX_TARGETS} ids.
 */
export function encodeReply(
  sender: string,
  ids: readonly string[],
  body: Buffer | readonly Buffer[],
): Buffer {
  return assemble(prefixText(sender, ids, false), body);
}

/**
 * Encodes a close: an empty-body reply, `SENDER LEN:IDS, ` with the
 * trailing space Mongrel2 requires.
 * @throws ProtocolError `M2F_BAD_REPLY` as {@link encodeReply}.
 */
export function encodeClose(sender: string, ids: readonly string[]): Buffer {
  return assemble(prefixText(sender, ids, false), EMPTY);
}

/** Argument values a `ctl` reply may carry. */
export type CtlArgs = Record<string, number | string | boolean>;

/**
 * Encodes an extended `ctl` reply: `SENDER LEN:X IDS, ` + the tnetstring
 * `["ctl", args]`. Numbers become `#` integers (Mongrel2 reads `credits` as
 * one without checking), e.g. `{ credits: 3000 }`, `{ 'keep-alive': true }`,
 * `{ cancel: true }`.
 * @throws ProtocolError `M2F_BAD_REPLY` as {@link encodeReply} or when
 * `credits` is not a non-negative safe integer; `M2F_BAD_TNET_VALUE` for a
 * number that is not a safe integer.
 */
export function encodeCtl(
  sender: string,
  ids: readonly string[],
  args: CtlArgs,
): Buffer {
  const credits = args['credits'];
  if (credits !== undefined &&
      (typeof credits !== 'number' || !Number.isSafeInteger(credits) ||
        credits < 0)) {
    refuse('ctl credits must be a non-negative integer', String(credits));
  }
  const payload = encodeTnetstring(['ctl', { ...args }]);
  return assemble(prefixText(sender, ids, true), payload);
}

/**
 * The prefix `SENDER LEN:CONN_ID, ` of a single-target reply. Pure, so a
 * caller may cache it per connection and send `Buffer.concat([prefix,
 * body])` on the hot path.
 * @throws ProtocolError `M2F_BAD_REPLY` as {@link encodeReply}.
 */
export function replyPrefix(sender: string, connId: string): Buffer {
  return Buffer.from(prefixText(sender, [connId], false), 'latin1');
}

/**
 * Splits `ids` into groups of at most `max` (default {@link MAX_TARGETS}),
 * keeping their order, so each group fits one reply.
 * @throws RangeError when `max` is not a positive integer.
 */
export function splitTargets(
  ids: readonly string[],
  max = MAX_TARGETS,
): string[][] {
  if (!Number.isInteger(max) || max < 1) {
    throw new RangeError(`splitTargets: max must be a positive integer, got ${max}`);
  }
  const groups: string[][] = [];
  for (let i = 0; i < ids.length; i += max) groups.push(ids.slice(i, i + max));
  return groups;
}
