/**
 * Length-prefixed frames, the stdio protocol's unit (docs/processors.md): a 4-byte unsigned
 * big-endian length, then that many bytes.
 */
export const MAX_FRAME = 256 * 2 ** 20;

export function frame(payload: Buffer): Buffer[] {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length);
  return [header, payload];
}

/** Cuts a byte stream into frames as chunks arrive. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly onFrame: (frame: Buffer) => void;
  private readonly onError: (error: Error) => void;

  constructor(onFrame: (frame: Buffer) => void, onError: (error: Error) => void) {
    this.onFrame = onFrame;
    this.onError = onError;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.take(4, false);
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME) {
        this.onError(
          new Error(
            `a frame of ${length} bytes is over the ${MAX_FRAME}-byte limit (is something printing to stdout?)`,
          ),
        );
        this.chunks = [];
        this.buffered = 0;
        return;
      }
      if (this.buffered < 4 + length) return;
      this.take(4, true);
      this.onFrame(this.take(length, true));
    }
  }

  /** The first n buffered bytes, consumed or only looked at. */
  private take(n: number, consume: boolean): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    if (consume) {
      const rest = all.subarray(n);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
    } else this.chunks = [all];
    return out;
  }
}
