import { readdir, readFile } from 'node:fs/promises';

/** How often the groups are measured; one scan of /proc serves every command process at once. */
const GROUP_SAMPLE_MS = 500;

/**
 * Resident memory of whole process groups, for command processors that start processes of their
 * own (a Python multiprocessing pool, ImageMagick or exiftool run as subprocesses). Each command is
 * the leader of its own group, so its group id is its pid. The kernel here may not expose a
 * process's children, so this reads every /proc/PID/stat once per sample, and VmRSS only for the
 * members of a watched group. Without /proc (not Linux) nothing is measured.
 */
class GroupMemory {
  private readonly watched = new Map<number, (bytes: number) => void>();
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  /** Calls `onSample` with the group's resident bytes about every half second until unwatched. */
  watch(pgid: number, onSample: (bytes: number) => void): () => void {
    this.watched.set(pgid, onSample);
    this.timer ??= setInterval(() => void this.sample(), GROUP_SAMPLE_MS).unref();
    return () => {
      this.watched.delete(pgid);
      if (this.watched.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const totals = await groupTotals(new Set(this.watched.keys()));
      for (const [pgid, onSample] of this.watched) onSample(totals.get(pgid) ?? 0);
    } finally {
      this.sampling = false;
    }
  }
}

/** Resident bytes per process group, for the groups asked about. */
export async function groupTotals(groups: ReadonlySet<number>): Promise<Map<number, number>> {
  const totals = new Map<number, number>();
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return totals;
  }
  await Promise.all(
    entries.map(async (entry) => {
      if (entry.charCodeAt(0) > 57) return; // not a pid
      const stat = await readFile(`/proc/${entry}/stat`, 'latin1').catch(() => undefined);
      if (!stat) return;
      // The command name, in parentheses, may hold spaces; the fields after it are: state ppid pgrp.
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3)[2]);
      if (!groups.has(pgrp)) return;
      const status = await readFile(`/proc/${entry}/status`, 'latin1').catch(() => '');
      const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
      totals.set(pgrp, (totals.get(pgrp) ?? 0) + kb * 1024);
    }),
  );
  return totals;
}

export const groupMemory = new GroupMemory();
