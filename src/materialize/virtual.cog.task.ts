/**
 * A virtual COG tile rendered on a tile worker thread (render/tile.pipeline.pool.ts runs it by this module's URL,
 * which the server gives: the render layer does not import this one). The same call as in-thread
 * (`renderCogTile`), so the bytes are the same; what comes back is the tile's raw payload, pixel-interleaved.
 */
import type { Engine } from '../render/engine.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { CogLevel } from './cog.layout.ts';
import { type CogTileOptions, renderCogTile } from './cog.tiles.ts';
import { interleaveTile } from './tile.encode.ts';

/** This module's URL, for the pool. */
export const VIRTUAL_COG_TASK = import.meta.url;

export interface VirtualCogTileArgs {
  readonly levels: readonly CogLevel[];
  readonly level: number;
  readonly tx: number;
  readonly ty: number;
  readonly options: CogTileOptions;
}

/** The raw (uncompressed, pixel-interleaved) payload of one virtual COG tile. */
export async function virtualCogTileBytes(
  engine: Engine,
  mosaic: Mosaic,
  args: VirtualCogTileArgs,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const px = await renderCogTile(engine, mosaic, args.levels, args.level, args.tx, args.ty, args.options, signal);
  const interleaved = px.samples ?? interleaveTile(px.bands, mosaic.dtype, mosaic.bandCount, args.options.blockSize);
  return new Uint8Array(interleaved.buffer, interleaved.byteOffset, interleaved.byteLength);
}

/** The worker's entry point (see TileWorkerCommand 'task'). */
export function runTileTask(engine: Engine, mosaic: Mosaic, args: unknown, signal: AbortSignal): Promise<Uint8Array> {
  return virtualCogTileBytes(engine, mosaic, args as VirtualCogTileArgs, signal);
}
