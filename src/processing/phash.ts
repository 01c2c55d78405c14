/**
 * A 64-bit perceptual hash (the DCT "pHash"): shrink to 32x32 grey, take the 2-D DCT, keep the 8x8
 * lowest frequencies, and set one bit per coefficient above their median. Near-duplicates (re-encoded,
 * resized, lightly edited) land within a few bits of each other; compare with hammingDistance.
 */
const N = 32;
const COS: Float64Array = (() => {
  const table = new Float64Array(N * N);
  for (let k = 0; k < N; k++)
    for (let n = 0; n < N; n++) table[k * N + n] = Math.cos(((2 * n + 1) * k * Math.PI) / (2 * N));
  return table;
})();

/** grey: N*N bytes, row-major. Returns 16 hex characters. */
export function phashFromGrey32(grey: Uint8Array): string {
  if (grey.length !== N * N) throw new Error(`phash needs ${N * N} grey pixels, got ${grey.length}`);
  // Separable DCT: rows, then columns of the 8 lowest row frequencies only.
  const rows = new Float64Array(N * 8);
  for (let y = 0; y < N; y++) {
    for (let k = 0; k < 8; k++) {
      let sum = 0;
      for (let x = 0; x < N; x++) sum += grey[y * N + x]! * COS[k * N + x]!;
      rows[y * 8 + k] = sum;
    }
  }
  const low = new Float64Array(64);
  for (let v = 0; v < 8; v++) {
    for (let u = 0; u < 8; u++) {
      let sum = 0;
      for (let y = 0; y < N; y++) sum += rows[y * 8 + u]! * COS[v * N + y]!;
      low[v * 8 + u] = sum;
    }
  }
  // The DC term measures overall brightness, not structure: leave it out of the median.
  const median = [...low.subarray(1)].sort((a, b) => a - b)[31]!;
  let bits = 0n;
  for (let i = 0; i < 64; i++) bits = (bits << 1n) | (low[i]! > median ? 1n : 0n);
  return bits.toString(16).padStart(16, '0');
}

export function hammingDistance(a: string, b: string): number {
  let x = BigInt(`0x${a}`) ^ BigInt(`0x${b}`);
  let count = 0;
  while (x) {
    count += Number(x & 1n);
    x >>= 1n;
  }
  return count;
}

/**
 * Below this standard deviation (of 255) the 32x32 grey image is one flat colour (a blank page, a
 * transparent overlay shown on white): its DCT has no structure, so its bits are rounding noise and
 * every flat image would "match" every other. bench/phash-robustness.ts found the corpus's flat
 * images under 0.2 and the least structured photo at 4.3.
 */
export const FLAT_STDEV = 1;

/** Whether a 32x32 grey image is too flat for its perceptual hash to mean anything. */
export function isFlat(grey: Uint8Array): boolean {
  let sum = 0;
  for (const v of grey) sum += v;
  const mean = sum / grey.length;
  let squares = 0;
  for (const v of grey) squares += (v - mean) ** 2;
  return Math.sqrt(squares / grey.length) < FLAT_STDEV;
}
