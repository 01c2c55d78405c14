import { createHash } from 'node:crypto';
import { AppError } from '../../errors.ts';
import type { Step } from '../context.ts';
import { isFlat, phashFromGrey32 } from '../phash.ts';
import { fromDecoded } from './renditions.ts';

/**
 * SHA-256 of the stored bytes, checked against the checksum taken at landing (so a lake object that
 * changed since is caught, not silently processed), and a 64-bit perceptual hash for near-duplicates
 * (with whether the image is too flat for that hash to mean anything: phash.ts isFlat).
 */
export const fingerprints: Step = {
  name: 'fingerprints',
  async run(ctx) {
    const sha256 = createHash('sha256').update(ctx.input).digest('hex');
    if (sha256 !== ctx.task.checksum) {
      throw new AppError('CHECKSUM_MISMATCH', `Expected ${ctx.task.checksum}, read ${sha256}.`);
    }
    const grey = await fromDecoded(ctx.decoded!)
      .flatten({ background: '#ffffff' })
      .greyscale()
      .resize(32, 32, { fit: 'fill' })
      .raw()
      .toBuffer();
    ctx.result.fingerprints = { sha256, phash: phashFromGrey32(grey), flat: isFlat(grey) };
  },
};
