import { setFlagsFromString } from 'node:v8';

/**
 * How V8 schedules its full collections around memory held outside its heap (Buffers), for a
 * process that moves images through it.
 *
 * By default V8 starts a full (mark-compact) collection each time about 64 MB more of Buffers has
 * been allocated since the last one, however little of it is still alive. A process receiving
 * images allocates that much every few dozen of them: the Kafka client reads its socket into a new
 * 64 KB Buffer each time and copies every message's value out of them, so reading 554 MB from Kafka
 * allocates over 1 GB and ran 22 to 29 full collections, each marking the whole heap (in a server:
 * fastify, kysely, pg, the metrics): the largest single CPU cost of a landing from Kafka. With
 * --external-memory-accounted-in-global-limit, V8 counts that memory in the limit it sets from what
 * survived the last collection, as it does for its own heap, so garbage Buffers are collected when
 * the whole footprint has grown by its usual factor instead: 1 to 10 full collections for the same
 * read, at the cost of the dead Buffers waiting longer (its peak resident size grew from about
 * 200 MB to about 300 MB). A whole landing of that topic (bench:kafka) went from 25-28 to 0-9.
 *
 * V8 reads this flag when it computes its limits, so setting it once the process runs takes effect
 * from the next collection; a server start sets it (idempotent) rather than a command line, so
 * `npm start`, the container and the benchmarks all run the same way. Only a process with the kafka
 * role and without the api role sets it (server.ts): under 50 concurrent uploads of photos the
 * Buffers it lets wait held 200-300 MB more at the peak (bench:memory), past that benchmark's aim.
 */
export function tuneGarbageCollection(): void {
  setFlagsFromString('--external-memory-accounted-in-global-limit');
}
