// An example processor: how bright and how contrasted an image is.
// Run it on every image with IMAGELAKE_PROCESSORS=examples/processors/brightness.ts
import type { Processor } from '../../src/processing/processors/contract.ts';

const brightness: Processor = {
  name: 'brightness',
  version: '1.0.0',
  async process(image) {
    // image.sharp() reads the pixels decoded once for every step: upright, sRGB, at most 1280 px.
    const { channels } = await image.sharp().greyscale().stats();
    const grey = channels[0]!;
    return {
      mean: Math.round((grey.mean / 255) * 1000) / 1000,
      contrast: Math.round((grey.stdev / 128) * 1000) / 1000,
      dark: grey.mean < 64,
    };
  },
};

export default brightness;
