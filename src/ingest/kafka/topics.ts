import { Admin } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../../config/config.ts';
import { connectionOptions } from './client.ts';
import { createTopicCommand, KafkaProblemError } from './problems.ts';

export interface TopicPlan {
  name: string;
  /** Dead-letter topics are always created: they are imagelake's own. */
  always: boolean;
  /** Topics that hold image bytes keep them no longer than the lake does. */
  retentionMs: number | undefined;
}

/** The topics consumption needs: the image topics and their dead-letter topics. */
export function ingestTopics(config: KafkaConfig, retentionMs: number): TopicPlan[] {
  return [
    ...config.topics.map((name) => ({ name, always: false, retentionMs })),
    ...config.topics.map((t) => ({ name: `${t}${config.dlqSuffix}`, always: true, retentionMs })),
  ];
}

/** The events topic: outcomes only, no image bytes, so the broker's own retention. */
export function eventsTopics(config: KafkaConfig): TopicPlan[] {
  return config.eventsTopic ? [{ name: config.eventsTopic, always: false, retentionMs: undefined }] : [];
}

/**
 * Creates the planned topics that are missing and may be created (IMAGELAKE_KAFKA_CREATE_TOPICS for
 * image and events topics), and returns the names of those still missing. Several processes may
 * race to create the same topic; the loser finds it there.
 */
export async function ensureTopics(config: KafkaConfig, plan: TopicPlan[], log: Logger): Promise<string[]> {
  const admin = new Admin(connectionOptions(config, 'admin'));
  try {
    const existing = new Set(await admin.listTopics());
    const creatable = plan.filter((t) => !existing.has(t.name) && (t.always || config.createTopics));
    for (const retention of new Set(creatable.map((t) => t.retentionMs))) {
      const topics = creatable.filter((t) => t.retentionMs === retention).map((t) => t.name);
      try {
        await admin.createTopics({
          topics,
          partitions: config.topicPartitions,
          replicas: config.topicReplicas,
          configs: retention === undefined ? [] : [{ name: 'retention.ms', value: String(retention) }],
        });
        log.info(
          {
            topics,
            partitions: config.topicPartitions,
            replicas: config.topicReplicas,
            retentionMs: retention,
          },
          'created Kafka topics',
        );
      } catch (error) {
        // Another process created them first, or this user may not create topics: listed again below.
        log.debug({ err: error, topics }, 'creating topics failed');
      }
    }
    const now = creatable.length ? new Set(await admin.listTopics()) : existing;
    return plan.filter((t) => !now.has(t.name)).map((t) => t.name);
  } finally {
    await admin.close().catch(() => {});
  }
}

/** What to tell the operator about topics that are not there: which, and the commands that make them. */
export function missingTopicsError(config: KafkaConfig, missing: string[]): KafkaProblemError {
  const many = missing.length > 1;
  const it = many ? 'them' : 'it';
  const how = missing.map((t) => createTopicCommand(config, t)).join('; ');
  const names = missing.map((t) => `"${t}"`).join(', ');
  const where = config.brokers.join(',');
  const events = missing.includes(config.eventsTopic)
    ? ', or set IMAGELAKE_KAFKA_EVENTS_TOPIC= (empty) to publish no events'
    : '';
  const message = config.createTopics
    ? `Kafka topic${many ? 's' : ''} ${names} missing at ${where}, and creating ${it} failed (may this user create topics?): create ${it} with ${how}${events}.`
    : `Kafka topic${many ? 's' : ''} ${names} missing at ${where}: create ${it} with ${how}, or set IMAGELAKE_KAFKA_CREATE_TOPICS=true to let imagelake create ${it}${events}.`;
  return new KafkaProblemError({ reason: 'topic_missing', message });
}
