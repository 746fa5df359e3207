/**
 * What Linux says about a process tree: CPU time (utime + stime from
 * /proc/PID/stat, all threads included) and resident memory (VmRSS from
 * /proc/PID/status). Used to charge the handler's CPU per request.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux x86-64). */
export const CLOCK_TICKS = 100;

/** The fields of /proc/PID/stat after the command name. */
function statFields(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name is in parentheses and may hold spaces.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU seconds a process has used (user + system), or 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  // After ")": state ppid ... utime is field 14 of the whole line, i.e. 11 here.
  return f ? (Number(f[11]) + Number(f[12])) / CLOCK_TICKS : 0;
}

/** CPU seconds of one thread (`/proc/PID/task/TID/stat`), or 0 when gone. */
function threadCpuSeconds(pid: number, tid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** The thread's name (`comm`: node, ZMQbg/IO/0, libuv-worker, ...). */
function threadName(pid: number, tid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').trim();
  } catch {
    return '?';
  }
}

/** CPU seconds per thread of the given processes, keyed "pid/tid name". */
export function threadCpu(pids: readonly number[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of pids) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const tid = Number(t);
      out.set(`${pid}/${tid} ${threadName(pid, tid)}`, threadCpuSeconds(pid, tid));
    }
  }
  return out;
}

/** The parent pid of a process, or -1 when it is gone. */
export function parentPid(pid: number): number {
  const f = statFields(pid);
  return f ? Number(f[1]) : -1;
}

/** The process and all its descendants alive now, root first. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const ppid = parentPid(pid);
    if (ppid <= 0) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const walk = (pid: number): void => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) walk(child);
  };
  if (parentPid(root) >= 0) walk(root);
  return out;
}

/** Resident memory of a process in MiB, or 0 when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds per pid of a tree, for before/after differences. */
export function treeCpu(pids: readonly number[]): Map<number, number> {
  return new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
}
