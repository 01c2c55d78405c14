import { pathToFileURL } from 'node:url';
import { AppError } from '../../errors.ts';
import type { Step } from '../context.ts';
import { loadProcessor } from '../processors/contract.ts';
import { fromDecoded } from './renditions.ts';

/** Runs the company's processors in their configured order, each seeing the outputs of those before it. */
export const processors: Step = {
  name: 'processors',
  async run(ctx) {
    for (const path of ctx.task.processors) {
      const processor = await loadProcessor(pathToFileURL(path).href);
      const decoded = ctx.decoded!;
      let output: unknown;
      try {
        output = await processor.process(
          { bytes: ctx.input, decoded, sharp: () => fromDecoded(decoded), metadata: ctx.result.metadata! },
          {
            imageId: ctx.task.imageId,
            customerId: ctx.task.customerId,
            source: ctx.task.source,
            previous: { ...ctx.result.processorOutputs },
          },
        );
      } catch (error) {
        throw new AppError(
          'PROCESSOR_FAILED',
          `${processor.name}@${processor.version}: ${(error as Error)?.message ?? String(error)}`,
        );
      }
      if (output === null || typeof output !== 'object' || Array.isArray(output)) {
        throw new AppError(
          'PROCESSOR_FAILED',
          `${processor.name}@${processor.version} returned ${Array.isArray(output) ? 'an array' : typeof output}, not an object.`,
        );
      }
      // Round-trip through JSON now, so what is stored is exactly what the catalog will return.
      ctx.result.processorOutputs[processor.name] = JSON.parse(JSON.stringify(output));
      ctx.result.processorVersions[processor.name] = processor.version;
    }
  },
};
