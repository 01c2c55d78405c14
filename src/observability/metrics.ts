import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Every Prometheus metric the platform exports, on one registry per process (tests run several). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'imagelake_' });
  const metrics = {
    registry,
    ingested: new Counter({
      name: 'imagelake_ingest_total',
      help: 'Images offered for landing, by source and outcome (accepted, duplicate, rejected)',
      labelNames: ['source', 'outcome'] as const,
      registers: [registry],
    }),
    ingestedBytes: new Counter({
      name: 'imagelake_ingest_bytes_total',
      help: 'Bytes of images landed',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'imagelake_ingest_rejected_total',
      help: 'Images refused at landing, by error code',
      labelNames: ['source', 'code'] as const,
      registers: [registry],
    }),
    processed: new Counter({
      name: 'imagelake_processed_total',
      help: 'Images that reached an outcome, by outcome and format',
      labelNames: ['outcome', 'format'] as const,
      registers: [registry],
    }),
    failures: new Counter({
      name: 'imagelake_processing_failures_total',
      help: 'Processing attempts that failed, by error code and whether they will be retried',
      labelNames: ['code', 'retried'] as const,
      registers: [registry],
    }),
    processingSeconds: new Histogram({
      name: 'imagelake_processing_seconds',
      help: 'Time to process one image, from claim to recorded outcome',
      labelNames: ['outcome'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    stepSeconds: new Histogram({
      name: 'imagelake_processing_step_seconds',
      help: 'Time spent in each processing step',
      labelNames: ['step'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    processorRuns: new Counter({
      name: 'imagelake_processor_runs_total',
      help: "Runs of the company's processors, by processor and outcome (ok, or the error code)",
      labelNames: ['processor', 'outcome'] as const,
      registers: [registry],
    }),
    processorSeconds: new Histogram({
      name: 'imagelake_processor_seconds',
      help: 'Time one processor took on one image, including its host (thread, process or HTTP)',
      labelNames: ['processor'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'imagelake_queue_depth',
      help: 'Jobs in the processing queue, by state (queued, running) and priority (interactive, bulk)',
      labelNames: ['state', 'priority'] as const,
      registers: [registry],
    }),
    queueOldestWait: new Gauge({
      name: 'imagelake_queue_oldest_wait_seconds',
      help: 'How long the oldest waiting job has waited, by priority (interactive, bulk); 0 when none waits',
      labelNames: ['priority'] as const,
      registers: [registry],
    }),
    purgedImages: new Counter({
      name: 'imagelake_purged_images_total',
      help: 'Images deleted by the retention purge',
      registers: [registry],
    }),
    purgedObjects: new Counter({
      name: 'imagelake_purged_objects_total',
      help: 'Lake objects deleted by the retention purge',
      registers: [registry],
    }),
    purgeRuns: new Counter({
      name: 'imagelake_purge_runs_total',
      help: 'Retention purge runs, by result',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    httpSeconds: new Histogram({
      name: 'imagelake_http_request_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    kafkaMessages: new Counter({
      name: 'imagelake_kafka_messages_total',
      help: 'Kafka messages handled, by topic and outcome (landed, duplicate, dead_lettered)',
      labelNames: ['topic', 'outcome'] as const,
      registers: [registry],
    }),
    landingGroups: new Histogram({
      name: 'imagelake_landing_group_images',
      help: 'Landings per group commit (the Kafka messages in hand recorded in one catalog transaction), by outcome: committed, or alone when the group could not commit whole and each landing was recorded on its own',
      labelNames: ['outcome'] as const,
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers: [registry],
    }),
    kafkaDeadLetters: new Counter({
      name: 'imagelake_kafka_dead_letters_total',
      help: 'Messages sent to a dead-letter topic, by error code',
      labelNames: ['topic', 'code'] as const,
      registers: [registry],
    }),
    kafkaLag: new Gauge({
      name: 'imagelake_kafka_consumer_lag',
      help: "Messages in each partition not yet consumed by this process's group",
      labelNames: ['topic', 'partition'] as const,
      registers: [registry],
    }),
    kafkaPaused: new Gauge({
      name: 'imagelake_kafka_paused',
      help: '1 while consumption is paused because the processing queue is full',
      registers: [registry],
    }),
    eventsPublished: new Counter({
      name: 'imagelake_events_published_total',
      help: 'image.processed and image.failed events published to Kafka',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
    httpInHand: new Gauge({
      name: 'imagelake_http_requests_in_hand',
      help: 'HTTP requests received and not yet answered; a draining api process stops once it is 0',
      registers: [registry],
    }),
    jobListenerConnected: new Gauge({
      name: 'imagelake_job_listener_connected',
      help: "1 while this worker's LISTEN session for new jobs is up; 0 while it polls and reconnects",
      registers: [registry],
    }),
    jobListenerReconnects: new Counter({
      name: 'imagelake_job_listener_reconnects_total',
      help: 'Times the LISTEN session for new jobs was lost and connected again',
      registers: [registry],
    }),
    kafkaProblem: new Gauge({
      name: 'imagelake_kafka_problem',
      help: '1 while Kafka ingest or event publishing cannot work, by part (ingest, events) and reason',
      labelNames: ['part', 'reason'] as const,
      registers: [registry],
    }),
    eventsWaiting: new Gauge({
      name: 'imagelake_events_outbox',
      help: 'Events waiting in the outbox to be published, counted while publishing fails',
      registers: [registry],
    }),
    purgeLagSeconds: new Gauge({
      name: 'imagelake_purge_lag_seconds',
      help: 'Age beyond the retention window of the oldest expired image still present (0 when none)',
      registers: [registry],
    }),
    // Webhooks: no customer label (thousands of customers); per customer is the dashboard's panel.
    webhookAttempts: new Counter({
      name: 'imagelake_webhook_attempts_total',
      help: 'Webhook delivery attempts, by outcome: delivered, retry (to be tried again), failed (given up), gone (410: endpoint disabled)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    webhookSeconds: new Histogram({
      name: 'imagelake_webhook_delivery_seconds',
      help: 'Time of one webhook attempt, from sending to the end of the answer (or the error)',
      labelNames: ['outcome'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [registry],
    }),
    webhookBacklog: new Gauge({
      name: 'imagelake_webhook_backlog',
      help: 'Webhook deliveries waiting to be delivered (due now or retrying later), every customer',
      registers: [registry],
    }),
    // The lake: what each process asks of the store, the figures an S3 bill and its request-rate
    // limits (per prefix) are counted in.
    lakeRequests: new Counter({
      name: 'imagelake_lake_requests_total',
      help: 'Objects operated on in the lake, by operation (put, get, head, delete, list, children); a batched delete counts each object',
      labelNames: ['operation'] as const,
      registers: [registry],
    }),
    lakeWrittenBytes: new Counter({
      name: 'imagelake_lake_written_bytes_total',
      help: 'Bytes written to the lake, by durability: durable (originals, flushed before they are acknowledged) or derived (renditions, sidecars)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    webhookEndpointsDisabled: new Counter({
      name: 'imagelake_webhook_endpoints_disabled_total',
      help: 'Endpoints disabled by the dispatcher, by reason: gone (410), failing (every attempt failed for the disable period)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
  };
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
