/**
 * The options and reporting shapes of a handler unit (see unit.ts).
 */
import type { Server } from 'node:http';
import type { EndpointOptions, EndpointSpec } from './endpoint.js';
import type { SocketKind, SocketLimits, Transport } from './gateway.js';
import type { SocketListener } from './socket-servers.js';
import type { Logger } from './types.js';
import type { UploadOptions } from './upload.js';

/** Options of a unit; `server` is the app, never bound to a port. */
export interface UnitOptions extends Omit<EndpointOptions, 'identity'> {
  endpoints: readonly EndpointSpec[];
  server: Server;
  log: Logger;
  /** The unit's identity (a UUID), set on its sockets and logged. */
  identity: string;
  /** Requests in flight before the unit stops pulling more. */
  maxInflight: number;
  /** Host header added to requests that carry none (HTTP/1.0). */
  defaultHost: string;
  upload: UploadOptions;
  /** An idle keep-alive connection's state is dropped after this long. */
  idleTimeoutMs: number;
  /**
   * Mongrel2's download.flow_control: `on` or `off` as configured there, or
   * `auto` to learn it from the first DOWNLOAD_CREDITS header.
   */
  flowControl: FlowControl;
  /** Units in the whole fleet (processes × threads); 1 when alone. */
  units: number;
  /**
   * Every message of a connection reaches the unit that took its first one
   * (m2fleet's master routes by connection). Without it, several units
   * share connections, and credited ones are closed after each response.
   */
  affinity?: boolean;
  /** Standard sockets (HTTP, uwsgi, FastCGI) served beside ZeroMQ. */
  sockets?: readonly SocketListener[];
  /** Limits of those sockets; DEFAULT_SOCKET_LIMITS when absent. */
  socketLimits?: SocketLimits;
  /** Called when the app starts on a request. */
  onRequestStart?: (request: ActiveRequest) => void;
  /** Called when a response ends (access log, metrics, max-requests). */
  onResponse?: (request: CompletedRequest) => void;
  /**
   * Called with a notice or upload piece for a connection this unit does
   * not hold; the fleet passes it to every sibling's deliverRelayed().
   */
  onRelay?: (endpointIndex: number, frame: Buffer) => void;
  /** Called once when `auto` flow control learns that it is on. */
  onFlowControl?: () => void;
  /**
   * How often an open WebSocket with no client frame in that time gets a
   * ctl keep-alive, so that Mongrel2's idle killer (`limits.min_ping`)
   * spares it; keep it below min_ping. Milliseconds; default 5000.
   */
  websocketKeepAliveMs?: number;
}

/** A request the app is working on. */
export interface ActiveRequest {
  readonly startedAt: number;
  readonly method: string;
  readonly url: string;
  readonly connId: string;
  /** Index of the endpoint (--zeromq pair) the request came in on. */
  readonly endpoint: number;
  /** Wire: the request's sender token. */
  readonly sender: string;
  /** How the request arrived (for standard sockets, endpoint is -1). */
  readonly via: Transport;
  /** The client address as the transport reports it ('' when unknown). */
  readonly remote: string;
}

/** A finished (or aborted) request, as reported to `onResponse`. */
export interface CompletedRequest extends ActiveRequest {
  readonly status: number;
  /** Response bytes, head included. */
  readonly bytes: number;
  readonly durationMs: number;
  /** False when the response was cut short (client gone, app destroyed it). */
  readonly completed: boolean;
}

/** See {@link UnitOptions.flowControl}. */
export type FlowControl = 'auto' | 'on' | 'off';

/** Counters a unit keeps; read by logs and metrics. */
export interface UnitCounters {
  requests: number;
  malformed: number;
  refused: number;
  notices: number;
  /** Requests the app started on, by how they arrived. */
  transports: Record<Transport, number>;
  /** Bad input and limits on the standard sockets, by socket kind. */
  socketRefused: Record<SocketKind, number>;
}
