import sharp, { type Sharp } from 'sharp';
import UTIF from 'utif2';
import { AppError } from '../errors.ts';
import { LZMA, uncompressLzma } from './tiff-lzma.ts';

/**
 * Variants of the formats the platform claims that sharp's prebuilt libvips does not decode. TIFF
 * is a container for many layouts: libvips reads most (BigTIFF, planar, tiled, 16-bit, float, LZW),
 * and UTIF.js (pure JavaScript, run in the processing thread with the pixel limit checked before a
 * byte is decompressed) reads the rest it knows: CIELAB, 12-bit samples, old-style JPEG; LZMA strips
 * are decompressed first (tiff-lzma.ts) and then read by UTIF.js as uncompressed. What
 * neither can decode ends UNSUPPORTED_VARIANT naming the variant: the bytes are a valid container,
 * so it is no CORRUPT_IMAGE, which stays for broken bytes.
 */
const COMPRESSION: Record<number, string> = {
  1: 'no compression',
  2: 'CCITT RLE compression',
  3: 'CCITT fax 3 compression',
  4: 'CCITT fax 4 compression',
  5: 'LZW compression',
  6: 'old-style JPEG compression',
  7: 'JPEG compression',
  8: 'Deflate compression',
  32773: 'PackBits compression',
  32946: 'Deflate compression',
  34712: 'JPEG 2000 compression',
  34887: 'LERC compression',
  34925: 'LZMA compression',
  50000: 'Zstandard compression',
  50001: 'WebP compression',
};
/**
 * What sharp's prebuilt libvips decompresses. A tiled TIFF in another compression (LZMA, Zstandard)
 * it decodes without an error as a black picture, so those go to the fallback before libvips.
 */
const LIBVIPS_COMPRESSIONS = new Set([1, 2, 3, 4, 5, 7, 8, 32773, 32946, 50001]);
export const libvipsReads = (t: TiffLayout) => LIBVIPS_COMPRESSIONS.has(t.compression);
/** What UTIF.js decompresses (and toRGBA8 or this module turns into pixels). */
const UTIF_COMPRESSIONS = new Set([1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946]);
const PHOTOMETRIC: Record<number, string> = {
  0: 'grey (white is zero)',
  1: 'grey',
  2: 'RGB',
  3: 'palette',
  5: 'CMYK',
  6: 'YCbCr',
  8: 'CIELAB',
  9: 'ICC L*a*b*',
  10: 'ITU L*a*b*',
  32844: 'LogL',
  32845: 'LogLuv',
};

export interface TiffLayout {
  width: number;
  height: number;
  compression: number;
  photometric: number;
  bits: number;
  samples: number;
  planar: boolean;
  tiled: boolean;
  ifd: UTIF.IFD;
}

const tag = (ifd: UTIF.IFD, t: number, fallback: number) => {
  const value = ifd[`t${t}`] as number[] | undefined;
  return value?.[0] ?? fallback;
};

/** The first image of a classic TIFF, from its header (no pixels), or undefined if it is none. */
export function readTiff(input: Buffer): TiffLayout | undefined {
  const magic = input.subarray(0, 4).toString('latin1');
  if (magic !== 'II*\0' && magic !== 'MM\0*') return undefined;
  try {
    // No MakerNote parsing: only the image's own tags matter here.
    const [ifd] = (UTIF.decode as (b: Buffer, o: unknown) => UTIF.IFD[])(input, {
      parseMN: false,
      debug: false,
    });
    if (!ifd || ifd.t256 === undefined || ifd.t257 === undefined) return undefined;
    const photometric = tag(ifd, 262, 2);
    return {
      width: tag(ifd, 256, 0),
      height: tag(ifd, 257, 0),
      compression: tag(ifd, 259, 1),
      photometric,
      bits: tag(ifd, 258, 1),
      samples: tag(ifd, 277, photometric === 2 || photometric === 8 ? 3 : 1),
      planar: tag(ifd, 284, 1) === 2,
      tiled: ifd.t322 !== undefined,
      ifd,
    };
  } catch {
    return undefined;
  }
}

/** The variant in words, for UNSUPPORTED_VARIANT: "TIFF, CIELAB, 3 × 12-bit samples, LZMA compression, planar". */
export function tiffVariant(t: TiffLayout): string {
  return [
    'TIFF',
    PHOTOMETRIC[t.photometric] ?? `photometric ${t.photometric}`,
    `${t.samples} × ${t.bits}-bit samples`,
    COMPRESSION[t.compression] ?? `compression ${t.compression}`,
    t.planar ? 'planar' : undefined,
    t.tiled ? 'tiled' : undefined,
  ]
    .filter(Boolean)
    .join(', ');
}

/** 8-bit L*a*b* (a and b signed) to 8-bit sRGB, through XYZ under D65. */
function labToRgba(data: Uint8Array, pixels: number, samples: number): Uint8Array {
  const out = new Uint8Array(pixels * 4);
  const f = (t: number) => (t > 6 / 29 ? t ** 3 : 3 * (6 / 29) ** 2 * (t - 4 / 29));
  const gamma = (c: number) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);
  const clamp = (c: number) => Math.max(0, Math.min(255, Math.round(gamma(c) * 255)));
  for (let i = 0; i < pixels; i++) {
    const L = (data[i * samples]! * 100) / 255;
    const a = (data[i * samples + 1]! << 24) >> 24;
    const b = (data[i * samples + 2]! << 24) >> 24;
    const fy = (L + 16) / 116;
    const x = 0.95047 * f(fy + a / 500);
    const y = f(fy);
    const z = 1.08883 * f(fy - b / 200);
    out[i * 4] = clamp(3.2406 * x - 1.5372 * y - 0.4986 * z);
    out[i * 4 + 1] = clamp(-0.9689 * x + 1.8758 * y + 0.0415 * z);
    out[i * 4 + 2] = clamp(0.0557 * x - 0.204 * y + 1.057 * z);
    out[i * 4 + 3] = 255;
  }
  return out;
}

/** 12-bit samples (two in three bytes, rows padded to a byte) to 8-bit RGBA. */
function twelveBitToRgba(t: TiffLayout, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(t.width * t.height * 4);
  const rowBits = t.width * t.samples * 12;
  const rowBytes = Math.ceil(rowBits / 8);
  for (let y = 0; y < t.height; y++) {
    for (let x = 0; x < t.width; x++) {
      const sample = (s: number) => {
        const bit = (x * t.samples + s) * 12;
        const at = y * rowBytes + (bit >> 3);
        const word = (data[at]! << 8) | data[at + 1]!;
        return (bit & 7 ? word & 0xfff : word >> 4) >> 4;
      };
      const o = (y * t.width + x) * 4;
      const [r, g, b] =
        t.samples >= 3 ? [sample(0), sample(1), sample(2)] : [sample(0), sample(0), sample(0)];
      out.set(
        [
          t.photometric === 0 ? 255 - r! : r!,
          t.photometric === 0 ? 255 - g! : g!,
          t.photometric === 0 ? 255 - b! : b!,
          255,
        ],
        o,
      );
    }
  }
  return out;
}

/**
 * Decodes a TIFF that libvips refused, with UTIF.js, to RGBA pixels for sharp. Checks the pixel limit
 * first; a layout it cannot decode either is UNSUPPORTED_VARIANT.
 */
export async function decodeTiffVariant(
  input: Buffer,
  layout: TiffLayout,
  maxPixels: number,
): Promise<Sharp> {
  let [bytes, t] = [input, layout];
  if (t.width * t.height > maxPixels)
    throw new AppError('TOO_MANY_PIXELS', `${t.width}x${t.height} is over the limit of ${maxPixels} pixels.`);
  const variant = tiffVariant(t);
  const unsupported = (why: string) => new AppError('UNSUPPORTED_VARIANT', `${variant}: ${why}.`);
  if (!UTIF_COMPRESSIONS.has(t.compression) && t.compression !== LZMA)
    throw unsupported('no decoder here reads this compression');
  if (t.planar && t.samples > 1) throw unsupported('no fallback decoder reads planar data of this layout');
  if (t.compression === LZMA) ({ input: bytes, layout: t } = await uncompressLzma(bytes, t));
  try {
    UTIF.decodeImage(bytes, t.ifd);
  } catch (error) {
    throw unsupported(`decoding failed (${String((error as Error)?.message ?? error).slice(0, 200)})`);
  }
  const data = t.ifd.data;
  const pixels = t.width * t.height;
  if (!data || data.length === 0) throw unsupported('no pixel data came out');
  let rgba: Uint8Array;
  if (t.photometric === 8 && t.bits === 8) rgba = labToRgba(data, pixels, t.samples);
  else if (t.bits === 12 && t.photometric <= 2) rgba = twelveBitToRgba(t, data);
  else {
    try {
      rgba = UTIF.toRGBA8(t.ifd) as Uint8Array;
    } catch {
      throw unsupported('no decoder here turns these samples into pixels');
    }
  }
  if (rgba.length !== pixels * 4) throw unsupported('the decoded pixels do not fill the image');
  return sharp(Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength), {
    raw: { width: t.width, height: t.height, channels: 4 },
    limitInputPixels: maxPixels,
  });
}

/** The brands of an ISO BMFF file (major first), or undefined when it has no ftyp box. */
function brandsOf(input: Buffer): string[] | undefined {
  if (input.length < 16 || input.subarray(4, 8).toString('latin1') !== 'ftyp') return undefined;
  const end = Math.min(input.readUInt32BE(0), input.length, 256);
  const brands = [input.subarray(8, 12).toString('latin1')];
  for (let at = 16; at + 4 <= end; at += 4) brands.push(input.subarray(at, at + 4).toString('latin1'));
  return brands;
}

/** An AVIF image sequence (animated AVIF: major brand avis), which sharp's libvips does not open. */
export function isAvifSequence(input: Buffer): boolean {
  return brandsOf(input)?.[0] === 'avis';
}

/**
 * An animated AVIF that also carries a still image (the first frame as the primary item, which the
 * "avif" brand among its brands promises, as libavif writes them) can be read as that still image:
 * a copy whose major brand is "avif", which libvips opens. undefined when it carries none.
 */
export function stillOfAvifSequence(input: Buffer): Buffer | undefined {
  const brands = brandsOf(input);
  if (brands?.[0] !== 'avis' || !brands.slice(1).includes('avif')) return undefined;
  const copy = Buffer.from(input);
  copy.write('avif', 8, 'latin1');
  return copy;
}

/**
 * Floating-point samples (TIFF SampleFormat 3) conventionally run from 0 to 1; cast to 8 bits as
 * they are, every pixel would be 0 or 1, a black picture. Scaled to 0..255 when no sample is above 1.
 */
export async function scaleUnitFloat(image: Sharp): Promise<Sharp> {
  const { channels } = await image.clone().stats();
  return channels.every((c) => c.max <= 1) ? image.linear(255, 0) : image;
}

/**
 * A GIF's canvas (its logical screen) from its header. A frame may reach outside it; libvips then
 * grows the picture to hold the frame, where viewers show the canvas: the canvas is the image.
 */
export function gifCanvas(input: Buffer): { width: number; height: number } | undefined {
  if (input.length < 10 || input.subarray(0, 4).toString('latin1') !== 'GIF8') return undefined;
  const width = input.readUInt16LE(6);
  const height = input.readUInt16LE(8);
  return width && height ? { width, height } : undefined;
}
