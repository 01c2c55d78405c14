import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { FsLake } from '../../src/lake/fs.ts';
import { openLake } from '../../src/lake/open.ts';
import { S3Lake } from '../../src/lake/s3.ts';

describe('openLake', () => {
  it('opens an s3:// lake with the endpoint, addressing and region of the config, not of process.env', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      IMAGELAKE_S3_ENDPOINT: 'http://from-the-environment.invalid:1',
      IMAGELAKE_S3_PATH_STYLE: 'false',
      AWS_REGION: 'ap-south-1',
    });
    try {
      const config = loadConfig({
        IMAGELAKE_LAKE_URL: 's3://bucket/folder',
        IMAGELAKE_S3_ENDPOINT: 'http://from-the-config.invalid:9000',
        AWS_REGION: 'eu-west-1',
      });
      const lake = await openLake(config);
      assert.ok(lake instanceof S3Lake);
      assert.equal(lake.describe(), 's3://bucket/folder/');
      assert.equal(await lake.client.config.region(), 'eu-west-1');
      const endpoint = await lake.client.config.endpoint?.();
      assert.equal(endpoint?.hostname, 'from-the-config.invalid');
      assert.equal(lake.client.config.forcePathStyle, true, 'path-style, as an endpoint is given');
    } finally {
      for (const key of ['IMAGELAKE_S3_ENDPOINT', 'IMAGELAKE_S3_PATH_STYLE', 'AWS_REGION']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });

  it('opens a folder in the data dir without IMAGELAKE_LAKE_URL', async () => {
    const lake = await openLake(loadConfig({ IMAGELAKE_DATA_DIR: '/tmp/imagelake-open-test' }));
    assert.ok(lake instanceof FsLake);
    assert.match(lake.describe(), /imagelake-open-test\/lake/);
  });
});
