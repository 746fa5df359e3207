/**
 * The CPU scheduling policy of the fleet. Every request crosses several
 * threads (Mongrel2's reader and forwarder in the master, ZeroMQ's I/O
 * threads, the unit); under the default policy each hand-over wakes the
 * next thread at once and preempts the one handing over, so on a busy core
 * a batch of messages is carried across one message at a time.
 * SCHED_BATCH (Linux) keeps the woken thread waiting until the running one
 * yields, which lets each thread take the messages queued meanwhile in one
 * go. It needs no privilege and changes no priority; docs/bench.md shows
 * its effect.
 *
 * Node has no call for sched_setscheduler, so util-linux's chrt applies
 * it to every thread of the master; threads and processes started later
 * inherit it (fork and exec keep the policy).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from '../handler/types.js';

export type SchedPolicy = 'batch' | 'inherit';

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

/** This thread's policy number as Linux reports it, or null. */
function currentPolicy(): number | null {
  try {
    const m = /^policy\s*:\s*(\d+)/m.exec(readFileSync('/proc/self/sched', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Applies `policy` to every thread of this process; never throws. */
export function applySchedPolicy(policy: SchedPolicy, log: Logger): boolean {
  if (policy === 'inherit') return true;
  if (process.platform !== 'linux') {
    log.info({ policy, platform: process.platform },
      'CPU scheduling policy is Linux only; not set');
    return false;
  }
  // Started under another policy than the default (SCHED_IDLE, a real-time
  // one): say that it is replaced, and how to keep it.
  const before = currentPolicy();
  if (before !== null && before !== SCHED_OTHER && before !== SCHED_BATCH) {
    log.info({ policy, was: before }, 'replacing the CPU scheduling policy m2fleet was started '
      + 'with (--sched-policy inherit keeps it)');
  }
  const run = spawnSync('chrt', ['--all-tasks', '--batch', '--pid', '0', String(process.pid)], {
    encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (run.error || run.status !== 0) {
    // One line: a chrt that is not util-linux's may print its whole usage.
    const said = (run.stderr ?? '').trim().split('\n')[0]?.slice(0, 200);
    const reason = run.error ? run.error.message : said || `exit ${run.status}`;
    log.warn({ policy, reason }, 'cannot set the CPU scheduling policy; keeping the current one');
    return false;
  }
  log.debug({ policy }, 'CPU scheduling policy set');
  return true;
}
