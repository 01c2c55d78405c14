import { AppError } from '../../errors.ts';
import type { Step } from '../context.ts';

/**
 * Decompression-bomb guard: a few kilobytes of PNG can declare a 100,000 x 100,000 canvas. The
 * declared size is checked against the limits before a single pixel is decoded.
 */
export const limits: Step = {
  name: 'limits',
  async run(ctx) {
    const meta = ctx.probe!;
    const { maxPixels, maxFrames } = ctx.task.limits;
    const pages = meta.pages ?? 1;
    const pixels = meta.width! * (meta.pageHeight ?? meta.height!);
    if (pixels > maxPixels) {
      throw new AppError(
        'TOO_MANY_PIXELS',
        `${meta.width}x${meta.pageHeight ?? meta.height} is over the limit of ${maxPixels} pixels.`,
      );
    }
    if (pages > maxFrames)
      throw new AppError('TOO_MANY_FRAMES', `${pages} frames is over the limit of ${maxFrames}.`);
  },
};
