/**
 * The app socket of one Mongrel2 connection (see app-socket.ts): the bytes
 * travel over ZeroMQ, and the app can read Mongrel2's view of the request.
 */
import { AppSocket, type SocketPeer } from './app-socket.js';

export type { SocketPeer } from './app-socket.js';

/** What the app can learn about the Mongrel2 side of its request. */
export interface Mongrel2Info {
  /** Wire: the request's sender token (the handler's send_ident). */
  readonly sender: string;
  /** Wire: Mongrel2's connection id. */
  readonly connId: string;
  /** The send_spec this request came in on. */
  readonly endpoint: string;
  /** Mongrel2's own header keys of the latest request (METHOD, PATTERN, ...). */
  mongrel2Headers: Record<string, string>;
}

/** An app socket whose bytes come from and go to Mongrel2. */
export class Mongrel2Socket extends AppSocket {
  readonly mongrel2: Mongrel2Info;
  /** Set before destroy() when the end must not close the client. */
  quiet = false;

  constructor(peer: SocketPeer, info: Mongrel2Info, remote: string, tls: boolean) {
    super(peer, remote, tls);
    this.mongrel2 = info;
  }
}
