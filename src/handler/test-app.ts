/**
 * The built-in app served when no --module is given: it shows everything
 * that arrived, as an HTML page or, with `?format=json`, as JSON. The
 * counterpart of the werkzeug test app that uWSGI serves.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { threadId } from 'node:worker_threads';
import { Mongrel2Socket } from './mongrel2-socket.js';

/** What the test app reports about one request. */
export interface TestAppReport {
  method: string;
  url: string;
  path: string;
  query: Record<string, string | string[]>;
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
  remoteAddress: string | undefined;
  scheme: 'http' | 'https';
  sender: string | null;
  connId: string | null;
  mongrel2: Record<string, string>;
  pid: number;
  thread: number;
}

function queryOf(url: URL): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = out[k];
    out[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  return out;
}

function report(req: IncomingMessage, bodyBytes: number): TestAppReport {
  const socket = req.socket;
  const m2 = socket instanceof Mongrel2Socket ? socket.mongrel2 : null;
  const url = new URL(req.url ?? '/', 'http://test-app.invalid');
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    path: url.pathname,
    query: queryOf(url),
    httpVersion: req.httpVersion,
    headers: { ...req.headers },
    bodyBytes,
    remoteAddress: socket.remoteAddress,
    scheme: (socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    sender: m2?.sender ?? null,
    connId: m2?.connId ?? null,
    mongrel2: m2?.mongrel2Headers ?? {},
    pid: process.pid,
    thread: threadId,
  };
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
};

function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function rows(title: string, entries: [string, unknown][]): string {
  const body = entries
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(
      Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : v,
    )}</td></tr>`)
    .join('\n');
  return `<h2>${escapeHtml(title)}</h2>\n<table>\n${body}\n</table>`;
}

function renderHtml(r: TestAppReport): string {
  const request: [string, unknown][] = [
    ['method', r.method], ['url', r.url], ['path', r.path],
    ['query', r.query], ['HTTP version', r.httpVersion],
    ['body bytes', r.bodyBytes], ['remote address', r.remoteAddress],
    ['scheme', r.scheme],
  ];
  const served: [string, unknown][] = [
    ['sender', r.sender], ['connection id', r.connId],
    ['process', r.pid], ['thread', r.thread],
  ];
  return [
    '<!doctype html>',
    '<html><head><meta charset="utf-8"><title>m2fleet test app</title>',
    '<style>body{font:14px sans-serif;margin:2em}th{text-align:left;'
      + 'padding-right:1em;vertical-align:top}td{font-family:monospace}</style>',
    '</head><body><h1>m2fleet test app</h1>',
    rows('Request', request),
    rows('Served by', served),
    rows('Mongrel2', Object.entries(r.mongrel2)),
    rows('Headers', Object.entries(r.headers)),
    '<p><a href="?format=json">as JSON</a></p></body></html>',
  ].join('\n');
}

/** The test app as a Node `(req, res)` handler. */
export function testApp(req: IncomingMessage, res: ServerResponse): void {
  let bodyBytes = 0;
  req.on('data', (chunk: Buffer) => { bodyBytes += chunk.length; });
  req.on('end', () => {
    const r = report(req, bodyBytes);
    const json = new URL(req.url ?? '/', 'http://x.invalid')
      .searchParams.get('format') === 'json';
    const body = json ? JSON.stringify(r, null, 2) + '\n' : renderHtml(r);
    res.writeHead(200, {
      'content-type': json ? 'application/json' : 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  });
}
