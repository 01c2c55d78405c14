import { IMAGE_AREAS, TUS_AREA } from '../lake/object-keys.ts';

/**
 * Backstops for when the platform itself is down: storage-level rules that delete what the purge
 * would have, one day after the window. They never replace the purge (which also cleans the
 * catalog and writes receipts); they bound the damage if it stops running.
 */
/** prefix: the lake's folder inside its bucket ('' or ending with '/'). */
export function lifecycleRules(retentionMs: number, prefix = '') {
  const days = Math.ceil(retentionMs / 86_400_000) + 1;
  // Resumable uploads' bytes (tus/) are image bytes too: unfinished ones expire long before the
  // window, so the window's backstop bounds them as well, and their multipart parts are aborted.
  const prefixes = [...IMAGE_AREAS.map((area) => `${area}/`), TUS_AREA].map((area) => `${prefix}${area}`);
  return {
    days,
    s3: {
      Rules: prefixes.map((p) => ({
        ID: `imagelake-retention-${p.replace(/\W+/g, '-').replace(/-$/, '')}`,
        Status: 'Enabled',
        Filter: { Prefix: p },
        Expiration: { Days: days },
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      })),
    },
    gcs: {
      lifecycle: {
        rule: [{ action: { type: 'Delete' }, condition: { age: days, matchesPrefix: prefixes } }],
      },
    },
    kafkaRetentionMs: retentionMs,
  };
}
