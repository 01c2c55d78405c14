import sharp from 'sharp';
import { AppError } from '../../errors.ts';
import type { Step } from '../context.ts';

/** Reads the header only (no pixels), so limits can be checked before anything large is decoded. */
export const probe: Step = {
  name: 'probe',
  async run(ctx) {
    try {
      ctx.probe = await sharp(ctx.input, { limitInputPixels: false }).metadata();
    } catch (error) {
      throw new AppError(
        'CORRUPT_IMAGE',
        `The header could not be read: ${(error as Error).message.split('\n')[0]}`,
      );
    }
    if (!ctx.probe.width || !ctx.probe.height)
      throw new AppError('CORRUPT_IMAGE', 'The image declares no dimensions.');
  },
};
