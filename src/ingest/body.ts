import { Readable } from 'node:stream';
import { AppError } from '../errors.ts';

/**
 * An HTTP upload's body, read under a watchdog: when no bytes arrive for `idleMs` the read fails
 * with BODY_TIMEOUT (408), and a connection that breaks mid-body fails with BODY_INCOMPLETE, so a
 * stalled client holds its upload slot for a bounded time and is answered in the catalogue's shape.
 * The source is never destroyed here: the answer still has to go out on its connection.
 *
 * The clock runs only while the reader wants bytes (not while it holds the body back), and one timer
 * is re-armed per chunk rather than a timer and a race made for each: an upload is hundreds of chunks.
 */
export function guardedBody(source: Readable, idleMs: number): Readable {
  let timer: NodeJS.Timeout | undefined;
  const stop = () => {
    clearTimeout(timer);
    timer = undefined;
    source.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    source.pause();
  };
  const body = new Readable({
    read() {
      arm();
      source.resume();
    },
    destroy(error, callback) {
      stop();
      callback(error);
    },
  });
  const arm = () => {
    if (timer) timer.refresh();
    else
      timer = setTimeout(
        () =>
          body.destroy(new AppError('BODY_TIMEOUT', `No bytes arrived for ${Math.round(idleMs / 1000)} s.`)),
        idleMs,
      );
  };
  const onData = (chunk: Buffer) => {
    if (body.push(chunk)) arm();
    else {
      // The reader is behind: wait for it, without the clock running against the client.
      clearTimeout(timer);
      timer = undefined;
      source.pause();
    }
  };
  const onEnd = () => {
    stop();
    body.push(null);
  };
  const onError = (error: Error) =>
    body.destroy(
      error instanceof AppError ? error : new AppError('BODY_INCOMPLETE', undefined, { cause: error }),
    );
  // A connection closed before the body's end, whether or not its stream reports an error first.
  const onClose = () => {
    if (!source.readableEnded) onError(new Error('the connection closed before the end of the body'));
  };
  if (source.destroyed && !source.readableEnded) process.nextTick(onClose);
  source.pause();
  source.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  return body;
}
