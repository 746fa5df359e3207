/**
 * Kills a child process (and removes a directory) if the test process
 * dies without cleaning up: a tiny shell waits on a pipe from us, and a
 * pipe that closes without the word "ok" means we are gone.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';

/** Starts the watchdog for `pid`; call the returned function to disarm it. */
export function startWatchdog(pid: number, dir = ''): () => void {
  const script = 'read line; [ "$line" = ok ] || { kill -KILL "$1"; [ -n "$2" ] && rm -rf "$2"; }';
  const watchdog = spawn('/bin/sh', ['-c', script, 'm2-watchdog', String(pid), dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => { /* best effort */ });
  watchdog.stdin!.on('error', () => { /* watchdog already gone */ });
  watchdog.unref();
  (watchdog.stdin as unknown as Socket).unref();
  return () => { watchdog.stdin!.end('ok\n'); };
}
