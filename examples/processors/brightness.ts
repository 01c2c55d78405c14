// An example processor: how bright and how contrasted an image is.
// Run it on every image with IMAGELAKE_PROCESSORS=examples/processors/brightness.ts, or declare it
// in a processors file (docs/processors.md).
import type { ModuleProcessor } from '../../src/processing/processors/contract.ts';

const brightness: ModuleProcessor = {
  name: 'brightness',
  version: '1.0.0',
  // Declared fields: output is checked against them, and the scalar ones become analytics dimensions.
  fields: { mean: 'number', contrast: 'number', dark: 'boolean' },
  async process(image) {
    // image.sharp() reads the pixels decoded once for every image: upright, sRGB, at most 1280 px.
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
