import sharp from 'sharp';
import { AppError } from '../../errors.ts';
import { sequenceSize } from '../avif-sequence.ts';
import type { Step } from '../context.ts';
import { gifCanvas, isAvifSequence, libvipsReads, readTiff, stillOfAvifSequence } from '../variants.ts';

/**
 * Reads the header only (no pixels), so limits can be checked before anything large is decoded. A
 * TIFF whose header libvips refuses is read by the fallback (variants.ts), which decode then uses.
 */
export const probe: Step = {
  name: 'probe',
  async run(ctx) {
    try {
      ctx.probe = await sharp(ctx.input, { limitInputPixels: false }).metadata();
      if (ctx.probe.format === 'tiff') {
        const tiff = readTiff(ctx.input);
        if (tiff && !libvipsReads(tiff)) ctx.tiff = tiff;
      }
    } catch (error) {
      const tiff = readTiff(ctx.input);
      if (tiff) {
        ctx.tiff = tiff;
        ctx.probe = { format: 'tiff', width: tiff.width, height: tiff.height, pages: 1 } as typeof ctx.probe;
      } else if (isAvifSequence(ctx.input)) {
        // Its first frame, as the still image the file carries for still decoders; or none.
        const still = stillOfAvifSequence(ctx.input);
        if (still) {
          ctx.decodeInput = still;
          ctx.probe = await sharp(still, { limitInputPixels: false }).metadata();
        } else {
          // No still image: the first frame, decoded by libavif; its size from the track header.
          const size = sequenceSize(ctx.input);
          if (!size)
            throw new AppError('CORRUPT_IMAGE', 'The AVIF image sequence has no track with a picture size.');
          ctx.avifSequence = true;
          ctx.probe = { format: 'heif', compression: 'av1', ...size, pages: 1 } as typeof ctx.probe;
        }
      } else {
        throw new AppError(
          'CORRUPT_IMAGE',
          `The header could not be read: ${(error as Error).message.split('\n')[0]}`,
        );
      }
    }
    const canvas = ctx.probe?.format === 'gif' ? gifCanvas(ctx.input) : undefined;
    if (
      canvas &&
      ctx.probe &&
      (ctx.probe.width! > canvas.width || (ctx.probe.pageHeight ?? ctx.probe.height!) > canvas.height)
    ) {
      ctx.canvas = canvas;
      ctx.probe = {
        ...ctx.probe,
        width: canvas.width,
        height: canvas.height,
        pageHeight: canvas.height,
        autoOrient: { width: canvas.width, height: canvas.height },
      };
    }
    if (!ctx.probe?.width || !ctx.probe.height)
      throw new AppError('CORRUPT_IMAGE', 'The image declares no dimensions.');
  },
};
