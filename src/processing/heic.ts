import decode from 'heic-decode';
import sharp, { type Sharp } from 'sharp';

/**
 * sharp's prebuilt libvips reads HEIF containers (and decodes AV1) but carries no HEVC decoder, so
 * iPhone photos (HEIC) are decoded by libheif compiled to WebAssembly (npm heic-decode). libheif
 * applies the container's rotation and mirroring, so the pixels come out upright.
 */
export async function decodeHeic(input: Buffer, limitInputPixels: number): Promise<Sharp> {
  const image = await decode({ buffer: input });
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 4 },
    limitInputPixels,
  });
}
