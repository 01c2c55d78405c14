import sharp from 'sharp';
import type { Decoded, RenditionOutput, Step } from '../context.ts';

/** The renditions every image gets. Both are WebP, upright, sRGB, with every metadata tag (EXIF, GPS, XMP) left out. */
export const RENDITIONS = [
  { name: 'thumb', edge: 256, quality: 78 },
  { name: 'preview', edge: 1280, quality: 82 },
] as const;

function fromDecoded(d: Decoded) {
  return sharp(d.data, { raw: { width: d.width, height: d.height, channels: d.channels } });
}

export const renditions: Step = {
  name: 'renditions',
  async run(ctx) {
    const decoded = ctx.decoded!;
    const outputs = await Promise.all(
      RENDITIONS.map(async (r): Promise<RenditionOutput> => {
        // sharp writes no metadata unless asked to (withMetadata/keepExif), which is what strips GPS.
        const { data, info } = await fromDecoded(decoded)
          .resize({ width: r.edge, height: r.edge, fit: 'inside', withoutEnlargement: true })
          .webp({ quality: r.quality, effort: 2 })
          .toBuffer({ resolveWithObject: true });
        return { name: r.name, format: 'webp', width: info.width, height: info.height, data };
      }),
    );
    ctx.result.renditions.push(...outputs);
  },
};

export { fromDecoded };
