/**
 * What a follower agrees to run. A verified CONFIG is still only a
 * proposal: its document must match the schema exactly, stay within this
 * host's caps, name only tcp:// endpoints on allowed hosts, and name an
 * app that is already deployed inside one of this host's app roots. Code
 * never travels; a path is the most the network can say.
 */
import { createHash } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import type { RejectReason, SharedConfig } from './types.js';

/** This host's limits on adopted configurations. */
export interface LocalPolicy {
  /** Directories an adopted module must lie in (after resolving links). */
  readonly appRoots: readonly string[];
  /** Hosts allowed in adopted endpoints; empty = any host (tcp:// only). */
  readonly endpointHosts: readonly string[];
  readonly maxProcesses: number;
  readonly maxThreads: number;
}

/** A refusal, with the reason counted and logged. */
export interface Refusal {
  readonly ok: false;
  readonly reason: RejectReason;
  readonly detail: string;
}

/** The default caps: processes ≤ 2 × CPUs, threads ≤ 64. */
export function defaultPolicy(appRoots: readonly string[], endpointHosts: readonly string[] = []):
  LocalPolicy {
  return {
    appRoots, endpointHosts, maxProcesses: Math.max(1, 2 * cpus().length), maxThreads: 64,
  };
}

const KEYS: readonly (keyof SharedConfig)[] = [
  'zeromq', 'module', 'processes', 'threads', 'maxRequests', 'reloadOnRss', 'harakiri',
  'mercy', 'interface', 'flowControl',
];
const TCP = /^tcp:\/\/([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** sha256 of the canonical JSON of a shared config (keys in fixed order). */
export function digestOf(config: SharedConfig): string {
  const canonical = JSON.stringify(KEYS.map((k) => [k, config[k]]));
  return createHash('sha256').update(canonical).digest('hex');
}

function refuse(reason: RejectReason, detail: string): Refusal {
  return { ok: false, reason, detail };
}

function isCount(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}

function checkSchema(doc: Record<string, unknown>): Refusal | null {
  const extra = Object.keys(doc).filter((k) => !(KEYS as string[]).includes(k));
  if (extra.length > 0) return refuse('schema', `unknown fields: ${extra.join(', ')}`);
  const missing = KEYS.filter((k) => !(k in doc));
  if (missing.length > 0) return refuse('schema', `missing fields: ${missing.join(', ')}`);
  if (!Array.isArray(doc['zeromq']) || doc['zeromq'].length === 0
    || !doc['zeromq'].every((e) => typeof e === 'string')) {
    return refuse('schema', 'zeromq must be a non-empty list of strings');
  }
  if (doc['module'] !== null && typeof doc['module'] !== 'string') {
    return refuse('schema', 'module must be a string or null');
  }
  for (const k of ['processes', 'threads'] as const) {
    if (!isCount(doc[k], 1)) return refuse('schema', `${k} must be a whole number >= 1`);
  }
  for (const k of ['maxRequests', 'reloadOnRss', 'harakiri', 'mercy'] as const) {
    if (!isCount(doc[k], 0)) return refuse('schema', `${k} must be a whole number >= 0`);
  }
  if (!['auto', 'node', 'fetch'].includes(doc['interface'] as string)) {
    return refuse('schema', 'bad interface');
  }
  if (!['auto', 'on', 'off'].includes(doc['flowControl'] as string)) {
    return refuse('schema', 'bad flowControl');
  }
  return null;
}

function checkEndpoints(specs: readonly string[], policy: LocalPolicy): Refusal | null {
  for (const pair of specs) {
    for (const spec of pair.split(',')) {
      const m = TCP.exec(spec);
      if (!m || pair.split(',').length !== 2) {
        return refuse('endpoint_not_allowed', `${pair}: only tcp://HOST:PORT pairs`);
      }
      const host = m[1]!.replace(/^\[|\]$/g, '');
      if (policy.endpointHosts.length > 0 && !policy.endpointHosts.includes(host)) {
        return refuse('endpoint_not_allowed', `${spec}: host not in this node's allow-list`);
      }
    }
  }
  return null;
}

/**
 * Resolves an adopted module against the app roots: it must be an
 * absolute path (with an optional `:EXPORT`), no URL or package name,
 * exist as a file here, and lie inside a root once links are resolved.
 * Returns the local module spec to load.
 */
export function resolveModule(module: string, policy: LocalPolicy): string | Refusal {
  const colon = module.lastIndexOf(':');
  const exportName = colon > 0 && /^[A-Za-z_$][\w$]*$/.test(module.slice(colon + 1))
    ? module.slice(colon + 1) : null;
  const file = exportName === null ? module : module.slice(0, colon);
  if (SCHEME.test(file) || !path.isAbsolute(file)) {
    return refuse('schema', `module ${JSON.stringify(module)} is not an absolute path`);
  }
  let real: string;
  try {
    real = realpathSync(file);
    if (!statSync(real).isFile()) throw new Error('not a file');
  } catch {
    return refuse('app_not_deployed', `${file} is not deployed on this host`);
  }
  const inside = policy.appRoots.some((root) => {
    let r: string;
    try {
      r = realpathSync(root);
    } catch {
      return false;
    }
    return real.startsWith(r.endsWith(path.sep) ? r : r + path.sep);
  });
  if (!inside) {
    return refuse('app_not_deployed', `${file} is outside this node's app roots`);
  }
  return exportName === null ? real : `${real}:${exportName}`;
}

/**
 * Checks a CONFIG document: returns the config to adopt (with the module
 * resolved to this host's real path) or why it is refused.
 */
export function checkConfig(doc: unknown, policy: LocalPolicy):
  { ok: true; config: SharedConfig } | Refusal {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return refuse('schema', 'config must be an object');
  }
  const record = doc as Record<string, unknown>;
  const schema = checkSchema(record);
  if (schema) return schema;
  const config = record as unknown as SharedConfig;
  if (config.processes > policy.maxProcesses || config.threads > policy.maxThreads) {
    return refuse('limits', `${config.processes} processes × ${config.threads} threads is over `
      + `this node's caps (${policy.maxProcesses} × ${policy.maxThreads})`);
  }
  const endpoints = checkEndpoints(config.zeromq, policy);
  if (endpoints) return endpoints;
  if (config.module === null) return { ok: true, config };
  const module = resolveModule(config.module, policy);
  if (typeof module !== 'string') return module;
  return { ok: true, config: { ...config, module } };
}
