// A process and its descendants read from /proc: the server's node process with its embedded
// PostgreSQL (postmaster and backends) is one tree, so memory and CPU are measured for all of it.
import { readdirSync, readFileSync } from 'node:fs';

/** The pids of `root` and of every process descending from it, alive now. */
export function treePids(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
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
  return [...tree];
}

/** Resident bytes of a process and all its descendants. */
export function treeRss(root: number): number {
  let bytes = 0;
  for (const pid of treePids(root)) {
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      bytes += Number(rss?.[1] ?? 0) * 1024;
    } catch {
      // Gone.
    }
  }
  return bytes;
}

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

/**
 * CPU milliseconds (user + system) the tree has used: each live process's own time and that of its
 * children already ended and waited for (cutime, cstime), so a backend that quits is still counted.
 * `name` tells which process a figure belongs to, to split the server's from PostgreSQL's.
 */
export function treeCpuMs(root: number): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  for (const pid of treePids(root)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name and state.
      const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
      out.set(pid, { name, ms: (ticks * 1000) / TICKS_PER_SECOND });
    } catch {
      // Gone.
    }
  }
  return out;
}

/** CPU ms used between two readings of treeCpuMs, by kind: node (the server) and postgres. */
export function cpuBetween(
  before: Map<number, { name: string; ms: number }>,
  after: Map<number, { name: string; ms: number }>,
): { node: number; postgres: number } {
  const used = { node: 0, postgres: 0 };
  for (const [pid, { name, ms }] of after) {
    const spent = ms - (before.get(pid)?.ms ?? 0);
    if (name.startsWith('postgres')) used.postgres += spent;
    else used.node += spent;
  }
  return used;
}

/** CPU ms (user + system) of each thread of one process, summed by thread name (main, libuv, V8, vips...). */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
      out.set(name, (out.get(name) ?? 0) + ms);
    } catch {
      // Gone.
    }
  }
  return out;
}
