/**
 * Over 500 lines because the block-blob protocol is one unit: staging, listing, resuming, committing and reading
 * back share the upload's state and one error mapping.
 *
 * The Azure Blob Storage sink: one block blob per COG, written as Put Block (stageBlock) calls that arrive in any
 * order and concurrently, then one Put Block List (commitBlockList) in file order, the header block first.
 *
 * Block ids are fixed-length base64 strings derived from an upload tag and the part number
 * (`cogmill-<16 hex tag>-<6-digit part>`), so a retried or re-run part overwrites its own block and blocks of
 * two uploads to the same blob never mix. Azure has no minimum block size, so the pipeline glues nothing (the
 * sink asks for a minimum of 1 byte); limits respected: at most 50,000 blocks, at most 4,000 MiB per block.
 *
 * Every block carries a Content-MD5 header, so the service refuses a block damaged on the way (retried). Every
 * request is retried with exponential backoff and full jitter on 5xx, throttling (429, 503 ServerBusy), timeouts
 * and dropped connections; staging a block again with the same id overwrites it, and committing the same list
 * again commits the same blob, so every retry is safe.
 *
 * Nothing is visible at the blob until the block list is committed, and on any failure or cancel it never is:
 * the staged blocks stay uncommitted, invisible, and Azure discards them after 7 days (or at the next commit to
 * that blob name). A cancel that raced the commit removes the blob when its committed blocks are exactly ours.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  AZURE_DEFAULTS,
  type AzureClients,
  type AzureErrorShape,
  type AzureSettings,
  azureBlobClient,
  azureErrorCode,
  azureSourceError,
  type BlockBlobClient,
  createAzureClients,
  isRetryableAzureError,
  listAzureBlobs,
} from '../render/azure.client.ts';
import { CogmillError, errorMessage } from '../render/errors.ts';
import { retrying } from '../render/retry.ts';
import { MiB } from '../render/types.ts';
import { parseAzureDestination } from './destination.ts';
import type { Part } from './part.plan.ts';
import {
  asSinkError,
  isSinkError,
  noteRetried,
  partBody,
  SINK_REMOTE_DEFAULTS,
  SinkError,
  type SinkLimits,
  type SinkParts,
  type SinkRemoteOptions,
  type SinkResult,
  type SinkStaged,
  type SinkStats,
  type StagedPart,
  type UploadInfo,
} from './sink.ts';

export const AZURE_MAX_BLOCKS = 50_000;
export const AZURE_MAX_BLOCK_BYTES = 4000 * MiB;
/** length of the upload tag in a block id (hex characters) */
const TAG_CHARS = 16;

export interface SinkAzureOptions extends SinkRemoteOptions {
  /** clients to share; without them the sink builds its own from `settings` */
  readonly clients?: AzureClients;
  readonly settings?: AzureSettings;
}

export const SINK_AZURE_DEFAULTS = SINK_REMOTE_DEFAULTS;

/** an attempt may take the configured timeout plus one second per MiB sent (a slow link is not a dead one) */
const MS_PER_MIB = 1000;

/** A new random upload tag. */
export function newUploadTag(): string {
  return randomBytes(TAG_CHARS / 2).toString('hex');
}

/** The block id of a part: base64 of `cogmill-<tag>-<part number, 6 digits>`, the same length for every part. */
export function azureBlockId(tag: string, partNumber: number): string {
  if (!/^[0-9a-f]{16}$/.test(tag)) throw new RangeError(`upload tag "${tag}" is not 16 hex characters`);
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > AZURE_MAX_BLOCKS)
    throw new RangeError(`part number ${partNumber} is outside 1..${AZURE_MAX_BLOCKS}`);
  return Buffer.from(`cogmill-${tag}-${String(partNumber).padStart(6, '0')}`).toString('base64');
}

/** The part number of one of our block ids for `tag`, or undefined for any other block id. */
export function azurePartNumber(tag: string, blockId: string): number | undefined {
  const m = /^cogmill-([0-9a-f]{16})-(\d{6})$/.exec(Buffer.from(blockId, 'base64').toString('latin1'));
  return m && m[1] === tag ? Number(m[2]) : undefined;
}

interface BlockRecord {
  readonly id: string;
  readonly bytes: number;
}

/** A part as the service holds it: its number, size and block id (in `etag`). */
export type AzureStagedPart = StagedPart;

/**
 * Uploads are a client-side idea on Azure: an upload id is the tag in its block ids. `create` picks a new one
 * (no request), `attach` takes one made elsewhere (a shard, the complete step, a resume), `listStaged` reads the
 * blob's uncommitted block list and keeps this upload's blocks.
 */
export class SinkAzure implements SinkParts, SinkStaged {
  readonly mode = 'parts' as const;
  readonly kind = 'azure';
  readonly location: string;
  readonly stats: SinkStats = { parts: 0, bytes: 0, retries: 0 };
  /** Azure has no minimum block size: nothing needs gluing */
  readonly minPartBytes = 1;
  readonly maxParts = AZURE_MAX_BLOCKS;
  readonly limits: SinkLimits = { minPartBytes: 1, maxPartBytes: AZURE_MAX_BLOCK_BYTES, maxParts: AZURE_MAX_BLOCKS };
  /** the last few errors that were retried, oldest first (for progress reports) */
  readonly recentErrors: string[] = [];
  readonly container: string;
  readonly blobName: string;
  private readonly options: SinkAzureOptions;
  private readonly attempts: number;
  private tag: string | undefined;
  private target: { blob: BlockBlobClient; credentialSource: string; clients: AzureClients } | undefined;
  private readonly blocks = new Map<number, BlockRecord>();
  private readonly inflight = new Set<Promise<unknown>>();
  private state: 'new' | 'open' | 'completing' | 'completed' | 'aborted' = 'new';
  /** Put Block List was sent at least once (the service may have committed the blob) */
  private commitSent = false;
  /** the parts of the last commit */
  private committed: readonly AzureStagedPart[] = [];

  constructor(url: string, options: SinkAzureOptions = {}) {
    const { container, blob } = parseAzureDestination(url);
    if (!options.clients && !options.settings) throw new TypeError('SinkAzure needs clients or Azure settings');
    this.location = `az://${container}/${blob}`;
    this.container = container;
    this.blobName = blob;
    this.options = options;
    this.attempts = Math.max(1, options.attempts ?? SINK_AZURE_DEFAULTS.attempts);
  }

  /** the upload id: the tag in this upload's block ids (after open, create or attach) */
  get uploadId(): string | undefined {
    return this.tag;
  }

  /** where the credentials came from (once a request was prepared) */
  get credentialSource(): string | undefined {
    return this.target?.credentialSource;
  }

  private async client(): Promise<BlockBlobClient> {
    if (!this.target) {
      try {
        const clients = this.options.clients ?? (await createAzureClients(this.options.settings ?? {}));
        const t = await azureBlobClient(clients, this.location);
        this.target = { blob: t.blob, credentialSource: t.credentialSource, clients };
      } catch (e) {
        throw e instanceof CogmillError ? asSinkError(e) : e;
      }
    }
    return this.target.blob;
  }

  private note(action: string, e: unknown): void {
    const err = (e ?? {}) as AzureErrorShape;
    const what = [err.statusCode && `HTTP ${err.statusCode}`, azureErrorCode(e), err.message?.split('\n')[0]]
      .filter(Boolean)
      .join(' ');
    noteRetried(this.recentErrors, `${action}: ${what || errorMessage(e)}`);
  }

  /** Send with retries; each attempt has its own timeout; `signal` cancels (its reason is thrown as it is). */
  private async send<T>(
    action: string,
    bytes: number,
    fn: (blob: BlockBlobClient, signal: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    other?: BlockBlobClient,
  ): Promise<T> {
    const blob = other ?? (await this.client());
    const timeoutMs =
      (this.options.settings?.timeoutMs ?? AZURE_DEFAULTS.timeoutMs) + Math.ceil((bytes / MiB) * MS_PER_MIB);
    let timeout: AbortSignal | undefined;
    return retrying(
      () => {
        timeout = AbortSignal.timeout(timeoutMs);
        return fn(blob, signal ? AbortSignal.any([signal, timeout]) : timeout);
      },
      {
        attempts: this.attempts,
        baseMs: this.options.retryBaseMs ?? SINK_AZURE_DEFAULTS.retryBaseMs,
        maxMs: this.options.retryMaxMs ?? SINK_AZURE_DEFAULTS.retryMaxMs,
        signal,
        failure: (e) =>
          timeout?.aborted
            ? new SinkError('timeout', `${this.location}: Azure did not answer within ${timeoutMs} ms (${action})`, {
                cause: e,
              })
            : e,
        retryable: isRetryableAzureError,
        onRetry: (e) => {
          this.stats.retries++;
          this.note(action, e);
        },
        fail: (e, attempts) => this.fail(e, action, attempts),
      },
    );
  }

  private fail(e: unknown, action: string, attempts: number): SinkError {
    if (e instanceof CogmillError) return asSinkError(e);
    const status = (e as AzureErrorShape).statusCode;
    const code = azureErrorCode(e);
    const opts = { cause: e };
    if (status === 401 || status === 403) {
      return new SinkError(
        'forbidden',
        `${this.location}: access denied to container ${this.container} (${action}, Azure ${status} ${code}); credentials tried: ${this.credentialSource ?? 'none'}; writing needs the Storage Blob Data Contributor role, or a SAS with write and create permissions on the container`,
        opts,
      );
    }
    if (code === 'ContainerNotFound') {
      return new SinkError(
        'bad-destination',
        `${this.location}: the container ${this.container} does not exist (${action}); create it first, or check the Azure account/endpoint`,
        opts,
      );
    }
    if (code === 'InvalidBlockList' || code === 'InvalidBlockId' || code === 'InvalidBlobOrBlock') {
      return new SinkError(
        'parts-refused',
        `${this.location}: Azure refused the blocks (${action}, ${code}): ${(e as Error).message?.split('\n')[0]}`,
        opts,
      );
    }
    const mapped = azureSourceError(e, this.location, action, {
      container: this.container,
      credentialSource: this.credentialSource,
    });
    return asSinkError(mapped, attempts > 1 ? ` after ${attempts} attempts` : '');
  }

  async open(signal?: AbortSignal): Promise<void> {
    await this.create(signal);
  }

  /** Start a new upload: a new tag (nothing is sent; the first block creates the staging area). */
  async create(signal?: AbortSignal): Promise<string> {
    if (this.state !== 'new') throw new SinkError('internal', `SinkAzure.create: the sink is ${this.state}`);
    signal?.throwIfAborted();
    await this.client();
    this.tag = newUploadTag();
    this.state = 'open';
    return this.tag;
  }

  /** Stage into an upload made elsewhere (its id is its tag). */
  attach(uploadId: string): void {
    if (this.state !== 'new') throw new SinkError('internal', `SinkAzure.attach: the sink is ${this.state}`);
    azureBlockId(uploadId, 1); // checks the form
    this.tag = uploadId;
    this.state = 'open';
  }

  putPart(part: Part, signal?: AbortSignal): Promise<void> {
    return this.stage(part, signal).then(() => undefined);
  }

  /** Stage one part as its block (retried inside); staging a part number again replaces its block. */
  stage(part: Part, signal?: AbortSignal): Promise<AzureStagedPart> {
    const p = this.stageBlock(part, signal);
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  private async stageBlock(part: Part, signal?: AbortSignal): Promise<AzureStagedPart> {
    if (this.state !== 'open' || this.tag === undefined) {
      throw new SinkError(
        'internal',
        `${this.location}: part ${part.partNumber} arrived while the upload is ${this.state}`,
      );
    }
    const n = part.partNumber;
    const id = azureBlockId(this.tag, n);
    if (part.bytes > AZURE_MAX_BLOCK_BYTES)
      throw new RangeError(`part ${n} is ${part.bytes} bytes, more than Azure's 4,000 MiB per block`);
    const body = partBody(part);
    const md5 = createHash('md5').update(body).digest();
    await this.send(
      `Put Block ${n}`,
      body.byteLength,
      (blob, s) => blob.stageBlock(id, body, body.byteLength, { abortSignal: s, transactionalContentMD5: md5 }),
      signal,
    );
    const staged = { partNumber: n, bytes: body.byteLength, etag: id };
    if (this.state !== 'open') return staged;
    const old = this.blocks.get(n);
    if (old) this.stats.bytes -= old.bytes;
    else this.stats.parts++;
    this.blocks.set(n, { id, bytes: body.byteLength });
    this.stats.bytes += body.byteLength;
    return staged;
  }

  /** the blocks this sink staged so far, by part number */
  stagedParts(): { partNumber: number; bytes: number; blockId: string }[] {
    return [...this.blocks.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([partNumber, b]) => ({ partNumber, bytes: b.bytes, blockId: b.id }));
  }

  /** The blob's uncommitted blocks, by upload tag (ours and those of other, unfinished uploads). */
  private async uncommitted(signal?: AbortSignal): Promise<{ name: string; size: number }[]> {
    try {
      const res = await this.send(
        'Get Block List',
        0,
        (blob, s) => blob.getBlockList('uncommitted', { abortSignal: s }),
        signal,
      );
      return res.uncommittedBlocks ?? [];
    } catch (e) {
      // no blob and no staged block yet
      if (isSinkError(e, 'not-found')) return [];
      throw e;
    }
  }

  /** The blocks of this upload the service holds, uncommitted, by part number (what a resume need not redo). */
  async listStaged(signal?: AbortSignal): Promise<AzureStagedPart[]> {
    const tag = this.tag;
    if (tag === undefined) throw new SinkError('internal', 'SinkAzure.listStaged: no upload (create or attach first)');
    const out: AzureStagedPart[] = [];
    for (const b of await this.uncommitted(signal)) {
      const n = azurePartNumber(tag, b.name);
      if (n !== undefined) out.push({ partNumber: n, bytes: b.size, etag: b.name });
    }
    return out.sort((a, b) => a.partNumber - b.partNumber);
  }

  /** Unfinished uploads to this blob: the tags of its uncommitted blocks (Azure keeps no start time). */
  async listUploads(signal?: AbortSignal): Promise<UploadInfo[]> {
    const tags = new Set<string>();
    for (const b of await this.uncommitted(signal)) {
      const m = /^cogmill-([0-9a-f]{16})-\d{6}$/.exec(Buffer.from(b.name, 'base64').toString('latin1'));
      if (m) tags.add(m[1]);
    }
    return [...tags].sort().map((uploadId) => ({ uploadId, initiated: null }));
  }

  /**
   * Another upload to this blob: Azure has no call that removes uncommitted blocks without committing the blob,
   * so there is nothing to send; they are discarded at the next commit to this blob, or after 7 days.
   */
  async abortUpload(uploadId: string, _signal?: AbortSignal): Promise<void> {
    azureBlockId(uploadId, 1); // checks the form
  }

  /** where the notes of this destination live: `BLOB.cogmill/` in the same container */
  get notesPrefix(): string {
    return `${this.blobName}.cogmill/`;
  }

  private async noteBlob(name: string): Promise<BlockBlobClient> {
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(name) || name.startsWith('.'))
      throw new RangeError(`note name "${name}" is not a plain file name`);
    await this.client();
    return (await azureBlobClient(this.target!.clients, `az://${this.container}/${this.notesPrefix}${name}`)).blob;
  }

  /** Store a small document next to the destination (the plan, a shard's report): a blob of its own. */
  async putNote(name: string, text: string, signal?: AbortSignal): Promise<void> {
    const blob = await this.noteBlob(name);
    const body = Buffer.from(text, 'utf8');
    await this.send(
      `Put Blob ${this.notesPrefix}${name}`,
      body.byteLength,
      (b, s) =>
        b.upload(body, body.byteLength, { abortSignal: s, blobHTTPHeaders: { blobContentType: 'application/json' } }),
      signal,
      blob,
    );
  }

  /** A document stored by putNote, or undefined. */
  async getNote(name: string, signal?: AbortSignal): Promise<string | undefined> {
    const blob = await this.noteBlob(name);
    try {
      const bytes = await this.send(
        `Get Blob ${this.notesPrefix}${name}`,
        0,
        (b, s) => b.downloadToBuffer(undefined, undefined, { abortSignal: s }),
        signal,
        blob,
      );
      return bytes.toString('utf8');
    } catch (e) {
      if (isSinkError(e, 'not-found')) return undefined;
      throw e;
    }
  }

  /** Names of the documents stored by putNote. */
  async listNotes(signal?: AbortSignal): Promise<string[]> {
    await this.client();
    const clients = this.target!.clients;
    let urls: string[];
    try {
      urls = await listAzureBlobs(clients, `az://${this.container}/${this.notesPrefix}`, { signal });
    } catch (e) {
      throw e instanceof CogmillError && !signal?.aborted ? asSinkError(e) : e;
    }
    return urls.map((u) => u.slice(`az://${this.container}/${this.notesPrefix}`.length)).sort();
  }

  /** Remove every document stored by putNote. */
  async clearNotes(signal?: AbortSignal): Promise<void> {
    for (const name of await this.listNotes(signal)) {
      const blob = await this.noteBlob(name);
      await this.send(
        `Delete Blob ${this.notesPrefix}${name}`,
        0,
        (b, s) => b.deleteIfExists({ abortSignal: s }),
        signal,
        blob,
      );
    }
  }

  /** Commit the blocks this sink staged, in part order (the in-process pipeline's last step). */
  async complete(signal?: AbortSignal): Promise<SinkResult> {
    if (this.state !== 'open')
      throw new SinkError('internal', `${this.location}: complete() while the upload is ${this.state}`);
    await Promise.allSettled([...this.inflight]);
    return this.commit(
      this.stagedParts().map((p) => ({ partNumber: p.partNumber, bytes: p.bytes, etag: p.blockId })),
      signal,
    );
  }

  /**
   * Make the blob from exactly these parts in this order (Put Block List, header block first), then check that
   * the committed block list is exactly theirs.
   */
  async commit(parts: readonly AzureStagedPart[], signal?: AbortSignal): Promise<SinkResult> {
    if (this.state !== 'open' || this.tag === undefined)
      throw new SinkError('internal', `${this.location}: commit while the upload is ${this.state}`);
    if (parts.length === 0 || parts[0].partNumber !== 1) {
      throw new SinkError('internal', `${this.location}: cannot commit the blob without part 1 (the header)`);
    }
    for (let i = 1; i < parts.length; i++) {
      if (parts[i].partNumber <= parts[i - 1].partNumber)
        throw new SinkError('internal', `${this.location}: parts to commit are not in increasing order`);
    }
    const ids = parts.map((p) => p.etag);
    const totalBytes = parts.reduce((a, p) => a + p.bytes, 0);
    this.state = 'completing';
    let etag: string | undefined;
    try {
      const res = await this.send(
        'Put Block List',
        0,
        (blob, s) => {
          this.commitSent = true;
          this.committed = parts;
          return blob.commitBlockList(ids, {
            abortSignal: s,
            blobHTTPHeaders: { blobContentType: this.options.contentType ?? SINK_AZURE_DEFAULTS.contentType },
          });
        },
        signal,
      );
      etag = res.etag;
      // the committed list must be exactly ours (another writer may have committed over it)
      const problem = await this.checkCommitted(ids, parts, signal);
      if (problem) {
        throw new SinkError('not-ours', `${this.location}: after Put Block List the blob is not ours: ${problem}`);
      }
    } catch (e) {
      this.state = 'open';
      throw e;
    }
    this.state = 'completed';
    return { location: this.location, bytes: totalBytes, etag, parts: parts.length };
  }

  /** undefined when the committed block list is exactly `ids` with the staged sizes, else what differs */
  private async checkCommitted(
    ids: readonly string[],
    staged: readonly { bytes: number }[],
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const list = await this.send(
      'Get Block List',
      0,
      (blob, s) => blob.getBlockList('committed', { abortSignal: s }),
      signal,
    );
    const committed = list.committedBlocks ?? [];
    if (committed.length !== ids.length) return `it has ${committed.length} blocks, not the ${ids.length} committed`;
    for (let i = 0; i < ids.length; i++) {
      if (committed[i].name !== ids[i] || committed[i].size !== staged[i].bytes)
        return `block ${i + 1} is not the one staged`;
    }
    return undefined;
  }

  async abort(_reason?: unknown): Promise<void> {
    if (this.state === 'completed' || this.state === 'aborted') return;
    this.state = 'aborted';
    // blocks still on the wire: let them finish, so nothing is staged after the abort returns
    await Promise.allSettled([...this.inflight]);
    // the staged blocks stay uncommitted (invisible; Azure discards them after 7 days): nothing to undo, unless a
    // commit was sent and may have gone through
    if (!this.commitSent || !this.target) return;
    const signal = AbortSignal.timeout(this.options.abortTimeoutMs ?? SINK_AZURE_DEFAULTS.abortTimeoutMs);
    const parts = this.committed;
    let problem: string | undefined;
    try {
      problem = await this.checkCommitted(
        parts.map((p) => p.etag),
        parts,
        signal,
      );
    } catch (e) {
      if (isSinkError(e, 'not-found')) return;
      throw e;
    }
    if (problem) return;
    await this.send('Delete Blob', 0, (blob, s) => blob.deleteIfExists({ abortSignal: s }), signal);
  }
}
