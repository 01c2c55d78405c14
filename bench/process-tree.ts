// A process and its descendants, read from /proc (Linux): what the benchmarks that measure a server
// with its embedded PostgreSQL add up (resident memory, CPU time).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux the project runs on

/** The pids of `root` and every process below it. */
export function processTree(root: number): Set<number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parents.set(Number(entry), Number(statFields(Number(entry))[1]));
    } catch {
      // The process ended while we looked.
    }
  }
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents)
      if (tree.has(parent) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return tree;
}

/** Resident bytes of a process and all its descendants. */
export function treeRss(root: number): number {
  let bytes = 0;
  for (const pid of processTree(root)) {
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      bytes += Number(rss?.[1] ?? 0) * 1024;
    } catch {
      // Gone.
    }
  }
  return bytes;
}

/**
 * CPU milliseconds (user and system) of the descendants of `root`, not `root` itself, with what
 * their own ended children used (a PostgreSQL backend that came and went is in its postmaster's).
 */
export function descendantsCpuMs(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    if (pid === root) continue;
    try {
      const f = statFields(pid);
      // After the ')' : state ppid ... utime is field 14 of stat, so index 11 here; then stime, cutime, cstime.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // Gone.
    }
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

// The fields after the command name, which may itself hold spaces and parentheses.
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}
