/**
 * Server push for one unit: topics its WebSocket connections subscribe
 * to, and delivery of one frame to many connections in Mongrel2
 * multi-target replies (`SENDER LEN:ID ID ID, FRAME`, at most
 * MAX_TARGETS ids each).
 *
 * Each unit knows exactly the connections it holds, so a publish is done
 * by every unit for its own subscribers: the unit where the app calls
 * publish() delivers locally and relays the frame to its siblings (the
 * same path notices take: threads through their process, processes
 * through the master), which deliver to theirs. No unit keeps a copy of
 * another's connections, so nothing goes stale when a client leaves.
 */
import type { Connection } from './connection.js';
import type { Endpoint } from './endpoint.js';
import { Mongrel2Socket } from './mongrel2-socket.js';
import { encodeReply, splitTargets } from './reply.js';
import type { Logger } from './types.js';

/** Starts every relayed publish; a Mongrel2 message never can (no space, a colon). */
export const PUBLISH_MARKER = Buffer.from('m2fleet:publish:');

/** A Mongrel2 connection as an app names it (`req.socket.mongrel2` has these). */
export interface PushTarget {
  /** Wire: the sender token of the connection's requests. */
  readonly sender: string;
  /** Wire: Mongrel2's connection id. */
  readonly connId: string;
  /** The send_spec the connection's requests came in on. */
  readonly endpoint: string;
}

/** What the hub needs of its unit. */
export interface PushHubHost {
  readonly endpoints: readonly Endpoint[];
  readonly log: Logger;
  /** The connection this unit holds under that key, if any. */
  connection(key: string): Connection | undefined;
  /** Passes a relay frame to every sibling unit (undefined when alone). */
  relay?: (frame: Buffer) => void;
}

interface Group {
  endpoint: Endpoint;
  sender: string;
  ids: string[];
}

/** Topics and fan-out of one unit. */
export class PushHub {
  readonly #host: PushHubHost;
  readonly #topics = new Map<string, Set<Connection>>();
  readonly #bySocket = new WeakMap<Mongrel2Socket, Set<string>>();

  constructor(host: PushHubHost) {
    this.#host = host;
  }

  /** True when `socket` is a connection of this unit. */
  owns(socket: unknown): socket is Mongrel2Socket {
    if (!(socket instanceof Mongrel2Socket)) return false;
    const conn = socket.peer as Connection;
    return this.#host.connection(conn.key) === conn;
  }

  /** Subscribes the WebSocket on `socket` to `topic`; false if not one of ours. */
  subscribe(socket: unknown, topic: string): boolean {
    if (!this.owns(socket)) return false;
    const conn = socket.peer as Connection;
    if (!conn.websocket || !conn.open) return false;
    let topics = this.#bySocket.get(socket);
    if (!topics) {
      topics = new Set();
      this.#bySocket.set(socket, topics);
      socket.once('close', () => this.#forget(socket));
    }
    topics.add(topic);
    let members = this.#topics.get(topic);
    if (!members) {
      members = new Set();
      this.#topics.set(topic, members);
    }
    members.add(conn);
    return true;
  }

  /** Unsubscribes from `topic`, or from every topic when it is undefined. */
  unsubscribe(socket: unknown, topic?: string): boolean {
    if (!this.owns(socket)) return false;
    const topics = this.#bySocket.get(socket);
    if (!topics) return true;
    for (const t of topic === undefined ? [...topics] : [topic]) {
      topics.delete(t);
      this.#leave(t, socket.peer as Connection);
    }
    return true;
  }

  /** Subscribers this unit holds for `topic`. */
  count(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /**
   * Sends the encoded server frame to every subscriber of `topic` that
   * this unit holds; relays it to the sibling units when `relay` is set.
   * Returns how many local connections it went to.
   */
  publish(topic: string, frame: Buffer, relay: boolean): number {
    if (relay && this.#host.relay) this.#host.relay(encodeRelay(topic, frame));
    const members = this.#topics.get(topic);
    if (!members) return 0;
    return this.#deliver([...members], frame);
  }

  /** A publish relayed by a sibling unit (see {@link PUBLISH_MARKER}). */
  deliverRelayed(payload: Buffer): void {
    const decoded = decodeRelay(payload);
    if (!decoded) {
      this.#host.log.warn({ bytes: payload.length }, 'malformed publish relay skipped');
      return;
    }
    this.publish(decoded.topic, decoded.frame, false);
  }

  /**
   * Sends the frame to each target: through this unit's own queue for
   * the connections it holds, and in shared multi-target replies for the
   * rest. Targets on an endpoint this unit does not serve are skipped.
   */
  broadcast(targets: readonly PushTarget[], frame: Buffer): number {
    const mine: Connection[] = [];
    const others = new Map<string, Group>();
    let sent = 0;
    for (const t of targets) {
      const index = this.#host.endpoints.findIndex((e) => e.spec.sendSpec === t.endpoint);
      if (index < 0) continue;
      const conn = this.#host.connection(`${index} ${t.sender} ${t.connId}`);
      if (conn) {
        mine.push(conn);
        continue;
      }
      // Known shortcoming: a connection another unit holds gets the frame
      // without that unit's knowledge, so the frame is not counted by
      // its flow gate (16-message pacing or download credits) and, with
      // download credits, may land between two pieces of a large frame
      // of its own. publish() has neither problem: owners deliver.
      addTo(others, this.#host.endpoints[index]!, t.sender, t.connId);
      sent++;
    }
    this.#send(others, frame);
    return sent + this.#deliver(mine, frame);
  }

  #deliver(conns: readonly Connection[], frame: Buffer): number {
    const groups = new Map<string, Group>();
    const now = Date.now();
    let sent = 0;
    for (const conn of conns) {
      if (!conn.open) continue;
      sent++;
      const index = Number(conn.key.slice(0, conn.key.indexOf(' ')));
      // Idle connections share one reply; a busy one gets the frame in
      // line after its own writes, through its socket.
      if (conn.takeShared(frame.length, now)) {
        addTo(groups, this.#host.endpoints[index]!, conn.sender, conn.connId);
      } else {
        conn.socket!.write(frame);
      }
    }
    this.#send(groups, frame);
    return sent;
  }

  #send(groups: Map<string, Group>, frame: Buffer): void {
    for (const g of groups.values()) {
      if (g.endpoint.pub.closed) continue;
      for (const ids of splitTargets(g.ids)) {
        g.endpoint.replies.enqueue(encodeReply(g.sender, ids, frame));
      }
    }
  }

  #forget(socket: Mongrel2Socket): void {
    const topics = this.#bySocket.get(socket);
    if (!topics) return;
    this.#bySocket.delete(socket);
    for (const t of topics) this.#leave(t, socket.peer as Connection);
  }

  #leave(topic: string, conn: Connection): void {
    const members = this.#topics.get(topic);
    if (!members) return;
    members.delete(conn);
    if (members.size === 0) this.#topics.delete(topic);
  }
}

function addTo(groups: Map<string, Group>, endpoint: Endpoint, sender: string, connId: string): void {
  const key = `${endpoint.spec.sendSpec} ${sender}`;
  let g = groups.get(key);
  if (!g) {
    g = { endpoint, sender, ids: [] };
    groups.set(key, g);
  }
  g.ids.push(connId);
}

/**
 * A relayed publish:
 *   "m2fleet:publish:" | u32 BE topic length | topic (UTF-8) | frame
 */
function encodeRelay(topic: string, frame: Buffer): Buffer {
  const name = Buffer.from(topic, 'utf8');
  const size = Buffer.allocUnsafe(4);
  size.writeUInt32BE(name.length, 0);
  return Buffer.concat([PUBLISH_MARKER, size, name, frame]);
}

function decodeRelay(payload: Buffer): { topic: string; frame: Buffer } | undefined {
  const at = PUBLISH_MARKER.length;
  if (payload.length < at + 4 || !payload.subarray(0, at).equals(PUBLISH_MARKER)) return undefined;
  const size = payload.readUInt32BE(at);
  if (at + 4 + size >= payload.length) return undefined;
  return {
    topic: payload.subarray(at + 4, at + 4 + size).toString('utf8'),
    frame: payload.subarray(at + 4 + size),
  };
}
