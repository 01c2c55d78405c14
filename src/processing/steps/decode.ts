import sharp, { type Sharp } from 'sharp';
import { AppError } from '../../errors.ts';
import { decodeAvifSequence } from '../avif-sequence.ts';
import type { Step } from '../context.ts';
import { decodeHeic } from '../heic.ts';
import { decodeTiffVariant, readTiff, scaleUnitFloat } from '../variants.ts';

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
    const toDecoded = async (source: Sharp) => {
      if (ctx.canvas) source.extract({ left: 0, top: 0, ...ctx.canvas });
      const { data, info } = await source
        .resize({ width: PREVIEW_EDGE, height: PREVIEW_EDGE, fit: 'inside', withoutEnlargement: true })
        .toColourspace('srgb')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      ctx.decoded = { data, width: info.width, height: info.height, channels: info.channels };
    };
    try {
      const needsOwnDecoder = meta.format === 'heif' && meta.compression === 'hevc';
      const source = ctx.tiff
        ? await decodeTiffVariant(ctx.input, ctx.tiff, maxPixels)
        : ctx.avifSequence
          ? await decodeAvifSequence(ctx.input, maxPixels)
          : needsOwnDecoder
            ? await decodeHeic(ctx.input, maxPixels)
            : sharp(ctx.decodeInput ?? ctx.input, {
                limitInputPixels: maxPixels,
                failOn: 'error',
              }).autoOrient();
      if (ctx.avifSequence) {
        // The track header gave the size shown (for the limit); the frame's own size is the image's.
        const { width, height } = await source.metadata();
        ctx.probe = { ...meta, width, height };
      }
      const float = meta.depth === 'float' || meta.depth === 'double';
      await toDecoded(float ? await scaleUnitFloat(source) : source);
    } catch (error) {
      if (error instanceof AppError) throw error;
      // A TIFF whose header libvips read but whose pixels it cannot (a compression it was built
      // without): the fallback decodes it, or names the variant.
      const tiff = meta.format === 'tiff' && !ctx.tiff ? readTiff(ctx.input) : undefined;
      if (tiff) {
        ctx.tiff = tiff;
        await toDecoded(await decodeTiffVariant(ctx.input, tiff, maxPixels));
        return;
      }
      throw new AppError('CORRUPT_IMAGE', `Decoding failed: ${(error as Error).message.split('\n')[0]}`);
    }
  },
};
