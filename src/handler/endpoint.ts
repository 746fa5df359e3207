/**
 * The two ZeroMQ sockets that face one Mongrel2 handler entry: a PULL
 * connected to its send_spec and a PUB connected to its recv_spec.
 */
import { Pull, XPublisher } from 'zeromq';
import { ReplySender } from './reply-sender.js';
import type { Logger } from './types.js';

/**
 * The last message the fleet's master sends to a unit it stops feeding
 * (src/node/inbox.ts); a Mongrel2 message can never look like it.
 */
export const DRAIN_MARKER = Buffer.from('m2fleet:drained');

/** One `--zeromq SEND_SPEC,RECV_SPEC` pair. */
export interface EndpointSpec {
  /** Mongrel2's send_spec: it PUSHes requests there; we connect a PULL. */
  readonly sendSpec: string;
  /** Mongrel2's recv_spec: it SUBscribes there; we connect a PUB. */
  readonly recvSpec: string;
  /**
   * Where the PULL binds instead of connecting to sendSpec: the fleet's
   * master holds the Mongrel2-facing PULL and forwards to this address.
   */
  readonly pullSpec?: string;
}

/** ZeroMQ tuning for one endpoint. */
export interface EndpointOptions {
  /** The unit's identity (a UUID), for logs. */
  identity: string;
  /** PULL receive high-water mark: small, so a busy unit hoards no work. */
  receiveHighWaterMark: number;
  /** Largest request frame served, in bytes (-1: no limit); see unit. */
  maxMessageSize: number;
  /** How long to wait for Mongrel2's subscription before pulling anyway. */
  subscribeTimeoutMs: number;
  /** How long the PUB may keep flushing replies when closed. */
  lingerMs: number;
}

/** A connected PULL/PUB pair and the reply queue in front of the PUB. */
export class Endpoint {
  readonly spec: EndpointSpec;
  readonly pull: Pull;
  readonly pub: XPublisher;
  readonly replies: ReplySender;
  /** The master sent its last message to this endpoint (see inbox.ts). */
  drained = false;
  /** Called when the connection to Mongrel2's recv_spec drops. */
  onMongrel2Gone: (() => void) | null = null;
  readonly #log: Logger;
  #subscribed: Promise<boolean>;

  constructor(spec: EndpointSpec, options: EndpointOptions, log: Logger) {
    this.spec = spec;
    this.#log = log;
    this.pub = new XPublisher({
      noDrop: true,
      sendHighWaterMark: 100_000,
      // Sends never wait inside ZeroMQ: a full queue answers EAGAIN at
      // once and ReplySender retries. This also spares zeromq.js a
      // ZMQ_EVENTS check on every send (measured: a few % of the unit).
      sendTimeout: 0,
      // Replies wait only in pipes to a connected Mongrel2: when it goes
      // away, what was queued for it is dropped, not sent to the Mongrel2
      // that comes back (which numbers its connections from the start).
      immediate: true,
      linger: options.lingerMs,
    });
    this.pull = new Pull({
      receiveHighWaterMark: options.receiveHighWaterMark,
      linger: 0,
    });
    this.replies = new ReplySender(this.pub, log);
    this.#subscribed = Promise.resolve(false);
  }

  /**
   * Connects the PUB, waits until Mongrel2's SUB has subscribed (replies
   * sent before that are lost: the slow-joiner problem), then connects the
   * PULL so that no request is taken that could not be answered.
   */
  async connect(subscribeTimeoutMs: number): Promise<void> {
    this.pub.events.on('disconnect', () => this.onMongrel2Gone?.());
    this.pub.connect(this.spec.recvSpec);
    this.#subscribed = this.#watchSubscriptions();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), subscribeTimeoutMs);
    });
    const ok = await Promise.race([this.#subscribed, timeout]);
    clearTimeout(timer);
    if (!ok) {
      this.#log.warn(
        { recvSpec: this.spec.recvSpec, waitedMs: subscribeTimeoutMs },
        'no subscription from mongrel2 yet; pulling anyway',
      );
    }
    if (this.spec.pullSpec) await this.pull.bind(this.spec.pullSpec);
    else this.pull.connect(this.spec.sendSpec);
  }

  // Resolves true on the first subscription, then stops reading: a read
  // left pending would make zeromq.js check the socket's events (two system
  // calls in libzmq) after every reply sent. ZeroMQ applies later
  // subscriptions (a restarted Mongrel2 subscribes again) without being
  // read; it queues only their notices, a few bytes each.
  async #watchSubscriptions(): Promise<boolean> {
    for (;;) {
      let frames: Buffer[];
      try {
        frames = await this.pub.receive();
      } catch {
        return false;
      }
      const subscribe = frames[0]?.[0] === 1;
      this.#log.debug({ recvSpec: this.spec.recvSpec, subscribe }, 'subscription');
      if (subscribe) return true;
    }
  }

  /** Stops taking requests (a pending receive ends quietly). */
  stopPulling(): void {
    if (!this.pull.closed) this.pull.close();
  }

  /** Flushes queued replies, then closes the PUB. */
  async close(): Promise<void> {
    this.stopPulling();
    await this.replies.drained();
    this.replies.close();
    if (!this.pub.closed) this.pub.close();
    await this.#subscribed;
  }
}
