/**
 * Shapes shared by the handler modules. Header keys and values are kept as
 * "byte strings": each char is one byte (latin1), so non-UTF-8 bytes from
 * Mongrel2 survive unchanged until the edge that needs text.
 */

/** A header value as Mongrel2 sends it: one string, or a list for a repeated header. */
export type HeaderValue = string | string[];

/** Header dict of one message (null prototype; keys as sent, values latin1). */
export type HeaderMap = Record<string, HeaderValue>;

/** Which header encoding a message used; detected per message from its tag. */
export type HeaderProtocol = 'json' | 'tnetstring';

/** One message Mongrel2 PUSHed: `SENDER CONN_ID PATH LEN:HEADERS, LEN:BODY,`. */
export interface Mongrel2Message {
  /** Wire: first token, the handler's send_ident (latin1). Replies echo it. */
  readonly sender: string;
  /** Wire: second token, the connection id as unsigned decimal text. */
  readonly connId: string;
  /** Wire: third token, the raw path (percent-encoding kept), `@*` for notices. */
  readonly path: string;
  readonly headers: HeaderMap;
  /** The body netstring's bytes; a view into the received frame. */
  readonly body: Buffer;
  readonly protocol: HeaderProtocol;
}

/**
 * What a message means. `notice-disconnect` and `notice-credits` are `@*`
 * notices; `upload-chunk` is an `upload.stream` follow-up that carries only
 * UPLOAD_STREAM; `socket` is a JSSocket/XML `@route` message.
 */
export type MessageKind =
  | 'http'
  | 'notice-disconnect'
  | 'notice-credits'
  | 'notice-other'
  | 'upload-chunk'
  | 'socket'
  | 'websocket-handshake'
  | 'websocket-frame';

/** The logger the handler writes to; src/node supplies the real one. */
export interface Logger {
  error(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  debug(fields: Record<string, unknown>, msg: string): void;
  isDebug(): boolean;
  child(bindings: Record<string, unknown>): Logger;
}
