#!/usr/bin/env node
/**
 * Writes a Mongrel2 configuration in m2sh's config language (the file that
 * `m2sh load -config m2.conf -db config.sqlite` reads). Shared by the test
 * harness (test/helpers/mongrel2.ts) and scripts/demo.sh, so both run
 * Mongrel2 the same way.
 *
 * As a command:
 *   node scripts/mongrel2-conf.mjs --port 6767 \
 *     --route '/=json,tcp://127.0.0.1:9999,tcp://127.0.0.1:9998,demo-ident' \
 *     --setting download.flow_control=1 [--uuid U] [--bind 127.0.0.1]
 * prints the config on stdout.
 */
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** Characters allowed inside a quoted m2sh string by this writer. */
const SAFE_TEXT = /^[A-Za-z0-9 _.,:;/@%+=()[\]{}^$|?*#&!~<>-]*$/;

/** Mongrel2 replies are refused unless the sender matches this (protocol §5.1). */
const IDENT = /^[A-Za-z0-9-]+$/;

/** Quotes a string for m2sh, refusing quotes, backslashes and control bytes. */
function quote(text) {
  if (typeof text !== 'string' || !SAFE_TEXT.test(text)) {
    throw new Error(`mongrel2 config: unsafe string ${JSON.stringify(text)}`);
  }
  return `"${text}"`;
}

/** Renders one setting value: integers bare, everything else quoted. */
function renderValue(value) {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new Error(`mongrel2 config: setting value ${value} is not an integer`);
    }
    return String(value);
  }
  return quote(String(value));
}

/** Renders one Handler(...) expression. */
function renderHandler(handler) {
  if (!IDENT.test(handler.sendIdent)) {
    throw new Error(`mongrel2 config: send_ident ${JSON.stringify(handler.sendIdent)} must match [A-Za-z0-9-]+`);
  }
  const recvIdent = handler.recvIdent ?? handler.sendIdent;
  const protocol = handler.protocol ?? 'json';
  return [
    'Handler(',
    `        send_spec=${quote(handler.sendSpec)},`,
    `        send_ident=${quote(handler.sendIdent)},`,
    `        recv_spec=${quote(handler.recvSpec)},`,
    `        recv_ident=${quote(recvIdent)},`,
    `        protocol=${quote(protocol)})`,
  ].join('\n');
}

/**
 * Returns the text of an m2sh config with one server and one host.
 *
 * options.port (required), options.routes (required: [{ path, handler:
 * { sendSpec, recvSpec, sendIdent, recvIdent?, protocol? } }]).
 * Defaults: uuid random, bindAddr '127.0.0.1', name 'main', chroot './',
 * host 'localhost', pid file '/run/mongrel2.pid', logs '/logs/access.log'
 * and '/logs/error.log' (paths are inside the chroot), settings {}.
 * recvIdent defaults to sendIdent. Throws on unsafe strings or idents.
 */
export function renderMongrel2Config(options) {
  const host = options.host ?? 'localhost';
  const routes = options.routes.map((route, i) =>
    `        ${quote(route.path)}: handler_${i}`);
  const handlers = options.routes.map((route, i) =>
    `handler_${i} = ${renderHandler(route.handler)}`);
  const settings = Object.entries(options.settings ?? {}).map(([key, value]) =>
    `    ${quote(key)}: ${renderValue(value)}`);

  return [
    ...handlers,
    '',
    `main = Server(`,
    `    uuid=${quote(options.uuid ?? randomUUID())},`,
    `    name=${quote(options.name ?? 'main')},`,
    `    bind_addr=${quote(options.bindAddr ?? '127.0.0.1')},`,
    `    port=${Number(options.port)},`,
    `    chroot=${quote(options.chroot ?? './')},`,
    `    pid_file=${quote(options.pidFile ?? '/run/mongrel2.pid')},`,
    `    access_log=${quote(options.accessLog ?? '/logs/access.log')},`,
    `    error_log=${quote(options.errorLog ?? '/logs/error.log')},`,
    `    default_host=${quote(host)},`,
    `    hosts=[Host(name=${quote(host)}, routes={`,
    routes.join(',\n'),
    '    })]',
    ')',
    '',
    'settings = {',
    settings.join(',\n'),
    '}',
    '',
    'servers = [main]',
    '',
  ].join('\n');
}

/** Returns the server uuid written in a config's text, or undefined. */
export function readServerUuid(configText) {
  return /uuid="([^"]+)"/.exec(configText)?.[1];
}

/** Parses `path=protocol,sendSpec,recvSpec,ident` from the command line. */
function parseRouteFlag(flag) {
  const eq = flag.indexOf('=');
  const [protocol, sendSpec, recvSpec, sendIdent] = flag.slice(eq + 1).split(',');
  if (eq < 1 || !sendIdent) {
    throw new Error(`--route must be path=protocol,sendSpec,recvSpec,ident; got ${flag}`);
  }
  return { path: flag.slice(0, eq), handler: { protocol, sendSpec, recvSpec, sendIdent } };
}

/** Parses `key=value`; an all-digit value becomes a number. */
function parseSettingFlag(flag) {
  const eq = flag.indexOf('=');
  if (eq < 1) throw new Error(`--setting must be key=value; got ${flag}`);
  const value = flag.slice(eq + 1);
  return [flag.slice(0, eq), /^\d+$/.test(value) ? Number(value) : value];
}

function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      bind: { type: 'string' },
      uuid: { type: 'string' },
      route: { type: 'string', multiple: true },
      setting: { type: 'string', multiple: true },
    },
  });
  if (!values.port || !values.route) throw new Error('need --port and --route');
  process.stdout.write(renderMongrel2Config({
    port: Number(values.port),
    bindAddr: values.bind,
    uuid: values.uuid,
    routes: values.route.map(parseRouteFlag),
    settings: Object.fromEntries((values.setting ?? []).map(parseSettingFlag)),
  }));
}

const isMain = process.argv[1] !== undefined &&
  realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`mongrel2-conf: ${err.message}\n`);
    process.exit(2);
  }
}
