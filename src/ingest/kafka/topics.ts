import { Admin } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../../config/config.ts';
import { connectionOptions } from './client.ts';
import { createTopicCommand, creationRefused, KafkaProblemError } from './problems.ts';

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
    let now = existing;
    // A creation that failed other than by a refusal (a busy broker's late answer) is tried once more.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const missing = creatable.filter((t) => !now.has(t.name));
      if (missing.length === 0) break;
      const { expected, failed } = await createTopics(admin, config, missing, log);
      now = await listedOnceVisible(admin, expected);
      if (!failed) break;
    }
    return plan.filter((t) => !now.has(t.name)).map((t) => t.name);
  } finally {
    await admin.close().catch(() => {});
  }
}

/**
 * Creates topics, a request per retention. Returns those created or perhaps created (the broker's
 * answer did not come, or another process created them first), to be waited for in the listing, and
 * whether a creation failed other than by a refusal to this user.
 */
async function createTopics(
  admin: Admin,
  config: KafkaConfig,
  missing: TopicPlan[],
  log: Logger,
): Promise<{ expected: string[]; failed: boolean }> {
  const expected: string[] = [];
  let failed = false;
  for (const retention of new Set(missing.map((t) => t.retentionMs))) {
    const topics = missing.filter((t) => t.retentionMs === retention).map((t) => t.name);
    try {
      await admin.createTopics({
        topics,
        partitions: config.topicPartitions,
        replicas: config.topicReplicas,
        configs: retention === undefined ? [] : [{ name: 'retention.ms', value: String(retention) }],
      });
      expected.push(...topics);
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
      // Refused (this user may not, or the settings are not ones the broker takes): they stay
      // missing, and the caller says so.
      if (!creationRefused(error)) {
        expected.push(...topics);
        failed = true;
      }
      log.debug({ err: error, topics }, 'creating topics failed');
    }
  }
  return { expected, failed };
}

/** How long a topic the broker said it created (or may have) may take to show in its listing. */
const CREATED_VISIBLE_MS = 10_000;

/**
 * The broker's topics, once those it just created (or may have) show in them, or CREATED_VISIBLE_MS
 * has passed. A broker answers a creation once its controller has the topic; the broker that
 * answers the listing learns of it a moment later, longer on a busy machine: listed at once, a topic
 * just created could be called missing, and the operator warned of it.
 */
async function listedOnceVisible(admin: Admin, expected: string[]): Promise<Set<string>> {
  const deadline = Date.now() + CREATED_VISIBLE_MS;
  for (let pause = 25; ; pause = Math.min(2 * pause, 500)) {
    const listed = new Set(await admin.listTopics());
    if (expected.every((t) => listed.has(t)) || Date.now() >= deadline) return listed;
    await new Promise((resolve) => setTimeout(resolve, pause));
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
