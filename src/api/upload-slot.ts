import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import type { UploadSlots } from '../ingest/upload-slots.ts';

/**
 * An onRequest hook (after the key is checked) that holds one of the customer's upload slots while
 * its body streams: given back when the answer is sent or the connection is gone, whichever comes
 * first. Past the limit, 429 TOO_MANY_UPLOADS with a short Retry-After: slots free as soon as any of
 * the customer's uploads ends. Every way in for bytes (POST /v1/images, a direct upload's PUT, a
 * tus PATCH) takes its slot from the same count.
 */
export function takeUploadSlot(slots: UploadSlots, limit: number) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const release = slots.take(request.principal!.customerId!);
    if (!release) {
      reply.header('retry-after', '1');
      throw new AppError('TOO_MANY_UPLOADS', `The limit is ${limit} at once per customer.`);
    }
    reply.raw.once('close', release);
  };
}
