import { PassThrough, Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Settings } from '../config/config.ts';
import { mapLimit } from '../parallel.ts';
import { assertSafeKey, type Lake, LakeNotFound, type ObjectInfo, type PutOptions } from './port.ts';

/** How many DeleteObjects requests (of up to 1000 keys) deleteMany keeps in flight. */
export const S3_DELETE_CONCURRENCY = 4;

export interface S3LakeOptions {
  bucket: string;
  /** Folder inside the bucket, '' or ending with '/'. */
  prefix: string;
  client: S3Client;
}

/**
 * The lake on an S3-compatible object store: AWS S3, Google Cloud Storage (XML API with HMAC keys),
 * MinIO, Cloudflare R2. Objects appear whole or not at all (S3 PUTs are atomic), so writes need no
 * temporary names; large bodies go up in parts.
 */
export class S3Lake implements Lake {
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  /** Whether the bucket has Object Lock (and so versioning), asked once. */
  private locking: Promise<boolean> | undefined;

  constructor(options: S3LakeOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.client = options.client;
  }

  /**
   * s3://bucket/prefix, with endpoint, region and credentials from the usual AWS settings
   * (AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 or
   * IMAGELAKE_S3_ENDPOINT). Path-style addressing, which MinIO and most non-AWS stores want, is on
   * whenever an endpoint is given, unless IMAGELAKE_S3_PATH_STYLE=false. The server opens its lake
   * from the loaded configuration (fromSettings); this reads the environment, for tests and tools.
   */
  static fromUrl(url: string, env: Record<string, string | undefined> = process.env): S3Lake {
    return S3Lake.fromSettings(url, {
      endpoint: env.IMAGELAKE_S3_ENDPOINT || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined,
      pathStyle: env.IMAGELAKE_S3_PATH_STYLE || undefined,
      region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    });
  }

  /** s3://bucket/prefix with the given endpoint, addressing and region; credentials are the AWS SDK's own. */
  static fromSettings(url: string, settings: S3Settings): S3Lake {
    const parsed = new URL(url);
    if (parsed.protocol !== 's3:' || !parsed.hostname) throw new Error(`${url} is not s3://bucket/prefix`);
    const config = s3ClientConfig(settings);
    const prefix = parsed.pathname.replace(/^\/+/, '');
    return new S3Lake({
      bucket: parsed.hostname,
      prefix: prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix,
      client: new S3Client(config),
    });
  }

  describe(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  private key(key: string): string {
    assertSafeKey(key);
    return this.prefix + key;
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<number> {
    const Key = this.key(key);
    if (Buffer.isBuffer(body) && body.length < 16 * 1024 * 1024) {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: body,
          ContentLength: body.length,
          ContentType: options.contentType,
        }),
      );
      return body.length;
    }
    // Streams of unknown length go up in parts; the count comes from what passed through.
    let bytes = 0;
    const counted = new PassThrough();
    counted.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    source.on('error', (error) => counted.destroy(error));
    source.pipe(counted);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: counted, ContentType: options.contentType },
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
      // A failed upload leaves no parts behind to pay for.
      leavePartsOnError: false,
    });
    await upload.done();
    return bytes;
  }

  async get(key: string): Promise<Readable> {
    try {
      const result = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(key) }),
      );
      return result.Body as Readable;
    } catch (error) {
      if (isMissing(error)) throw new LakeNotFound(key);
      throw error;
    }
  }

  async getBuffer(key: string): Promise<Buffer> {
    try {
      const result = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(key) }),
      );
      return Buffer.from(await result.Body!.transformToByteArray());
    } catch (error) {
      if (isMissing(error)) throw new LakeNotFound(key);
      throw error;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const result = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(key) }),
      );
      return { key, bytes: result.ContentLength ?? 0, modifiedAt: result.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    if (await this.objectLock()) return this.deleteVersions(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(key) }));
  }

  async deleteMany(keys: string[]): Promise<void> {
    if (await this.objectLock()) {
      await mapLimit(keys, S3_DELETE_CONCURRENCY * 8, (key) => this.deleteVersions(key));
      return;
    }
    // DeleteObjects takes at most 1000 keys; several requests in flight keep the store busy.
    const batches: string[][] = [];
    for (let i = 0; i < keys.length; i += 1000) batches.push(keys.slice(i, i + 1000));
    await mapLimit(batches, S3_DELETE_CONCURRENCY, async (batch) => {
      const result = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((k) => ({ Key: this.key(k) })), Quiet: true },
        }),
      );
      const failed = (result.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length)
        throw new Error(
          `Deleting ${failed.length} objects failed, e.g. ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message}`,
        );
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix + prefix,
          ContinuationToken: token,
        }),
      );
      for (const object of page.Contents ?? []) {
        yield {
          key: object.Key!.slice(this.prefix.length),
          bytes: object.Size ?? 0,
          modifiedAt: object.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async children(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    const base = this.prefix + prefix;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: base,
          Delimiter: '/',
          ContinuationToken: token,
        }),
      );
      for (const common of page.CommonPrefixes ?? [])
        names.push(common.Prefix!.slice(base.length).replace(/\/$/, ''));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names.sort();
  }

  async check(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    await this.put('.health/check', Buffer.from(new Date().toISOString()));
  }

  /** Whether the bucket has Object Lock enabled; asked once (a 403 on the question counts as no). */
  objectLock(): Promise<boolean> {
    this.locking ??= this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket })).then(
      (result) => result.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
      (error: { $metadata?: { httpStatusCode?: number } }) => {
        // No configuration (404), or a store without the API (GCS, R2: 400, 501): no locking.
        if (error?.$metadata?.httpStatusCode) return false;
        this.locking = undefined; // a store that did not answer: ask again next time
        throw error;
      },
    );
    return this.locking;
  }

  async legalHold(key: string, on: boolean): Promise<boolean> {
    if (!(await this.objectLock())) return false;
    try {
      await this.client.send(
        new PutObjectLegalHoldCommand({
          Bucket: this.bucket,
          Key: this.key(key),
          LegalHold: { Status: on ? 'ON' : 'OFF' },
        }),
      );
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
    return true;
  }

  /**
   * A bucket with Object Lock is versioned: a plain DELETE only hides the object behind a delete
   * marker and keeps its bytes. Erasing it means deleting every version. The catalog has already
   * decided the object may go (the purge and erasure skip images under a hold), so a version still
   * carrying a legal hold (a release whose clearing was interrupted) is cleared, then deleted.
   */
  private async deleteVersions(key: string): Promise<void> {
    const Key = this.key(key);
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectVersionsCommand({
          Bucket: this.bucket,
          Prefix: Key,
          KeyMarker: keyMarker,
          VersionIdMarker: versionMarker,
        }),
      );
      for (const version of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) {
        if (version.Key !== Key) continue; // another object whose key starts with this one
        const target = { Bucket: this.bucket, Key, VersionId: version.VersionId };
        try {
          await this.client.send(new DeleteObjectCommand(target));
        } catch (error) {
          if (!isWormRefusal(error)) throw error;
          await this.client.send(new PutObjectLegalHoldCommand({ ...target, LegalHold: { Status: 'OFF' } }));
          await this.client.send(new DeleteObjectCommand(target));
        }
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (keyMarker);
  }

  /** A URL a client can PUT the bytes to directly, for large uploads that should not pass through the API. */
  async presignPut(key: string, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.bucket, Key: this.key(key) }), {
      expiresIn: expiresInSeconds,
    });
  }
}

/** The store refused to delete a version because of a retention or legal hold (AWS: AccessDenied; MinIO: InvalidRequest, "WORM protected"). */
function isWormRefusal(error: unknown): boolean {
  const e = error as { name?: string; message?: string };
  return e?.name === 'AccessDenied' || /WORM|object lock|legal hold/i.test(e?.message ?? '');
}

function isMissing(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** The S3 client settings of a lake (also the resumable uploads' store's, which has a client of its own). */
export function s3ClientConfig(settings: S3Settings): S3ClientConfig {
  const endpoint = settings.endpoint;
  const pathStyle = settings.pathStyle ? settings.pathStyle === 'true' : Boolean(endpoint);
  return {
    region: settings.region,
    forcePathStyle: pathStyle,
    ...(endpoint ? { endpoint } : {}),
    // GCS's XML API rejects the newer default checksums; send them only when an operation needs them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}
