/**
 * The few complete HTTP responses m2fleet writes itself, for requests it
 * refuses or must answer on the app's behalf. Each closes the connection.
 */

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/** The reason phrase m2fleet uses for a status it writes itself. */
export function reasonOf(status: number): string {
  return REASONS[status] ?? 'Error';
}

/** The plain-text body of a refusal: the reason, lowercased. */
export function refusalText(status: number, text = reasonOf(status).toLowerCase()): string {
  return `${text}\n`;
}

/** A whole HTTP/1.1 refusal that closes the connection. */
export function plainResponse(status: number, text?: string): string {
  const body = refusalText(status, text);
  return `HTTP/1.1 ${status} ${reasonOf(status)}\r\ncontent-type: text/plain\r\n`
    + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

export const BAD_REQUEST = plainResponse(400);
export const NOT_ALLOWED = plainResponse(405);
export const TOO_LARGE = plainResponse(413);
export const NOT_IMPLEMENTED = plainResponse(501);
/** For a request whose unit was killed by harakiri. */
export const HANDLER_TIMED_OUT = plainResponse(503, 'request handler timed out');
