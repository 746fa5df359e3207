/**
 * Shapes shared by the cluster modules. Cluster mode never touches
 * requests: it agrees on a configuration and hands it to src/node.
 */

/** Message kinds of protocol v1. */
export type MessageKind = 'config' | 'beacon' | 'discover' | 'status' | 'leave';

/** How a datagram is authenticated (the auth byte of the envelope). */
export type AuthAlgorithm = 'hmac-sha256' | 'ed25519';

/** The header of a datagram, as decoded after its tag was verified. */
export interface Envelope {
  readonly kind: MessageKind;
  readonly auth: AuthAlgorithm;
  /** Which key made the tag (uint32). */
  readonly keyId: number;
  /** Sender's persistent node id: 32 lowercase hex chars (16 bytes). */
  readonly nodeId: string;
  /** Random per process start: 16 lowercase hex chars (8 bytes). */
  readonly bootId: string;
  /** Per-boot sequence number (safe integer). */
  readonly seq: number;
  /** Sender's clock, ms since the epoch. */
  readonly timestamp: number;
  /** Cluster name (1-64 bytes of [A-Za-z0-9._-]). */
  readonly cluster: string;
}

/** Why a datagram was refused; each has a counter. */
export type RejectReason =
  | 'oversize'
  | 'malformed'
  | 'unknown_version'
  | 'unknown_kind'
  | 'foreign_cluster'
  | 'unknown_key'
  | 'bad_auth'
  | 'unsigned_config'
  | 'bad_body'
  | 'own'
  | 'replay'
  | 'skew'
  | 'flood'
  | 'stale'
  | 'conflict'
  | 'schema'
  | 'limits'
  | 'app_not_deployed'
  | 'endpoint_not_allowed';

/** A datagram transport: UDP multicast and peers, or a simulated network. */
export interface Transport {
  /** Sends one datagram to the group (and to every configured peer). */
  send(datagram: Buffer): void;
  /** Sends one datagram to one address (a reply to a DISCOVER). */
  sendTo(datagram: Buffer, address: string, port: number): void;
  /** Registers the receiver; `from` is the source address and port. */
  onMessage(handler: (datagram: Buffer, from: { address: string; port: number }) => void): void;
  close(): Promise<void>;
}

/** Time source, so tests can drive timers with a fake clock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

/**
 * The part of a node's configuration that travels: what every member must
 * run identically. Plain JSON; nothing here may name a host path other
 * than the app module, which followers check against their own app roots.
 */
export interface SharedConfig {
  /** `SEND_SPEC,RECV_SPEC` pairs (tcp:// only across hosts). */
  readonly zeromq: readonly string[];
  /** The app as the main names it (a path), or null for the test app. */
  readonly module: string | null;
  readonly processes: number;
  readonly threads: number;
  readonly maxRequests: number;
  readonly reloadOnRss: number;
  /** Milliseconds; 0 = off. */
  readonly harakiri: number;
  /** Milliseconds. */
  readonly mercy: number;
  readonly interface: 'auto' | 'node' | 'fetch';
  readonly flowControl: 'auto' | 'on' | 'off';
}
