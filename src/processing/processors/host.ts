import type { Decoded, ImageMetadata } from '../context.ts';
import type { HostAnswer, ProcessorRequest } from './contract.ts';
import type { ProcessorSpec } from './spec.ts';

/** What a processor says of itself once started: the module's export, the command's hello frame. */
export interface Declared {
  name: string;
  version: string;
  fields?: Record<string, string>;
}

export interface HostInput {
  /** The original; left out only for a processor fed the preview, when nothing else needed it read. */
  original?: Buffer;
  /** The upright sRGB WebP preview, for processors declared with input "preview". */
  preview?: Buffer;
  /** Decoded pixels, for module processors. */
  decoded?: Decoded;
  metadata: ImageMetadata;
}

/** Runs one configured processor, whatever its kind; the chain (chain.ts) checks what it returns. */
export interface ProcessorHost {
  readonly spec: ProcessorSpec;
  /** Starts it (threads, processes) and reads what it declares. URL processors declare in the config. */
  start(): Promise<Declared>;
  run(request: ProcessorRequest, input: HostInput): Promise<HostAnswer>;
  close(): Promise<void>;
}
