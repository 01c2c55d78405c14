import { FileStore } from '@tus/file-store';
import type { DataStore, Upload } from '@tus/utils';
import type { S3Settings } from '../config/config.ts';
import { FsLake } from '../lake/fs.ts';
import { TUS_AREA, tusKeyPrefix } from '../lake/object-keys.ts';
import type { Lake } from '../lake/port.ts';

/**
 * Where @tus/server keeps uploads: @tus/file-store in the folder lake's tus/ folder, @tus/s3-store in
 * the bucket's (parts go straight to S3 multipart, so an upload never sits whole in memory or on the
 * api's disk). Both keep every fact about an upload in the lake itself (file size and .json sidecar;
 * multipart parts and the .info object), so any api process sharing the lake sees the same uploads.
 */
export interface TusStorage {
  datastore: DataStore;
  /** The store's id of the upload whose URL ends in `id`. */
  storeId(id: string): string;
  /**
   * Releases what the store holds outside plain lake objects (S3: the unfinished multipart upload's
   * parts, which no listing shows) and returns those bytes; the lake objects are the caller's.
   */
  abandon(id: string): Promise<number>;
}

/**
 * @tus/file-store in the lake's tus/ folder. The folder lake removes a folder its last object left
 * (the port's contract: no empty folders), and uploads sit right under tus/, so tus/ may vanish
 * between the store's making it and its creating a file in it: creating again is then enough.
 */
class LakeFileStore extends FileStore {
  override async create(file: Upload): Promise<Upload> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await super.create(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw error;
      }
    }
  }
}

/** The S3 store and adapter are loaded only for a lake that is not a folder (lake/open.ts says why). */
export async function openTusStorage(
  lake: Lake,
  options: { expiryMs: number; s3: S3Settings },
): Promise<TusStorage> {
  if (lake instanceof FsLake) {
    return {
      datastore: new LakeFileStore({
        directory: `${lake.root}/${TUS_AREA}`,
        expirationPeriodInMilliseconds: options.expiryMs,
      }),
      storeId: (id) => id,
      abandon: async () => 0,
    };
  }
  const [{ S3Lake, s3ClientConfig }, { S3Store }] = await Promise.all([
    import('../lake/s3.ts'),
    import('@tus/s3-store'),
  ]);
  if (lake instanceof S3Lake) {
    const datastore = new S3Store({
      partSize: 8 * 1024 * 1024,
      expirationPeriodInMilliseconds: options.expiryMs,
      // Parts in flight per process: each holds up to a part on the api's temporary disk.
      maxConcurrentPartUploads: 8,
      s3ClientConfig: { bucket: lake.bucket, ...s3ClientConfig(options.s3) },
    });
    const storeId = (id: string) => `${lake.prefix}${tusKeyPrefix(id)}`;
    return {
      datastore,
      storeId,
      abandon: async (id) => {
        const upload = await datastore.getUpload(storeId(id)).catch(() => undefined);
        if (!upload) return 0;
        const tail = await lake.head(`${tusKeyPrefix(id)}.part`);
        await datastore.remove(storeId(id)).catch((error) => {
          if ((error as { status_code?: number }).status_code !== 404) throw error;
        });
        return Math.max(0, (upload.offset ?? 0) - (tail?.bytes ?? 0));
      },
    };
  }
  throw new Error(`Resumable uploads need a folder or S3 lake, not ${lake.describe()}`);
}
