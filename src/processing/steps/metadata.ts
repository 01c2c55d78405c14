import exifReader from 'exif-reader';
import type { Metadata } from 'sharp';
import { type ImageFormat, MEDIA_TYPE } from '../../ingest/sniff.ts';
import type { ExifSummary, ImageMetadata, Step } from '../context.ts';

const BIT_DEPTH: Record<string, number> = {
  uchar: 8,
  char: 8,
  ushort: 16,
  short: 16,
  uint: 32,
  int: 32,
  float: 32,
  double: 64,
};

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() ? value.replace(/\0/g, '').trim() : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The few EXIF facts people filter by. A broken EXIF block is not a broken image: it yields what it can. */
export function summarizeExif(raw: Buffer | undefined): ExifSummary | undefined {
  if (!raw) return undefined;
  let exif: ReturnType<typeof exifReader>;
  try {
    exif = exifReader(raw);
  } catch {
    return undefined;
  }
  const image = (exif.Image ?? {}) as Record<string, unknown>;
  const photo = (exif.Photo ?? {}) as Record<string, unknown>;
  const gps = (exif.GPSInfo ?? {}) as Record<string, unknown>;
  const taken = photo.DateTimeOriginal ?? image.DateTime;
  const summary: ExifSummary = {
    make: text(image.Make),
    model: text(image.Model),
    takenAt: taken instanceof Date && !Number.isNaN(taken.getTime()) ? taken.toISOString() : undefined,
    exposureTime: num(photo.ExposureTime),
    fNumber: num(photo.FNumber),
    iso: num(photo.ISOSpeedRatings) ?? num(photo.PhotographicSensitivity),
    focalLength: num(photo.FocalLength),
    software: text(image.Software),
    hasGps: gps.GPSLatitude !== undefined || gps.GPSLongitude !== undefined,
  };
  return Object.fromEntries(
    Object.entries(summary).filter(([, v]) => v !== undefined),
  ) as unknown as ExifSummary;
}

function uprightSize(meta: Metadata): { width: number; height: number } {
  if (meta.autoOrient) return { width: meta.autoOrient.width, height: meta.autoOrient.height };
  const swap = (meta.orientation ?? 1) >= 5;
  return swap ? { width: meta.height!, height: meta.width! } : { width: meta.width!, height: meta.height! };
}

export const metadata: Step = {
  name: 'metadata',
  async run(ctx) {
    const meta = ctx.probe!;
    const format = ctx.task.format;
    const upright = uprightSize(meta);
    const described: ImageMetadata = {
      format,
      mediaType: MEDIA_TYPE[format as ImageFormat],
      width: upright.width,
      height: meta.pageHeight && (meta.pages ?? 1) > 1 ? meta.pageHeight : upright.height,
      storedWidth: meta.width!,
      storedHeight: meta.height!,
      orientation: meta.orientation ?? 1,
      colorSpace: meta.space,
      channels: meta.channels,
      hasAlpha: meta.hasAlpha ?? false,
      bitDepth: meta.bitsPerSample ?? (meta.depth ? BIT_DEPTH[meta.depth] : undefined),
      hasIcc: Boolean(meta.icc),
      pages: meta.pages ?? 1,
      exif: summarizeExif(meta.exif),
    };
    ctx.result.metadata = described;
  },
};
