import { Readable } from 'node:stream';
import { AppError } from '../errors.ts';

/**
 * An HTTP upload's body, read under a watchdog: when no bytes arrive for `idleMs` the read fails
 * with BODY_TIMEOUT (408), and a connection that breaks mid-body fails with BODY_INCOMPLETE, so a
 * stalled client holds its upload slot for a bounded time and is answered in the catalogue's shape.
 * The source is never destroyed here: the answer still has to go out on its connection.
 */
export function guardedBody(source: Readable, idleMs: number): Readable {
  return Readable.from(watch(source, idleMs), { objectMode: false });
}

async function* watch(source: Readable, idleMs: number): AsyncGenerator<Buffer> {
  const chunks = source[Symbol.asyncIterator]();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new AppError('BODY_TIMEOUT', `No bytes arrived for ${Math.round(idleMs / 1000)} s.`)),
        idleMs,
      );
    });
    let next: IteratorResult<unknown>;
    try {
      next = await Promise.race([chunks.next(), stalled]);
    } catch (error) {
      if (error instanceof AppError) throw error;
      throw new AppError('BODY_INCOMPLETE', undefined, { cause: error });
    } finally {
      clearTimeout(timer);
    }
    if (next.done) return;
    yield next.value as Buffer;
  }
}
