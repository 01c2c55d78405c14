import type { Logger } from 'pino';
import type { KafkaConfig } from '../../config/config.ts';
import type { Metrics } from '../../observability/metrics.ts';

export type ProblemReason = 'authentication' | 'tls' | 'unreachable' | 'topic_missing' | 'other';

/** Why Kafka cannot be used, said so that an operator knows what to change. */
export interface KafkaProblem {
  reason: ProblemReason;
  message: string;
}

/** A problem found before the client failed on it, such as a topic that is not there. */
export class KafkaProblemError extends Error {
  readonly problem: KafkaProblem;
  constructor(problem: KafkaProblem) {
    super(problem.message);
    this.problem = problem;
  }
}

// Node's codes for a certificate the client does not trust, or that is not the broker's.
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ECONNRESET',
]);

type Nested = Error & { code?: string; apiId?: string; errors?: unknown[]; cause?: unknown };

/** Every error inside one from @platformatic/kafka: it nests them (MultipleErrors, causes). */
function* nested(error: unknown, depth = 0): Generator<Nested> {
  if (!(error instanceof Error) || depth > 10) return;
  const e = error as Nested;
  yield e;
  for (const inner of e.errors ?? []) yield* nested(inner, depth + 1);
  if (e.cause) yield* nested(e.cause, depth + 1);
}

/** Answers to a topic creation that asking again will not change: the topic was not made. */
const CREATION_REFUSALS = new Set([
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_REPLICA_ASSIGNMENT',
  'INVALID_CONFIG',
  'POLICY_VIOLATION',
]);

/**
 * The broker refused a topic creation: this user may not (an ACL), or the settings are not ones it
 * takes. Anything else (no answer in time, a broker busy electing its controller, another process
 * first) may have made the topic, or may on a second try.
 */
export function creationRefused(error: unknown): boolean {
  return [...nested(error)].some(
    (e) =>
      e.apiId !== undefined && (e.apiId.endsWith('_AUTHORIZATION_FAILED') || CREATION_REFUSALS.has(e.apiId)),
  );
}

/** Turns a client error into what went wrong and what to change, instead of a stack trace. */
export function explain(error: unknown, config: KafkaConfig): KafkaProblem {
  if (error instanceof KafkaProblemError) return error.problem;
  const brokers = config.brokers.join(',');
  const all = [...nested(error)];
  if (all.some((e) => e.code === 'PLT_KFK_AUTHENTICATION' || e.apiId === 'SASL_AUTHENTICATION_FAILED')) {
    return {
      reason: 'authentication',
      message: config.sasl
        ? `Kafka at ${brokers} refused the ${config.sasl.mechanism} login of user "${config.sasl.username}": check IMAGELAKE_KAFKA_SASL_USERNAME, IMAGELAKE_KAFKA_SASL_PASSWORD and IMAGELAKE_KAFKA_SASL_MECHANISM.`
        : `Kafka at ${brokers} asks for a login: set IMAGELAKE_KAFKA_SASL_MECHANISM, IMAGELAKE_KAFKA_SASL_USERNAME and IMAGELAKE_KAFKA_SASL_PASSWORD.`,
    };
  }
  const tls = all.find((e) => e.code && UNTRUSTED.has(e.code));
  if (tls) {
    return {
      reason: 'tls',
      message: `The TLS certificate of Kafka at ${brokers} is not trusted (${tls.message}): set IMAGELAKE_KAFKA_TLS_CA to the file of the CA that signed it${config.tls?.ca ? ` (now ${config.tls.ca})` : ''}.`,
    };
  }
  const unknownTopic = all.find((e) => /^Unknown topic /.test(e.message));
  if (unknownTopic) return { reason: 'topic_missing', message: `Kafka says: ${unknownTopic.message}` };
  const network = all.find((e) => e.code && UNREACHABLE.has(e.code));
  if (network) {
    return {
      reason: 'unreachable',
      message: `Cannot reach Kafka at ${brokers} (${network.message}): check IMAGELAKE_KAFKA_BROKERS${config.tls ? '' : ', and set IMAGELAKE_KAFKA_TLS=true if the brokers speak TLS'}.`,
    };
  }
  // The innermost message is the one that says what happened; the outer ones say "failed".
  const innermost = all.at(-1);
  return { reason: 'other', message: `Kafka at ${brokers}: ${innermost?.message ?? String(error)}` };
}

/** The command that creates a topic, for messages about a missing one. */
export function createTopicCommand(config: KafkaConfig, topic: string): string {
  return `kafka-topics.sh --bootstrap-server ${config.brokers[0] ?? 'BROKER'} --create --topic ${topic} --partitions ${config.topicPartitions}`;
}

/**
 * One warning per distinct problem, and a gauge while it lasts: a broker that stays unreachable
 * must not fill the log with the same stack trace every few seconds.
 */
export class ProblemReporter {
  private current: KafkaProblem | undefined;
  private readonly part: 'ingest' | 'events';
  private readonly log: Logger;
  private readonly metrics: Metrics;

  constructor(part: 'ingest' | 'events', log: Logger, metrics: Metrics) {
    this.part = part;
    this.log = log;
    this.metrics = metrics;
  }

  get problem(): KafkaProblem | undefined {
    return this.current;
  }

  report(problem: KafkaProblem, detail: Record<string, unknown> = {}): void {
    if (this.current?.message === problem.message) {
      this.log.debug({ part: this.part, reason: problem.reason, ...detail }, problem.message);
      return;
    }
    if (this.current) this.metrics.kafkaProblem.set({ part: this.part, reason: this.current.reason }, 0);
    this.current = problem;
    this.metrics.kafkaProblem.set({ part: this.part, reason: problem.reason }, 1);
    this.log.warn({ part: this.part, reason: problem.reason, ...detail }, problem.message);
  }

  resolved(message: string): void {
    if (!this.current) return;
    this.metrics.kafkaProblem.set({ part: this.part, reason: this.current.reason }, 0);
    this.current = undefined;
    this.log.info({ part: this.part }, message);
  }
}
