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

/** One WebP of the decoded image, fit inside `edge` (never enlarged). */
async function encode(decoded: Decoded, edge: number, quality: number) {
  // sharp writes no metadata unless asked to (withMetadata/keepExif), which is what strips GPS.
  return fromDecoded(decoded)
    .resize({ width: edge, height: edge, fit: 'inside', withoutEnlargement: true })
    .webp({ quality, effort: 2 })
    .toBuffer({ resolveWithObject: true });
}

export const renditions: Step = {
  name: 'renditions',
  async run(ctx) {
    const decoded = ctx.decoded!;
    // A rendition whose edge the image does not exceed is the image itself, unscaled: every such
    // rendition has the same pixels, so one encode, at the best quality among them, serves them all.
    // An image of 256 px or less (avatars, icons, thumbnails from other systems) then costs one
    // WebP encode rather than two: a fixed cost of about 0.9 ms of CPU however small the image.
    const long = Math.max(decoded.width, decoded.height);
    const unscaled = RENDITIONS.filter((r) => r.edge >= long);
    const shared =
      unscaled.length > 0 ? encode(decoded, long, Math.max(...unscaled.map((r) => r.quality))) : undefined;
    const outputs = await Promise.all(
      RENDITIONS.map(async (r): Promise<RenditionOutput> => {
        const { data, info } = await (shared && r.edge >= long ? shared : encode(decoded, r.edge, r.quality));
        return { name: r.name, format: 'webp', width: info.width, height: info.height, data };
      }),
    );
    ctx.result.renditions.push(...outputs);
  },
};

export { fromDecoded };
