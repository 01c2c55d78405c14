import sharp from 'sharp';
import { AppError } from '../../errors.ts';
import type { Step } from '../context.ts';
import { decodeHeic } from '../heic.ts';

/** The long edge of the largest rendition; nothing downstream needs more pixels than this. */
export const PREVIEW_EDGE = 1280;

/**
 * Decodes once for every later step: upright (EXIF orientation applied), sRGB, 8 bits, scaled so the
 * long edge is at most PREVIEW_EDGE. Scaling while decoding lets libjpeg skip most of a large photo's
 * pixels (shrink-on-load), which is where most of the time would otherwise go.
 */
export const decode: Step = {
  name: 'decode',
  async run(ctx) {
    const meta = ctx.probe!;
    const { maxPixels } = ctx.task.limits;
    try {
      const needsOwnDecoder = meta.format === 'heif' && meta.compression === 'hevc';
      const source = needsOwnDecoder
        ? await decodeHeic(ctx.input, maxPixels)
        : sharp(ctx.input, { limitInputPixels: maxPixels, failOn: 'error' }).autoOrient();
      const { data, info } = await source
        .resize({ width: PREVIEW_EDGE, height: PREVIEW_EDGE, fit: 'inside', withoutEnlargement: true })
        .toColourspace('srgb')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      ctx.decoded = { data, width: info.width, height: info.height, channels: info.channels };
    } catch (error) {
      if (error instanceof AppError) throw error;
      throw new AppError('CORRUPT_IMAGE', `Decoding failed: ${(error as Error).message.split('\n')[0]}`);
    }
  },
};
