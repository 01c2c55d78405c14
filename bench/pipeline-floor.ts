// The floor under bench/pipeline.ts's platform side: what a photo costs with only what every
// landing over HTTP must do before its 202 (read the body, SHA-256 it, write it to a file, fsync the
// file and its folder) and then bare sharp's image work on it, read back from its file, as many at
// once as the platform has pipeline threads. No catalog, queue, worker threads or derived files.
//
// Timed beside bare sharp in the same run, it says how much of the platform's distance to bare sharp
// any platform that keeps the same promise (a durable original before the 202) would have on this
// machine: the client's sending and the landing's CPU share the cores with the image work.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { makeDurable } from './durable.ts';

export interface BareLanding {
  url: string;
  /** Resolves once `count` uploads are landed and processed; rejects on the first failure. */
  processed(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function startBareLanding(
  dir: string,
  work: (path: string) => Promise<void>,
  atOnce: number,
): Promise<BareLanding> {
  let landed = 0;
  let done = 0;
  let running = 0;
  let failure: Error | undefined;
  const queue: string[] = [];
  const waiting: Array<{ count: number; resolve: () => void; reject: (error: Error) => void }> = [];

  const settle = () => {
    for (const w of [...waiting]) {
      if (failure) w.reject(failure);
      else if (done >= w.count) w.resolve();
      else continue;
      waiting.splice(waiting.indexOf(w), 1);
    }
  };
  const pump = () => {
    while (running < atOnce && queue.length > 0) {
      const path = queue.shift()!;
      running++;
      work(path)
        .then(
          () => {
            done++;
          },
          (error: Error) => {
            failure ??= error;
          },
        )
        .finally(() => {
          running--;
          settle();
          pump();
        });
    }
  };

  const server = createServer((request, response) => {
    const id = landed++;
    const path = join(dir, `${id}.bin`);
    const hash = createHash('sha256');
    request.on('data', (chunk: Buffer) => hash.update(chunk));
    pipeline(request, createWriteStream(path))
      .then(async () => {
        hash.digest('hex');
        await makeDurable(path, dir);
        response
          .writeHead(202, { 'content-type': 'application/json' })
          .end(JSON.stringify({ id: String(id) }));
        queue.push(path);
        pump();
      })
      .catch((error: Error) => {
        failure ??= error;
        settle();
        response.writeHead(500).end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    processed: (count) =>
      new Promise((resolve, reject) => {
        waiting.push({ count, resolve, reject });
        settle();
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
