/**
 * The few complete HTTP responses m2fleet writes itself, for requests it
 * refuses or must answer on the app's behalf. Each closes the connection.
 */

function plain(status: number, reason: string, text: string): string {
  const body = `${text}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\n`
    + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

export const BAD_REQUEST = plain(400, 'Bad Request', 'bad request');
export const NOT_ALLOWED = plain(405, 'Method Not Allowed', 'method not allowed');
export const TOO_LARGE = plain(413, 'Payload Too Large', 'payload too large');
export const NOT_IMPLEMENTED = plain(501, 'Not Implemented', 'not implemented');
/** For a request whose unit was killed by harakiri. */
export const HANDLER_TIMED_OUT = plain(503, 'Service Unavailable', 'request handler timed out');
