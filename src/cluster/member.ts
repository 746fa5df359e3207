/**
 * One node of a cluster, main or follower. The main announces its shared
 * configuration (CONFIG on change and every 30 s, BEACON every 2 s, CONFIG
 * again in answer to a DISCOVER); a follower adopts the highest valid
 * version that passes its local policy, persists it, and keeps running it
 * when the main goes away. Every datagram is checked in this order: rate,
 * size and authentication (wire.ts), own echo, sequence and clock, then
 * meaning. Each refusal is counted and logged with its reason.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../handler/types.js';
import type { Keyring } from './keys.js';
import { checkConfig, digestOf, type LocalPolicy } from './policy.js';
import type { ClusterStore } from './store.js';
import type {
  Clock, Envelope, MessageKind, RejectReason, SharedConfig, Transport,
} from './types.js';
import { decodeDatagram, encodeDatagram } from './wire.js';

/** Follower states (a main is always `main`). */
export type MemberState =
  | 'main' | 'discovering' | 'applying' | 'running' | 'running-stale' | 'rejected';

/** What a node knows of another. */
export interface MemberView {
  nodeId: string;
  host: string;
  role: 'main' | 'follower';
  state: MemberState;
  version: number;
  unitsReady: number;
  unitsDesired: number;
  lastSeen: number;
}

/** The cluster side of /status and /metrics. */
export interface ClusterSnapshot {
  nodeId: string;
  cluster: string;
  role: 'main' | 'follower';
  state: MemberState;
  version: number;
  digest: string | null;
  mainLastSeen: number | null;
  lastReject: string | null;
  members: MemberView[];
  /** `kind:result` → count, e.g. `config:accepted`, `unknown:bad_auth`. */
  received: Record<string, number>;
  sent: Record<string, number>;
}

/** Everything a member needs. */
export interface MemberOptions {
  role: 'main' | 'follower';
  cluster: string;
  nodeId: string;
  transport: Transport;
  keyring: Keyring;
  clock: Clock;
  store: ClusterStore;
  policy: LocalPolicy;
  log: Logger;
  /** The main's shared configuration. */
  config?: SharedConfig;
  /** Follower: run this configuration (first time, or roll to it). */
  adopt?: (config: SharedConfig, version: number) => Promise<void>;
  /** Units ready and desired on this node, for STATUS. */
  units: () => { ready: number; desired: number };
  /** Follower: do not start from the persisted config; wait for the main. */
  requireMain?: boolean;
  /** Largest accepted clock difference for a new boot id (ms; 120 s). */
  maxSkewMs?: number;
  /** Source of jitter (tests pass a seeded one). */
  random?: () => number;
}

const BEACON_MS = 2000;
const STATUS_MS = 5000;
const CONFIG_REPEAT_MS = 30_000;
const MAIN_LOST_MS = 10_000;
const MEMBER_GONE_MS = 300_000;
const FLOOD_PER_SECOND = 100;

/** A cluster member; call start() once. */
export class ClusterMember {
  readonly #o: MemberOptions;
  readonly #bootId = randomBytes(8).toString('hex');
  #seq = 0;
  #state: MemberState;
  #version = 0;
  #digest: string | null = null;
  #configBody: { version: number; digest: string; config: SharedConfig } | null = null;
  #mainLastSeen: number | null = null;
  #lastConfigSent = -Infinity;
  #lastReject: string | null = null;
  #discoverDelay = 1000;
  readonly #members = new Map<string, MemberView>();
  readonly #seen = new Map<string, { bootId: string; seq: number }>();
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #received = new Map<string, number>();
  readonly #sent = new Map<string, number>();
  readonly #logged = new Map<string, number>();
  readonly #timers = new Set<{ cancel(): void }>();
  #stopped = false;

  #random(): number {
    return (this.#o.random ?? Math.random)();
  }

  constructor(options: MemberOptions) {
    this.#o = options;
    this.#state = options.role === 'main' ? 'main' : 'discovering';
  }

  /** Begins announcing (main) or discovering (follower). */
  async start(): Promise<void> {
    this.#o.transport.onMessage((d, from) => this.#onDatagram(d, from));
    if (this.#o.role === 'main') this.#startMain();
    else await this.#startFollower();
    this.#every(STATUS_MS, () => this.#sendStatus());
  }

  /** Says goodbye and stops the timers (the transport is the caller's). */
  stop(): void {
    if (this.#stopped) return;
    this.#send('leave', { reason: 'stopping' });
    this.#stopped = true;
    for (const t of this.#timers) t.cancel();
  }

  snapshot(): ClusterSnapshot {
    const now = this.#o.clock.now();
    for (const [id, m] of this.#members) {
      if (now - m.lastSeen > MEMBER_GONE_MS) this.#members.delete(id);
    }
    return {
      nodeId: this.#o.nodeId, cluster: this.#o.cluster, role: this.#o.role,
      state: this.#state, version: this.#version, digest: this.#digest,
      mainLastSeen: this.#mainLastSeen, lastReject: this.#lastReject,
      members: [...this.#members.values()],
      received: Object.fromEntries(this.#received), sent: Object.fromEntries(this.#sent),
    };
  }

  // ---------------------------------------------------------------- main

  #startMain(): void {
    const config = this.#o.config!;
    const digest = digestOf(config);
    const memory = this.#o.store.load();
    let version = memory.published?.version ?? 0;
    // A version only grows: a new document gets a new one, never lower
    // than what was published before (even with the clock set back).
    if (memory.published?.digest !== digest) {
      version = Math.max(version + 1, Math.floor(this.#o.clock.now()));
      this.#o.store.save({ ...memory, published: { version, digest } });
    }
    this.#version = version;
    this.#digest = digest;
    this.#configBody = { version, digest, config };
    // Refuse to start rather than announce something that cannot fit.
    this.#encode('config', this.#configBody);
    this.#o.log.info({ version, digest: digest.slice(0, 12) }, 'cluster: announcing config');
    for (const at of [0, 250, 1000]) this.#after(at, () => this.#sendConfig());
    this.#every(CONFIG_REPEAT_MS, () => this.#sendConfig());
    this.#every(BEACON_MS, () => this.#send('beacon', { version, digest }));
  }

  #sendConfig(to?: { address: string; port: number }): void {
    this.#lastConfigSent = this.#o.clock.now();
    this.#send('config', this.#configBody, to);
  }

  #onDiscover(from: { address: string; port: number }): void {
    if (this.#o.role !== 'main') return;
    // Many followers starting at once: answer each after a random delay,
    // once per second at most on the group, and always to the asker.
    this.#after(this.#random() * 500, () => {
      this.#sendConfig(from);
      if (this.#o.clock.now() - this.#lastConfigSent > 1000) this.#sendConfig();
    });
  }

  // ------------------------------------------------------------ follower

  async #startFollower(): Promise<void> {
    const memory = this.#o.store.load();
    this.#version = memory.acceptedVersion;
    if (memory.lastGood !== null && !this.#o.requireMain) {
      const bytes = Buffer.from(memory.lastGood, 'base64');
      const r = decodeDatagram(bytes, this.#o.keyring, this.#o.cluster);
      if (r.ok && r.envelope.kind === 'config') {
        this.#o.log.info({ version: memory.acceptedVersion }, 'cluster: starting from last-good config');
        await this.#consider(r.body, bytes, true);
      } else {
        this.#o.log.error({ reason: r.ok ? 'not a config' : r.reason },
          'cluster: persisted config refused; waiting for the main');
      }
    }
    this.#discover();
    this.#every(1000, () => {
      const lost = this.#mainLastSeen === null
        || this.#o.clock.now() - this.#mainLastSeen > MAIN_LOST_MS;
      if (lost && this.#state === 'running') this.#setState('running-stale');
      if (!lost && this.#state === 'running-stale') this.#setState('running');
    });
  }

  #discover(): void {
    if (this.#stopped || this.#digest !== null && this.#state !== 'rejected') return;
    this.#send('discover', { version: this.#version });
    const delay = this.#discoverDelay * (0.8 + this.#random() * 0.4);
    this.#discoverDelay = Math.min(30_000, this.#discoverDelay * 2);
    this.#after(delay, () => this.#discover());
  }

  async #consider(body: unknown, datagram: Buffer, fromDisk = false): Promise<void> {
    const b = body as { version?: unknown; digest?: unknown; config?: unknown };
    if (!Number.isSafeInteger(b.version) || typeof b.digest !== 'string') {
      return this.#reject('config', 'schema', 'version or digest missing');
    }
    const version = b.version as number;
    if (!fromDisk) {
      if (version < this.#version) return this.#reject('config', 'stale', `version ${version}`);
      if (version === this.#version) {
        if (b.digest === this.#digest) return this.#count('config', 'duplicate');
        if (this.#digest !== null) return this.#reject('config', 'conflict', `version ${version}`);
      }
    }
    const checked = checkConfig(b.config, this.#o.policy);
    if (!checked.ok) {
      if (this.#state === 'discovering') this.#setState('rejected');
      return this.#reject('config', checked.reason, checked.detail);
    }
    if (digestOf(b.config as SharedConfig) !== b.digest) {
      return this.#reject('config', 'schema', 'digest does not match the document');
    }
    this.#count('config', 'accepted');
    this.#version = version;
    this.#digest = b.digest;
    const memory = this.#o.store.load();
    this.#o.store.save({ ...memory, acceptedVersion: version, lastGood: datagram.toString('base64') });
    this.#setState('applying');
    this.#o.log.info({ version, digest: b.digest.slice(0, 12) }, 'cluster: adopting config');
    try {
      await this.#o.adopt?.(checked.config, version);
      this.#setState(this.#mainLastSeen === null && fromDisk ? 'running-stale' : 'running');
    } catch (err) {
      this.#lastReject = `apply failed: ${(err as Error).message}`;
      this.#setState('rejected');
      this.#o.log.error({ err, version }, 'cluster: could not apply config');
    }
  }

  // ------------------------------------------------------------ receiving

  #onDatagram(datagram: Buffer, from: { address: string; port: number }): void {
    if (this.#stopped) return;
    if (!this.#takeToken(from.address)) return this.#reject('unknown', 'flood', from.address);
    const r = decodeDatagram(datagram, this.#o.keyring, this.#o.cluster);
    if (!r.ok) return this.#reject('unknown', r.reason, `${r.detail ?? ''} from ${from.address}`);
    const env = r.envelope;
    if (env.nodeId === this.#o.nodeId) return this.#count(env.kind, 'own');
    const fresh = this.#checkSequence(env);
    if (fresh !== null) return this.#reject(env.kind, fresh, from.address);
    const body = r.body as Record<string, unknown>;
    switch (env.kind) {
      case 'config':
        this.#mainLastSeen = this.#o.clock.now();
        if (this.#o.role === 'follower') void this.#consider(body, datagram);
        else this.#reject('config', 'conflict', 'another main announces a config');
        return;
      case 'beacon':
        this.#count('beacon', 'accepted');
        this.#mainLastSeen = this.#o.clock.now();
        if (this.#o.role === 'follower' && Number(body['version']) > this.#version) {
          this.#discoverDelay = 1000;
          this.#send('discover', { version: this.#version });
        }
        return;
      case 'discover':
        this.#count('discover', 'accepted');
        return this.#onDiscover(from);
      case 'status':
        this.#count('status', 'accepted');
        return this.#onStatus(env, body);
      case 'leave':
        this.#count('leave', 'accepted');
        this.#members.delete(env.nodeId);
    }
  }

  // Transient kinds carry (boot id, seq): a seq must grow within a boot,
  // and a new boot must come with a believable clock.
  #checkSequence(env: Envelope): RejectReason | null {
    const last = this.#seen.get(env.nodeId);
    if (last && last.bootId === env.bootId) {
      if (env.seq <= last.seq) return env.kind === 'config' ? null : 'replay';
    } else if (Math.abs(this.#o.clock.now() - env.timestamp) > (this.#o.maxSkewMs ?? 120_000)) {
      return env.kind === 'config' ? null : 'skew';
    }
    this.#seen.set(env.nodeId, { bootId: env.bootId, seq: Math.max(env.seq, last?.seq ?? 0) });
    return null;
  }

  #onStatus(env: Envelope, body: Record<string, unknown>): void {
    const num = (v: unknown): number => (Number.isSafeInteger(v) ? v as number : 0);
    this.#members.set(env.nodeId, {
      nodeId: env.nodeId,
      host: String(body['host'] ?? '').slice(0, 64),
      role: body['role'] === 'main' ? 'main' : 'follower',
      state: String(body['state'] ?? 'discovering') as MemberState,
      version: num(body['version']),
      unitsReady: num(body['ready']),
      unitsDesired: num(body['desired']),
      lastSeen: this.#o.clock.now(),
    });
  }

  #takeToken(address: string): boolean {
    const now = this.#o.clock.now();
    const b = this.#buckets.get(address) ?? { tokens: FLOOD_PER_SECOND, at: now };
    b.tokens = Math.min(FLOOD_PER_SECOND, b.tokens + ((now - b.at) / 1000) * FLOOD_PER_SECOND);
    b.at = now;
    this.#buckets.set(address, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  // -------------------------------------------------------------- sending

  #sendStatus(): void {
    const units = this.#o.units();
    this.#send('status', {
      role: this.#o.role, state: this.#state, version: this.#version,
      host: hostname().slice(0, 64), ready: units.ready, desired: units.desired,
    });
  }

  #encode(kind: MessageKind, body: unknown): Buffer {
    const signed = (kind === 'config' || kind === 'beacon') && this.#o.keyring.canSign();
    return encodeDatagram({
      kind, nodeId: this.#o.nodeId, bootId: this.#bootId, seq: ++this.#seq,
      timestamp: Math.floor(this.#o.clock.now()), cluster: this.#o.cluster,
    }, body, this.#o.keyring, signed ? 'ed25519' : 'hmac-sha256');
  }

  #send(kind: MessageKind, body: unknown, to?: { address: string; port: number }): void {
    if (this.#stopped) return;
    const datagram = this.#encode(kind, body);
    if (to) this.#o.transport.sendTo(datagram, to.address, to.port);
    else this.#o.transport.send(datagram);
    this.#sent.set(kind, (this.#sent.get(kind) ?? 0) + 1);
  }

  // ---------------------------------------------------------- bookkeeping

  #setState(state: MemberState): void {
    if (this.#state === state) return;
    this.#o.log.info({ from: this.#state, to: state, version: this.#version }, 'cluster: state');
    this.#state = state;
    this.#sendStatus();
  }

  #count(kind: string, result: string): void {
    const key = `${kind}:${result}`;
    this.#received.set(key, (this.#received.get(key) ?? 0) + 1);
  }

  // One log line per refusal, but at most one a second per reason, so a
  // flood shows in the counters without drowning the log.
  #reject(kind: string, reason: RejectReason, detail: string): void {
    this.#count(kind, reason);
    if (['stale', 'conflict', 'schema', 'limits', 'app_not_deployed', 'endpoint_not_allowed']
      .includes(reason)) this.#lastReject = `${reason}: ${detail}`;
    const now = this.#o.clock.now();
    if (now - (this.#logged.get(reason) ?? -Infinity) < 1000) return;
    this.#logged.set(reason, now);
    this.#o.log.warn({ kind, reason, detail }, 'cluster: datagram refused');
  }

  #after(ms: number, fn: () => void): void {
    const handle = this.#o.clock.setTimeout(() => {
      this.#timers.delete(handle);
      fn();
    }, Math.round(ms));
    this.#timers.add(handle);
  }

  #every(ms: number, fn: () => void): void {
    const tick = (): void => {
      if (this.#stopped) return;
      fn();
      this.#after(ms * (0.8 + this.#random() * 0.4), tick);
    };
    this.#after(ms * (0.8 + this.#random() * 0.4), tick);
  }
}
