/**
 * Error codes raised by the node side (CLI, config, master, stats, logs)
 * and by cluster mode, beside the handler's protocol codes in
 * src/handler/errors.ts. Every code
 * is an M2FleetError `code`; the test keeps this list and src/ in step.
 */
export const NODE_ERROR_CODES = [
  'M2F_CLUSTER_BAD_GROUP',
  'M2F_CLUSTER_BAD_TTL',
  'M2F_CLUSTER_BIND',
  'M2F_CLUSTER_ENVELOPE',
  'M2F_CLUSTER_IFACE_AMBIGUOUS',
  'M2F_CLUSTER_IFACE_NOT_FOUND',
  'M2F_CLUSTER_KEY',
  'M2F_CLUSTER_MEMBERSHIP',
  'M2F_CLUSTER_OVERSIZE',
  'M2F_CONFIG',
  'M2F_CONFIG_FILE',
  'M2F_LISTEN',
  'M2F_LOG_ENDPOINT',
  'M2F_STATS_PUBLIC',
  'M2F_STATUS_BAD_REPLY',
  'M2F_STATUS_UNREACHABLE',
  'M2F_STATUS_URL',
] as const;

/** One of {@link NODE_ERROR_CODES}. */
export type NodeErrorCode = (typeof NODE_ERROR_CODES)[number];
