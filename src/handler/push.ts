/**
 * Server push for apps: `import { subscribe, publish } from 'm2fleet'`.
 *
 * The functions find the unit serving the calling thread through a
 * registry on `globalThis` (keyed by a registered symbol), so they work
 * even when the app's copy of m2fleet is not the module instance the
 * running m2fleet loaded. Outside m2fleet they do nothing and say so.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { PushTarget } from './push-hub.js';
import { OPCODE, serverFrame } from './websocket-frame.js';

export type { PushTarget } from './push-hub.js';

/** The part of a unit's PushHub these functions call (structural on purpose). */
interface Hub {
  subscribe(socket: unknown, topic: string): boolean;
  unsubscribe(socket: unknown, topic?: string): boolean;
  publish(topic: string, frame: Buffer, relay: boolean): number;
  broadcast(targets: readonly PushTarget[], frame: Buffer): number;
}

const HUBS = Symbol.for('m2fleet.push-hubs');

/** The hubs of the units running in this thread (normally one). */
export function pushHubs(): Set<Hub> {
  const g = globalThis as { [HUBS]?: Set<Hub> };
  g[HUBS] ??= new Set();
  return g[HUBS];
}

/** What a message may be: text, or bytes. */
export type PushData = string | Uint8Array | ArrayBuffer;

/** Options of {@link publish} and {@link broadcast}. */
export interface PushOptions {
  /**
   * Send a binary frame (opcode 2) instead of text (opcode 1). Default:
   * binary for bytes, text for a string.
   */
  binary?: boolean;
}

/** Where the connection of a WebSocket can be found. */
export type PushSocket = IncomingMessage | Duplex;

function socketOf(target: PushSocket): unknown {
  const s = (target as { socket?: unknown }).socket;
  return s !== undefined && s !== null ? s : target;
}

function checkTopic(topic: string): void {
  if (typeof topic !== 'string' || topic.length === 0) {
    throw new TypeError(`m2fleet: a topic must be a non-empty string, got ${String(topic).slice(0, 40)}`);
  }
}

function frameOf(data: PushData, options: PushOptions): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8')
    : data instanceof ArrayBuffer ? Buffer.from(data)
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const binary = options.binary ?? typeof data !== 'string';
  return serverFrame(binary ? OPCODE.binary : OPCODE.text, bytes);
}

/**
 * Subscribes the WebSocket whose upgrade request (or socket) is `target`
 * to `topic`, fleet-wide. The subscription ends by itself when the
 * socket closes. Returns false when `target` is not an open WebSocket
 * served by m2fleet in this thread.
 * @throws TypeError for an empty or non-string topic.
 */
export function subscribe(target: PushSocket, topic: string): boolean {
  checkTopic(topic);
  const socket = socketOf(target);
  for (const hub of pushHubs()) if (hub.subscribe(socket, topic)) return true;
  return false;
}

/** Ends a subscription (every one of the socket when `topic` is omitted). */
export function unsubscribe(target: PushSocket, topic?: string): boolean {
  const socket = socketOf(target);
  for (const hub of pushHubs()) if (hub.unsubscribe(socket, topic)) return true;
  return false;
}

/**
 * Sends one WebSocket message to every subscriber of `topic` in the whole
 * fleet (every process and thread of this host). Subscribers held by this
 * unit get it at once, in shared multi-target replies; the other units
 * are told through the fleet's relay and do the same for theirs. Returns
 * how many subscribers this unit delivered to, or -1 outside m2fleet.
 * @throws TypeError for an empty or non-string topic.
 */
export function publish(topic: string, data: PushData, options: PushOptions = {}): number {
  checkTopic(topic);
  const hubs = [...pushHubs()];
  if (hubs.length === 0) return -1;
  const frame = frameOf(data, options);
  let sent = 0;
  hubs.forEach((hub, i) => { sent += hub.publish(topic, frame, i === 0); });
  return sent;
}

/**
 * Sends one WebSocket message to the given connections (each as
 * `req.socket.mongrel2` names it: sender, connId, endpoint), from this
 * unit, whichever unit holds them: up to 128 ids per Mongrel2 reply.
 * Returns how many targets were sent to, or -1 outside m2fleet.
 * Prefer {@link publish}: a target held by another unit gets the frame
 * outside that unit's pacing (see the README).
 */
export function broadcast(
  targets: readonly PushTarget[], data: PushData, options: PushOptions = {},
): number {
  const hubs = [...pushHubs()];
  if (hubs.length === 0) return -1;
  return hubs[0]!.broadcast(targets, frameOf(data, options));
}
