import type { Metadata } from 'sharp';
import type { TiffLayout } from './variants.ts';

/** What the main thread sends a worker thread for one image. */
export interface ProcessTask {
  imageId: string;
  customerId: string;
  source: string;
  /** The format sniffed at landing. */
  format: string;
  checksum: string;
  input: Uint8Array;
  limits: { maxPixels: number; maxFrames: number };
  /** Return the decoded pixels too (module processors read them). */
  keepDecoded?: boolean;
}

export interface RenditionOutput {
  name: string;
  format: 'webp';
  width: number;
  height: number;
  data: Uint8Array;
}

export interface ExifSummary {
  make?: string;
  model?: string;
  takenAt?: string;
  exposureTime?: number;
  fNumber?: number;
  iso?: number;
  focalLength?: number;
  software?: string;
  hasGps: boolean;
}

export interface ImageMetadata {
  format: string;
  mediaType: string | undefined;
  /** Upright dimensions: after EXIF orientation is applied. */
  width: number;
  height: number;
  storedWidth: number;
  storedHeight: number;
  orientation: number;
  colorSpace: string | undefined;
  channels: number | undefined;
  hasAlpha: boolean;
  bitDepth: number | undefined;
  hasIcc: boolean;
  pages: number;
  exif: ExifSummary | undefined;
}

export interface ProcessResult {
  metadata: ImageMetadata;
  renditions: RenditionOutput[];
  /** flat: no structure to hash (phash.ts isFlat); such an image has exact duplicates only. */
  fingerprints: { sha256: string; phash: string; flat: boolean };
  timings: Record<string, number>;
  decoded?: Decoded;
  /** CPU milliseconds the pipeline spent on the image, its thread and libvips's (pool.ts, cpu-shares.ts; for usage). */
  cpuMs?: number;
}

/** The decoded image every step after `decode` reuses: upright, sRGB, 8-bit, at most PREVIEW_EDGE on its long edge. */
export interface Decoded {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/**
 * The one object the steps share. Steps run in order; each reads what earlier steps filled in and
 * fills in its own part. `probe` -> header facts; `decode` -> pixels; the rest only read pixels.
 */
export interface StepContext {
  task: ProcessTask;
  input: Buffer;
  /** sharp's reading of the header (no pixels decoded). Set by probe. */
  probe?: Metadata;
  /** A TIFF libvips refused, as the fallback decoder read its header (processing/variants.ts). */
  tiff?: TiffLayout;
  /** An animated AVIF with no still image: decode its first frame (processing/avif-sequence.ts). */
  avifSequence?: boolean;
  /** What to decode when it is not the input itself (the still image of an animated AVIF). */
  decodeInput?: Buffer;
  /** A GIF whose frames reach outside its canvas: the canvas to cut the picture to. */
  canvas?: { width: number; height: number };
  decoded?: Decoded;
  result: Partial<ProcessResult> & { renditions: RenditionOutput[] };
}

export interface Step {
  name: string;
  run(ctx: StepContext): Promise<void>;
}
