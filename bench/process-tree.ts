// A process and its descendants, read from /proc (Linux): what a benchmark charges to a server
// whose work is spread over child processes (the embedded PostgreSQL's backends, worker threads'
// processes, services).
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every Linux Node runs on). */
const TICKS_PER_SECOND = 100;

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // The process ended while we looked.
  }
}

/** `root` and every process under it, but not those under `exclude`. */
export function processTree(root: number, exclude: number[] = []): Set<number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields) parents.set(Number(entry), Number(fields[1]));
  }
  const left = new Set(exclude);
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents)
      if (tree.has(parent) && !tree.has(pid) && !left.has(pid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return tree;
}

/** Resident bytes of the processes. */
export function rssOf(pids: Iterable<number>): number {
  let bytes = 0;
  for (const pid of pids) {
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      bytes += Number(rss?.[1] ?? 0) * 1024;
    } catch {
      // Gone.
    }
  }
  return bytes;
}

/** CPU seconds (user and system) the processes have used, each by pid. */
/**
 * Proportional resident bytes (Pss) of these processes: a page shared by n of them counts 1/n in
 * each, so shared memory (PostgreSQL's shared buffers, mapped by every backend) counts once in
 * the sum, where summed RSS counts it once per process that touched it.
 */
export function pssOf(pids: Iterable<number>): number {
  let bytes = 0;
  for (const pid of pids) {
    try {
      const pss = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      bytes += Number(pss?.[1] ?? 0) * 1024;
    } catch {
      // Gone.
    }
  }
  return bytes;
}

export function cpuSecondsOf(pids: Iterable<number>): Map<number, number> {
  const seconds = new Map<number, number>();
  for (const pid of pids) {
    const fields = statFields(pid);
    // utime and stime are fields 14 and 15 of stat; here, after pid and comm, 11 and 12.
    if (fields) seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND);
  }
  return seconds;
}

/**
 * CPU seconds a set of processes used between two readings; processes that started meanwhile count
 * in full, those that ended count up to the first reading only (their last ticks are lost).
 */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}

/**
 * CPU milliseconds of each process with its name: its own user and system time and that of its
 * children it has waited for (cutime, cstime), so a PostgreSQL backend that ended still counts.
 */
export function namedCpuMs(pids: Iterable<number>): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after pid and comm.
      const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
      out.set(pid, { name, ms: (ticks * 1000) / TICKS_PER_SECOND });
    } catch {
      // Gone.
    }
  }
  return out;
}

/** CPU ms used between two readings of namedCpuMs: PostgreSQL's processes apart from the rest (node). */
export function cpuByKindBetween(
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

/** CPU ms of each thread of one process, summed by thread name (MainThread, libuv-worker, V8Worker...). */
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
      out.set(
        name,
        (out.get(name) ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND,
      );
    } catch {
      // Gone.
    }
  }
  return out;
}
