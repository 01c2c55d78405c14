import { JOB_KINDS } from '../../catalog/queue.ts';
import type { JobHandler } from './context.ts';
import { processImageJob } from './process-image.ts';
import { reprocessImageJob } from './reprocess-image.ts';

/**
 * The job kinds and their handlers. Adding a kind: name it in catalog/queue.ts (JOB_KINDS), write
 * its handler in processing/jobs/KIND.ts, list it here. A kind without a handler, or with two,
 * fails the worker's boot.
 */
export function jobHandlers(): JobHandler[] {
  return [processImageJob, reprocessImageJob()];
}

export function jobRegistry(
  handlers: JobHandler[] = jobHandlers(),
  kinds: readonly string[] = JOB_KINDS,
): Map<string, JobHandler> {
  const registry = new Map<string, JobHandler>();
  for (const handler of handlers) {
    if (!kinds.includes(handler.kind))
      throw new Error(`A handler is registered for an unknown job kind: ${handler.kind}`);
    if (registry.has(handler.kind))
      throw new Error(`Two handlers are registered for the job kind ${handler.kind}`);
    registry.set(handler.kind, handler);
  }
  const missing = kinds.filter((kind) => !registry.has(kind));
  if (missing.length) throw new Error(`No handler is registered for the job kind(s): ${missing.join(', ')}`);
  return registry;
}
