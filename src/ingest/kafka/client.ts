import { readFileSync } from 'node:fs';
import type { KafkaConfig } from '../../config/config.ts';

/** Connection options shared by every Kafka client: brokers, and SASL/TLS as managed Kafka needs them. */
export function connectionOptions(config: KafkaConfig, role: string) {
  return {
    clientId: `${config.clientId}-${role}`,
    bootstrapBrokers: config.brokers,
    ...(config.sasl
      ? {
          sasl: {
            mechanism: config.sasl.mechanism,
            username: config.sasl.username,
            password: config.sasl.password,
          },
        }
      : {}),
    ...(config.tls
      ? {
          tls: {
            ca: config.tls.ca ? readFileSync(config.tls.ca) : undefined,
            rejectUnauthorized: config.tls.rejectUnauthorized,
          },
        }
      : {}),
    retries: 5,
  };
}
