/**
 * A bucket on a real S3 server for tests: a fresh one-node Ceph cluster with radosgw (support/ceph.ts), a client
 * with its keys, the bucket, and the questions tests ask about it afterwards (is there an object, an upload left?).
 */
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../../src/render/s3.client.ts';
import { type CephOptions, type CephS3, startCeph } from './ceph.ts';

export interface S3TestBucket {
  readonly ceph: CephS3;
  readonly bucket: string;
  /** endpoint, region and keys of the radosgw (direct, no proxy) */
  readonly settings: S3Settings;
  readonly client: S3Client;
  /** the object's bytes */
  download(key: string): Promise<Buffer>;
  put(key: string, body: Uint8Array): Promise<void>;
  /** whether HEAD finds the object (404 = false; any other error is thrown) */
  objectExists(key: string): Promise<boolean>;
  /** multipart uploads in progress under `prefix` (an aborted or completed upload is not listed) */
  uploadsAt(prefix: string): Promise<number>;
  /** keys of the objects under `prefix` */
  keys(prefix?: string): Promise<string[]>;
  /** destroy the client and stop the cluster */
  stop(): Promise<void>;
}

export async function startS3Bucket(bucket: string, options: CephOptions = {}): Promise<S3TestBucket> {
  const ceph = await startCeph(options);
  const settings: S3Settings = {
    endpoint: ceph.endpoint,
    region: ceph.region,
    accessKeyId: ceph.accessKeyId,
    secretAccessKey: ceph.secretAccessKey,
  };
  const client = createS3Client(settings);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (e) {
    client.destroy();
    await ceph.stop();
    throw e;
  }
  return {
    ceph,
    bucket,
    settings,
    client,
    download: async (key) => {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    },
    put: async (key, body) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    objectExists: async (key) => {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return true;
      } catch (e) {
        if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
        throw e;
      }
    },
    uploadsAt: async (prefix) => {
      const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return (res.Uploads ?? []).length;
    },
    keys: async (prefix) => {
      const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (res.Contents ?? []).map((o) => o.Key ?? '');
    },
    stop: async () => {
      client.destroy();
      await ceph.stop();
    },
  };
}
