import type { Message, Producer } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Db } from '../../catalog/database.ts';
import { recordDeadLetter } from '../../catalog/dead-letters.ts';
import type { KafkaConfig } from '../../config/config.ts';
import type { AppError } from '../../errors.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { headersOf } from './contract.ts';

type Msg = Message<Buffer, Buffer, Buffer, Buffer>;

export interface DeadLetterDeps {
  config: KafkaConfig;
  db: Db;
  log: Logger;
  metrics: Metrics;
  producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  /** False once the consumer stops: a send that fails then is not retried, and the message comes again. */
  running: () => boolean;
}

/**
 * A message that can never land, sent to `<topic><dlqSuffix>` with its original key, value and
 * headers plus why (error-code, error-message, original-topic, -partition, -offset), then recorded
 * in the catalog. The send is retried until it succeeds, so the partition moves on only once the
 * message is safe there.
 */
export async function deadLetter(deps: DeadLetterDeps, message: Msg, error: AppError): Promise<void> {
  const { config, metrics, log } = deps;
  const headers = new Map<Buffer, Buffer>(message.headers);
  headers.set(Buffer.from('error-code'), Buffer.from(error.code));
  headers.set(Buffer.from('error-message'), Buffer.from(error.message));
  headers.set(Buffer.from('original-topic'), Buffer.from(message.topic));
  headers.set(Buffer.from('original-partition'), Buffer.from(String(message.partition)));
  headers.set(Buffer.from('original-offset'), Buffer.from(String(message.offset)));
  const topic = `${message.topic}${config.dlqSuffix}`;
  for (let attempt = 1; ; attempt++) {
    try {
      await deps.producer.send({
        messages: [
          { topic, key: message.key ?? undefined, value: message.value ?? Buffer.alloc(0), headers },
        ],
      });
      break;
    } catch (sendError) {
      if (!deps.running()) throw sendError;
      log.warn({ err: sendError, topic, attempt }, 'dead-letter topic unavailable; retrying');
      await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)));
    }
  }
  await recordInCatalog(deps, message, error);
  metrics.kafkaMessages.inc({ topic: message.topic, outcome: 'dead_lettered' });
  metrics.kafkaDeadLetters.inc({ topic: message.topic, code: error.code });
  log.info(
    {
      topic: message.topic,
      partition: message.partition,
      offset: String(message.offset),
      code: error.code,
    },
    'message sent to the dead-letter topic',
  );
}

/**
 * The catalog's record of the dead letter, for GET /v1/failures and replay-dlq. The message itself
 * is safe in the dead-letter topic already, so a catalog that stays down past a few tries costs
 * only the record (logged), never the message or the partition's progress.
 */
async function recordInCatalog(deps: DeadLetterDeps, message: Msg, error: AppError): Promise<void> {
  const headers = headersOf(message.headers);
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      await recordDeadLetter(deps.db, {
        topic: message.topic,
        partition: message.partition,
        offset: message.offset,
        customerId: headers.get('customer-id')?.trim() || null,
        messageId: headers.get('message-id') || null,
        code: error.code,
        message: error.message,
        at: new Date(),
      });
      return;
    } catch (recordError) {
      if (!deps.running() || attempt === 5) {
        deps.log.error(
          { err: recordError, topic: message.topic, offset: String(message.offset) },
          'the dead letter is in its topic but could not be recorded in the catalog',
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
    }
  }
}
