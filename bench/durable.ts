// Durable writes as the benchmarks' bare programs (the floors and baselines) make them, with
// node:fs alone: what the fs lake (src/lake/fs.ts) does for each original, without the lake.
import { open, rename } from 'node:fs/promises';

/** fsync of a file or a folder: its data, or its entries. */
async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A written file's bytes, then its name in its folder `dir`, on disk, as a landing makes them. */
export async function makeDurable(path: string, dir: string): Promise<void> {
  await fsync(path);
  await fsync(dir);
}

/** A body made durable as the fs lake makes it: a temporary file written, fsynced, renamed, its folder fsynced. */
export async function writeDurably(body: Buffer, path: string, dir: string): Promise<void> {
  const temp = `${path}.tmp`;
  const file = await open(temp, 'wx');
  try {
    for (let written = 0; written < body.length; )
      written += (await file.write(body, written, body.length - written)).bytesWritten;
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
  await fsync(dir);
}
