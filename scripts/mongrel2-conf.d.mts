/** Types for scripts/mongrel2-conf.mjs (see the doc comments there). */

/** One Mongrel2 Handler entry. */
export interface Mongrel2HandlerConfig {
  /** Wire: send_spec, where Mongrel2 binds its PUSH (requests). */
  sendSpec: string;
  /** Wire: recv_spec, where Mongrel2 binds its SUB (replies). */
  recvSpec: string;
  /** Wire: send_ident, first token of each request; [A-Za-z0-9-]+. */
  sendIdent: string;
  /** Wire: recv_ident, the SUB prefix filter. Default: sendIdent. */
  recvIdent?: string;
  /** Wire: protocol. Default 'json'. */
  protocol?: 'json' | 'tnetstring';
}

/** One route of the single host. */
export interface Mongrel2RouteConfig {
  path: string;
  handler: Mongrel2HandlerConfig;
}

/** Options of renderMongrel2Config; defaults are listed there. */
export interface Mongrel2ConfigOptions {
  port: number;
  routes: Mongrel2RouteConfig[];
  uuid?: string;
  name?: string;
  bindAddr?: string;
  chroot?: string;
  host?: string;
  pidFile?: string;
  accessLog?: string;
  errorLog?: string;
  settings?: Record<string, string | number>;
}

/** Returns the text of an m2sh config. Throws on unsafe strings or idents. */
export function renderMongrel2Config(options: Mongrel2ConfigOptions): string;

/** Returns the server uuid written in a config's text, or undefined. */
export function readServerUuid(configText: string): string | undefined;
