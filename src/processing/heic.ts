import sharp, { type Sharp } from 'sharp';

/**
 * sharp's prebuilt libvips reads HEIF containers (and decodes AV1) but carries no HEVC decoder, so
 * iPhone photos (HEIC) are decoded by libheif compiled to WebAssembly (npm heic-decode). libheif
 * applies the container's rotation and mirroring, so the pixels come out upright.
 *
 * Loaded at the first HEIC a thread decodes, not with the pipeline: libheif's JavaScript is about
 * 5 MB of heap that every thread (and the api's main thread, which fingerprints query images)
 * would otherwise hold, and mark at every full collection, for photos most deployments never get.
 */
export async function decodeHeic(input: Buffer, limitInputPixels: number): Promise<Sharp> {
  const { default: decode } = await import('heic-decode');
  const image = await decode({ buffer: input });
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 4 },
    limitInputPixels,
  });
}
