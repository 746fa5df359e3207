/**
 * Cluster mode on one host: builds the keyring, transport, store and policy
 * from local settings, runs the cluster member, and turns what it adopts
 * into a running (or rolling) fleet. The main announces the configuration
 * it was started with; a follower runs whatever valid version it adopts.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ClusterMember, type ClusterSnapshot } from '../cluster/member.js';
import { defaultPolicy } from '../cluster/policy.js';
import { ClusterStore } from '../cluster/store.js';
import type { Clock, SharedConfig } from '../cluster/types.js';
import { createUdpTransport } from '../cluster/udp-transport.js';
import {
  Keyring, parseGroupKeysEnv, parseKeySpec, readGroupKeys, readSignKey, readVerifyKey,
} from '../cluster/keys.js';
import type { Logger } from '../handler/types.js';
import { M2FleetError } from '../handler/errors.js';
import { parseEndpointPairs, type ClusterSettings, type FleetConfig } from './config.js';
import type { Master } from './supervisor.js';

/** A running cluster member and its fleet. */
export interface ClusterNode {
  snapshot(): ClusterSnapshot;
  stop(): Promise<void>;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * Loads the cluster keys: group keys from --cluster-key-file or
 * M2FLEET_CLUSTER_KEY (never a command-line value), and the Ed25519 keys
 * of signed mode. Throws M2F_CLUSTER_KEY naming what is missing.
 */
export function loadKeyring(c: ClusterSettings, envKey: string | undefined): Keyring {
  let groupKeys;
  if (c.keyFile !== null) groupKeys = readGroupKeys(c.keyFile);
  else if (envKey !== undefined && envKey !== '') groupKeys = parseGroupKeysEnv(envKey);
  else {
    throw new M2FleetError('M2F_CLUSTER_KEY', 'cluster mode needs a key: give --cluster-key-file '
      + 'FILE (mode 0600, lines "ID BASE64") or set M2FLEET_CLUSTER_KEY; '
      + '`m2fleet cluster keygen` prints one');
  }
  return Keyring.create({
    groupKeys,
    ...(c.signKey ? { signKey: readSignKey(parseKeySpec(c.signKey)) } : {}),
    verifyKeys: c.verifyKeys.map((s) => readVerifyKey(parseKeySpec(s))),
  });
}

/** The part of the main's configuration that followers adopt. */
export function toShared(config: FleetConfig, cwd = process.cwd()): SharedConfig {
  let module = config.module;
  if (module !== null) {
    const colon = module.lastIndexOf(':');
    const named = colon > 0 && /^[A-Za-z_$][\w$]*$/.test(module.slice(colon + 1));
    const file = named ? module.slice(0, colon) : module;
    module = path.resolve(cwd, file) + (named ? module.slice(colon) : '');
  }
  return {
    zeromq: config.zeromq.map((e) => `${e.sendSpec},${e.recvSpec}`),
    module,
    processes: config.processes,
    threads: config.threads,
    maxRequests: config.maxRequests,
    reloadOnRss: config.reloadOnRssMb,
    harakiri: config.harakiriMs,
    mercy: config.mercyMs,
    interface: config.interface,
    flowControl: config.flowControl,
  };
}

/** This host's configuration with an adopted shared part applied. */
export function applyShared(local: FleetConfig, shared: SharedConfig): FleetConfig {
  return Object.freeze({
    ...local,
    zeromq: Object.freeze(parseEndpointPairs(shared.zeromq)),
    module: shared.module,
    processes: shared.processes,
    threads: shared.threads,
    maxRequests: shared.maxRequests,
    reloadOnRssMb: shared.reloadOnRss,
    harakiriMs: shared.harakiri,
    mercyMs: shared.mercy,
    interface: shared.interface,
    flowControl: shared.flowControl,
  });
}

function nodeIdOf(stateDir: string): string {
  const file = path.join(stateDir, 'node-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  } catch {
    // First start: make one.
  }
  const id = randomBytes(16).toString('hex');
  writeFileSync(file, id + '\n', { mode: 0o600 });
  return id;
}

/**
 * Starts cluster mode. `startFleet` starts (or returns) the local master
 * for a configuration; the main calls it at once, a follower on adoption.
 */
export async function startClusterNode(
  config: FleetConfig, log: Logger, envKey: string | undefined,
  startFleet: (config: FleetConfig) => Promise<Master>,
): Promise<ClusterNode> {
  const c = config.cluster!;
  const keyring = loadKeyring(c, envKey);
  const store = new ClusterStore(c.stateDir);
  const transport = await createUdpTransport({
    group: c.group, ttl: c.ttl, peers: [...c.peers], multicast: c.multicast,
    ...(c.iface !== null ? { iface: c.iface } : {}),
  });
  let master: Master | null = null;
  if (c.role === 'main') master = await startFleet(config);
  const member = new ClusterMember({
    role: c.role,
    cluster: c.name,
    nodeId: nodeIdOf(c.stateDir),
    transport, keyring, store,
    clock: realClock,
    policy: defaultPolicy(c.appRoots, c.endpointHosts),
    log: log.child({ component: 'cluster' }),
    requireMain: c.requireMain,
    ...(c.role === 'main' ? { config: toShared(config) } : {}),
    adopt: async (shared) => {
      const next = applyShared(config, shared);
      if (master === null) master = await startFleet(next);
      else master.reconfigure(next);
    },
    units: () => {
      const snap = master?.snapshot();
      const ready = snap?.processes.reduce((n, p) =>
        n + p.units.filter((u) => u.state === 'ready').length, 0) ?? 0;
      return { ready, desired: snap?.desiredUnits ?? 0 };
    },
  });
  await member.start();
  return {
    snapshot: () => member.snapshot(),
    stop: async () => {
      member.stop();
      await transport.close();
      await master?.stop();
    },
  };
}
