/**
 * Tags: a TIFF's IFDs read into a RasterInfo and its levels (size, blocks, sample type, nodata, georeferencing,
 * CRS, overviews, masks), with every value checked before anything is allocated for it.
 */
import { GeoTIFF, getDecoder, globals, type ImageFileDirectory } from 'geotiff';
import { crsFromGeoKeys } from './crs.ts';
import { RenderError } from './errors.ts';
import { parseGeoKeyDirectory } from './geokeys.ts';
import { readGdalNodata } from './nodata.ts';
import { COMPRESSION_NAMES, SUPPORTED_COMPRESSIONS } from './raster.decode.ts';
import type { HeaderReader } from './raster.header.ts';
import type { LevelInternal, RasterInfo } from './raster.info.ts';
import { MAX_IFDS, preflight } from './raster.preflight.ts';
import { type DType, type GeoTransform, MiB } from './types.ts';

const MAX_DIMENSION = 2 ** 31 - 1;
const MAX_BLOCKS = 2 ** 26;

function dtypeOf(format: number, bits: number, url: string): DType {
  const key = `${format}:${bits}`;
  const table: Record<string, DType> = {
    '1:8': 'uint8',
    '2:8': 'int8',
    '1:16': 'uint16',
    '2:16': 'int16',
    '1:32': 'uint32',
    '2:32': 'int32',
    '3:32': 'float32',
    '3:64': 'float64',
  };
  const t = table[key];
  if (!t) {
    const kind = format === 3 ? 'float' : format === 2 ? 'signed integer' : 'unsigned integer';
    throw new RenderError('unsupported', `${url}: ${bits}-bit ${kind} samples are not supported`);
  }
  return t;
}

function first(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'length' in v) return Number((v as ArrayLike<number>)[0]);
  return Number.NaN;
}

function tagLength(ifd: ImageFileDirectory, tag: number): number {
  const internal = ifd as unknown as {
    deferredArrays: Map<number, { length: number }>;
    actualizedFields: Map<number, unknown>;
  };
  const d = internal.deferredArrays.get(tag);
  if (d) return d.length;
  const v = internal.actualizedFields.get(tag);
  if (v && typeof v === 'object' && 'length' in v) return (v as ArrayLike<number>).length;
  return typeof v === 'number' ? 1 : 0;
}

function geotransformOf(ifd: ImageFileDirectory, geoKeys: Record<string, unknown>, url: string): GeoTransform {
  const scale = ifd.getValue('ModelPixelScale') as ArrayLike<number> | undefined;
  const tie = ifd.getValue('ModelTiepoint') as ArrayLike<number> | undefined;
  const mt = ifd.getValue('ModelTransformation') as ArrayLike<number> | undefined;
  let gt: [number, number, number, number, number, number];
  if (mt && mt.length >= 16) {
    gt = [mt[3], mt[0], mt[1], mt[7], mt[4], mt[5]];
  } else if (scale && tie && scale.length >= 2 && tie.length >= 6) {
    gt = [tie[3] - tie[0] * scale[0], scale[0], 0, tie[4] + tie[1] * scale[1], 0, -scale[1]];
  } else {
    throw new RenderError(
      'unsupported',
      `${url} has no georeferencing (no ModelPixelScale/ModelTiepoint or ModelTransformation)`,
    );
  }
  if (geoKeys.GTRasterTypeGeoKey === 2) {
    // PixelIsPoint: the tie point is a pixel centre; GDAL shifts by half a pixel
    gt[0] -= gt[1] / 2 + gt[2] / 2;
    gt[3] -= gt[4] / 2 + gt[5] / 2;
  }
  if (!gt.every(Number.isFinite) || gt[1] * gt[5] - gt[2] * gt[4] === 0) {
    throw new RenderError('corrupt', `${url} has an invalid geotransform`);
  }
  return gt;
}

/** Parse the IFDs of a TIFF (after the pre-flight) into its RasterInfo and levels. */
export async function parseRaster(
  reader: HeaderReader,
  url: string,
): Promise<{ info: RasterInfo; levels: LevelInternal[] }> {
  await preflight(reader, url);
  const tiff = await GeoTIFF.fromSource(reader as never);
  const ifds: ImageFileDirectory[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < MAX_IFDS; i++) {
    const image = await tiff.getImage(i).catch((e: Error) => {
      if (e?.name === 'GeoTIFFImageIndexError' || /No image at index/i.test(e?.message ?? '')) return undefined;
      throw e;
    });
    if (!image) break;
    const ifd = image.getFileDirectory();
    ifds.push(ifd);
    const next = Number(ifd.nextIFDByteOffset);
    if (!next) break;
    if (seen.has(next)) throw new RenderError('corrupt', `${url}: the IFD chain loops back on itself`);
    seen.add(next);
  }
  if (ifds.length === 0) throw new RenderError('corrupt', `${url} contains no image`);

  const mainIfd = ifds[0];
  const subfile = (ifd: ImageFileDirectory) => first(ifd.getValue('NewSubfileType') ?? 0) || 0;
  const isMask = (ifd: ImageFileDirectory) =>
    (subfile(ifd) & 4) !== 0 && first(ifd.getValue('PhotometricInterpretation')) === 4;

  const samples = first(mainIfd.getValue('SamplesPerPixel') ?? 1) || 1;
  const bits = first(mainIfd.getValue('BitsPerSample'));
  const format = first(mainIfd.getValue('SampleFormat') ?? 1) || 1;
  const dtype = dtypeOf(format, bits, url);
  const photometricCode = first(mainIfd.getValue('PhotometricInterpretation') ?? 1);
  if (photometricCode === 6 && first(mainIfd.getValue('Compression')) !== 7) {
    throw new RenderError('unsupported', `${url}: YCbCr photometric without JPEG compression is not supported`);
  }
  const geoKeys =
    parseGeoKeyDirectory(
      mainIfd.getValue('GeoKeyDirectory') as ArrayLike<number> | undefined,
      (tag) => mainIfd.getValue(tag as never),
      globals.geoKeyNames as unknown as Record<number, string>,
      url,
    ) ?? {};
  const crs = crsFromGeoKeys(geoKeys);
  const transform = geotransformOf(mainIfd, geoKeys, url);
  const nodataReading = readGdalNodata(mainIfd.getValue('GDAL_NODATA'));
  const nodata = nodataReading.value;
  const warnings = nodataReading.warning ? [nodataReading.warning] : [];

  const fullW = first(mainIfd.getValue('ImageWidth'));
  const fullH = first(mainIfd.getValue('ImageLength'));

  const makeLevel = (ifd: ImageFileDirectory, mask: boolean): LevelInternal => {
    const width = first(ifd.getValue('ImageWidth'));
    const height = first(ifd.getValue('ImageLength'));
    if (!(width >= 1 && height >= 1 && width <= MAX_DIMENSION && height <= MAX_DIMENSION)) {
      throw new RenderError('corrupt', `${url}: image size ${width} x ${height} is impossible`);
    }
    const tiled = ifd.hasTag('TileWidth');
    const blockWidth = tiled ? first(ifd.getValue('TileWidth')) : width;
    const rps = first(ifd.getValue('RowsPerStrip'));
    const blockHeight = tiled
      ? first(ifd.getValue('TileLength'))
      : Number.isFinite(rps) && rps > 0
        ? Math.min(rps, height)
        : height;
    if (!(blockWidth >= 1 && blockHeight >= 1 && blockWidth <= 65536 && blockHeight <= MAX_DIMENSION)) {
      throw new RenderError('corrupt', `${url}: block size ${blockWidth} x ${blockHeight} is impossible`);
    }
    const blocksAcross = Math.ceil(width / blockWidth);
    const blocksDown = Math.ceil(height / blockHeight);
    const lvlSamples = mask ? 1 : samples;
    const planar = first(ifd.getValue('PlanarConfiguration') ?? 1) === 2 ? 2 : 1;
    const expected = blocksAcross * blocksDown * (planar === 2 ? lvlSamples : 1);
    if (expected > MAX_BLOCKS) {
      throw new RenderError(
        'too-large',
        `${url}: ${width} x ${height} pixels in ${expected} blocks is more than cogmill reads`,
      );
    }
    if (blockWidth * blockHeight * lvlSamples * 8 > 1024 * MiB) {
      throw new RenderError(
        'too-large',
        `${url}: blocks of ${blockWidth} x ${blockHeight} pixels are too large to decode`,
      );
    }
    const offsetsTag = tiled ? 324 : 273;
    const countsTag = tiled ? 325 : 279;
    const nOffsets = tagLength(ifd, offsetsTag);
    const nCounts = tagLength(ifd, countsTag);
    if (nOffsets < expected || nCounts < expected) {
      throw new RenderError(
        'corrupt',
        `${url}: ${expected} blocks expected but the file lists ${Math.min(nOffsets, nCounts)}`,
      );
    }
    const compression = first(ifd.getValue('Compression') ?? 1) || 1;
    if (!SUPPORTED_COMPRESSIONS.has(compression)) {
      const name = COMPRESSION_NAMES[compression] ?? `code ${compression}`;
      throw new RenderError(
        'unsupported',
        `${url}: compression ${name} is not supported (supported: none, deflate, lzw, packbits, jpeg, zstd, webp); convert it with gdal_translate -co COMPRESS=DEFLATE`,
      );
    }
    const lvlBits = first(ifd.getValue('BitsPerSample'));
    const predictor = first((ifd.getValue as (t: string) => unknown)('Predictor') ?? 1) || 1;
    const bitsPerSample = ifd.getValue('BitsPerSample') as unknown;
    const params: Record<string, unknown> = {
      tileWidth: blockWidth,
      tileHeight: blockHeight,
      planarConfiguration: planar,
      bitsPerSample: bitsPerSample ?? 1,
      predictor,
    };
    const decoder = (async () => {
      if (compression === 7) params.JPEGTables = await ifd.loadValue('JPEGTables');
      return getDecoder(compression, params as never);
    })();
    decoder.catch(() => {});
    return {
      ifd,
      width,
      height,
      blockWidth,
      blockHeight,
      blocksAcross,
      blocksDown,
      tiled,
      factorX: fullW / width,
      factorY: fullH / height,
      compression,
      predictor,
      littleEndian: tiff.littleEndian,
      decoder,
      offsetsTag,
      countsTag,
      bitsPerSample: lvlBits,
      samples: lvlSamples,
    };
  };

  const images = ifds.filter((ifd) => !isMask(ifd));
  const masks = ifds.filter(isMask);
  const levels: LevelInternal[] = [];
  for (const ifd of images) {
    if (levels.length > 0) {
      if ((subfile(ifd) & 1) === 0) continue; // another page, not an overview
      if (first(ifd.getValue('SamplesPerPixel') ?? 1) !== samples) continue;
    }
    const lvl = makeLevel(ifd, false);
    const maskIfd = masks.find(
      (m) => first(m.getValue('ImageWidth')) === lvl.width && first(m.getValue('ImageLength')) === lvl.height,
    );
    levels.push(maskIfd ? { ...lvl, maskIfd: makeLevel(maskIfd, true) } : lvl);
  }
  levels.sort((a, b) => b.width - a.width);

  const planar = first(mainIfd.getValue('PlanarConfiguration') ?? 1) === 2 ? 'band' : 'pixel';
  const photometric =
    photometricCode === 2
      ? 'rgb'
      : photometricCode === 1 || photometricCode === 0
        ? 'minisblack'
        : photometricCode === 3
          ? 'palette'
          : photometricCode === 6
            ? 'ycbcr'
            : 'other';
  if (photometric === 'palette') {
    // palette images are read as their index values, like gdal with -expand not given
  }
  const info: RasterInfo = {
    url,
    size: reader.size,
    etag: reader.etag,
    width: fullW,
    height: fullH,
    bandCount: samples,
    dtype,
    nodata,
    transform,
    crs,
    blockWidth: levels[0].blockWidth,
    blockHeight: levels[0].blockHeight,
    compression: COMPRESSION_NAMES[levels[0].compression] ?? String(levels[0].compression),
    interleave: planar,
    photometric,
    hasMask: levels[0].maskIfd !== undefined,
    levels: levels.map(
      ({ width, height, blockWidth, blockHeight, blocksAcross, blocksDown, tiled, factorX, factorY }) => ({
        width,
        height,
        blockWidth,
        blockHeight,
        blocksAcross,
        blocksDown,
        tiled,
        factorX,
        factorY,
      }),
    ),
    bandDescriptions: [],
    warnings,
  };
  return { info, levels };
}
