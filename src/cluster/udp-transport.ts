/**
 * The real datagram transport: one UDP socket bound to the group port on
 * the wildcard address, a member of the multicast group on one interface,
 * plus optional unicast copies to a fixed peer list.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { M2FleetError } from '../handler/errors.js';
import type { Transport } from './types.js';

/** One unicast destination that gets a copy of every `send()`. */
export interface UdpPeer {
  address: string;
  port: number;
}

/** Options of {@link createUdpTransport}. */
export interface UdpTransportOptions {
  /** `239.1.2.3:1717`, `225.1.1.1:1717` or `[ff15::1234]:1717`. */
  group: string;
  /**
   * IPv4: a local interface address or name; IPv6: the interface name
   * (the zone). Default: {@link chooseInterface} with nothing requested.
   */
  iface?: string;
  /** IP_MULTICAST_TTL of outgoing multicast. Default 1 (this link only). */
  ttl?: number;
  /** Unicast copies of every `send()`. Default none. */
  peers?: UdpPeer[];
  /** Default true; false = no group membership, peers only. */
  multicast?: boolean;
  /** IP_MULTICAST_LOOP: receive our own multicast. Default true. */
  loopback?: boolean;
}

/** A parsed group: address, port and IP family. */
export interface MulticastGroup {
  address: string;
  port: number;
  family: 4 | 6;
}

/** A local interface picked for cluster traffic. */
export interface ChosenInterface {
  /** An IPv4 address of the interface (IPv6 if it has no IPv4). */
  address: string;
  name: string;
}

/**
 * Parses `a.b.c.d:port` or `[v6]:port` and checks that the address is a
 * multicast one (224.0.0.0/4 or ff00::/8) and the port is 1-65535.
 * Throws M2F_CLUSTER_BAD_GROUP.
 */
export function parseGroup(group: string): MulticastGroup {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(group);
  const address = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  const family = address === undefined ? 0 : isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;

  if (family === 0 || !(port >= 1 && port <= 65535)) {
    throw badGroup(group, 'expected a.b.c.d:port or [v6]:port');
  }
  if (family === 4 && !isIPv4Multicast(address!)) {
    throw badGroup(group, 'not an IPv4 multicast address (224.0.0.0/4)');
  }
  if (family === 6 && !address!.toLowerCase().startsWith('ff')) {
    throw badGroup(group, 'not an IPv6 multicast address (ff00::/8)');
  }
  return { address: address!, port, family };
}

function isIPv4Multicast(address: string): boolean {
  const first = Number(address.split('.')[0]);
  return first >= 224 && first <= 239;
}

function badGroup(group: string, why: string): M2FleetError {
  return new M2FleetError(
    'M2F_CLUSTER_BAD_GROUP',
    `cluster group ${JSON.stringify(group)} is invalid: ${why}`,
    { value: group },
  );
}

/**
 * Picks the interface for cluster traffic from os.networkInterfaces().
 * With `requested` (a name or an address) uses that interface, or throws
 * M2F_CLUSTER_IFACE_NOT_FOUND. With nothing requested: the only
 * non-internal IPv4 interface if there is exactly one; loopback if there
 * is none; and if there are several it refuses to guess and throws
 * M2F_CLUSTER_IFACE_AMBIGUOUS listing the candidates.
 */
export function chooseInterface(requested: string | undefined): ChosenInterface {
  const all = Object.entries(networkInterfaces()).flatMap(([name, infos]) =>
    (infos ?? []).map((info) => ({ name, info })),
  );

  if (requested !== undefined) {
    const byName = all.filter((entry) => entry.name === requested);
    const found =
      byName.find((entry) => entry.info.family === 'IPv4') ??
      byName[0] ??
      all.find((entry) => entry.info.address === requested);
    if (found === undefined) {
      const names = [...new Set(all.map((entry) => entry.name))].join(', ');
      throw new M2FleetError(
        'M2F_CLUSTER_IFACE_NOT_FOUND',
        `cluster interface ${JSON.stringify(requested)} is not a local interface name or address (have: ${names})`,
        { value: requested },
      );
    }
    return { address: found.info.address, name: found.name };
  }

  const external = all.filter((e) => e.info.family === 'IPv4' && !e.info.internal);
  if (external.length === 1) {
    return { address: external[0]!.info.address, name: external[0]!.name };
  }
  if (external.length > 1) {
    const list = external.map((e) => `${e.name} (${e.info.address})`).join(', ');
    throw new M2FleetError(
      'M2F_CLUSTER_IFACE_AMBIGUOUS',
      `several network interfaces could carry cluster traffic; choose one with --cluster-iface: ${list}`,
      { value: list },
    );
  }

  const loopback = all.find((e) => e.info.family === 'IPv4' && e.info.internal);
  return loopback === undefined
    ? { address: '127.0.0.1', name: 'lo' }
    : { address: loopback.info.address, name: loopback.name };
}

/**
 * Opens the cluster socket: binds the group port on the wildcard address
 * with SO_REUSEADDR (so several nodes on one host can share it), joins
 * the group on the chosen interface and sends multicast out of it.
 * `send()` goes to the group (unless `multicast: false`) and to every
 * peer; `sendTo()` is one unicast datagram. A failed send is a lost
 * datagram, like any other on UDP, and is not reported.
 * Throws M2F_CLUSTER_BAD_GROUP, M2F_CLUSTER_IFACE_*, M2F_CLUSTER_BIND
 * (port taken, e.g. EADDRINUSE) or M2F_CLUSTER_MEMBERSHIP.
 */
export async function createUdpTransport(options: UdpTransportOptions): Promise<Transport> {
  const group = parseGroup(options.group);
  const multicast = options.multicast ?? true;
  const ttl = options.ttl ?? 1;
  const peers = [...(options.peers ?? [])];
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 255) {
    throw new M2FleetError('M2F_CLUSTER_BAD_TTL', `cluster TTL ${ttl} is not an integer 0-255`, {
      value: String(ttl),
    });
  }

  const socket = createSocket({ type: group.family === 4 ? 'udp4' : 'udp6', reuseAddr: true });
  await bindSocket(socket, group);
  if (multicast) {
    try {
      joinGroup(socket, group, options.iface, ttl, options.loopback ?? true);
    } catch (error) {
      socket.close();
      throw error;
    }
  }
  return wrapSocket(socket, group, multicast, peers);
}

function bindSocket(socket: Socket, group: MulticastGroup): Promise<void> {
  const address = group.family === 4 ? '0.0.0.0' : '::';
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      socket.close();
      reject(
        new M2FleetError(
          'M2F_CLUSTER_BIND',
          `cannot bind the cluster socket to ${address} port ${group.port}: ${error.code ?? error.message}`,
          { value: `${address}:${group.port}` },
        ),
      );
    };
    socket.once('error', onError);
    socket.bind({ port: group.port, address, exclusive: false }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

/** Joins the group and sets the outgoing interface, TTL and loop flag. */
function joinGroup(
  socket: Socket,
  group: MulticastGroup,
  iface: string | undefined,
  ttl: number,
  loopback: boolean,
): void {
  // IPv4 names an interface by one of its addresses; IPv6 by its zone.
  const local =
    group.family === 4
      ? chooseInterface(iface).address
      : `::%${iface ?? chooseInterface(undefined).name}`;
  try {
    socket.addMembership(group.address, local);
    socket.setMulticastInterface(local);
    socket.setMulticastTTL(ttl);
    socket.setMulticastLoopback(loopback);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new M2FleetError(
      'M2F_CLUSTER_MEMBERSHIP',
      `cannot join cluster group ${group.address} on interface ${local}: ${code}`,
      { value: `${group.address}@${local}` },
    );
  }
}

function wrapSocket(
  socket: Socket,
  group: MulticastGroup,
  multicast: boolean,
  peers: UdpPeer[],
): Transport {
  let closed = false;
  let receiver: ((datagram: Buffer, from: UdpPeer) => void) | undefined;

  // Errors after bind are lost datagrams (ENETUNREACH, EPERM from a
  // filter); UDP gives no delivery promise, the protocol repeats itself.
  socket.on('error', () => {});
  socket.on('message', (datagram, info) => {
    receiver?.(datagram, { address: info.address, port: info.port });
  });
  const sendOne = (datagram: Buffer, address: string, port: number): void => {
    if (closed) return;
    socket.send(datagram, port, address, () => {});
  };

  return {
    send(datagram) {
      if (multicast) sendOne(datagram, group.address, group.port);
      for (const peer of peers) sendOne(datagram, peer.address, peer.port);
    },
    sendTo(datagram, address, port) {
      sendOne(datagram, address, port);
    },
    onMessage(handler) {
      receiver = handler;
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve) => socket.close(() => resolve()));
    },
  };
}
