/**
 * Over 500 lines because the mosaic VRT and the catalogue VRT share the XML writers and the source placement
 * rules, which GDAL must read the same way in both.
 *
 * The VRT view of a mosaic: a GDAL VRT on its native grid (pure: mosaic metadata in, XML text out). The other
 * virtual view, the virtual COG, is virtual.cog.ts.
 *
 * - A source in the mosaic's CRS with a north-up transform is a `ComplexSource` placed by SrcRect/DstRect
 *   (GDAL resamples with the mosaic's resampling when the resolutions differ).
 * - A source in another CRS (or with a rotated transform) is an inline `VRTWarpedDataset` (GDAL's own warper,
 *   every pixel transformed exactly, as the engine's render does) covering the source's footprint on the mosaic's
 *   pixel lattice, nested as the filename of a `ComplexSource`. It has a Byte alpha band, and the outer source
 *   uses the mask band, so pixels outside the source or at its nodata never paint over other sources. With nearest
 *   neighbour, the VRT, the virtual COG and `gdalwarp -et 0` give the same pixels.
 * - Validity: a source with a nodata value uses `<NODATA>`, one with an internal mask `<UseMaskBand>` (the warper
 *   uses a source's mask band by itself). With several bands, `<NODATA>` is per band while the engine calls a
 *   pixel nodata only when every band is; the warped sources use UNIFIED_SRC_NODATA=YES, the engine's rule.
 * - Compositing: GDAL paints the sources of a band in document order, later ones on top. "first valid wins"
 *   therefore lists the mosaic's sources in reverse order, "last" in mosaic order. min, max, mean and count
 *   cannot be expressed by a VRT: such a VRT shows the first valid source and says so in an XML comment.
 * - `SourceProperties` on every source let GDAL open the VRT without opening any source.
 * - A mosaic without a nodata value whose sources have masks (or are warped, with an alpha band) gets a dataset
 *   `<MaskBand>`: the OR of the sources' masks, so GDAL and QGIS see the pixels the tiles leave transparent.
 */
import { crsAuthority, crsFromEpsg } from '../render/crs.ts';
import { RenderError } from '../render/errors.ts';
import type { Mosaic, MosaicSource } from '../render/mosaic.ts';
import { transformBounds } from '../render/transform.ts';
import { type Crs, type DType, type GeoTransform, type Grid, gridBounds, type Resampling } from '../render/types.ts';

/** GDAL data type names. */
export const GDAL_DATA_TYPE: Record<DType, string> = {
  uint8: 'Byte',
  int8: 'Int8',
  uint16: 'UInt16',
  int16: 'Int16',
  uint32: 'UInt32',
  int32: 'Int32',
  float32: 'Float32',
  float64: 'Float64',
};

/** Resampling names of a VRT source's `resampling` attribute. */
const VRT_RESAMPLING: Record<Resampling, string> = {
  nearest: 'nearest',
  bilinear: 'bilinear',
  cubic: 'cubic',
  average: 'average',
  mode: 'mode',
};

/** Resampling names of GDALWarpOptions. */
const WARP_RESAMPLING: Record<Resampling, string> = {
  nearest: 'NearestNeighbour',
  bilinear: 'Bilinear',
  cubic: 'Cubic',
  average: 'Average',
  mode: 'Mode',
};

/**
 * The warper's approximation error in pixels. 0 means every pixel is transformed exactly, which is what the engine's
 * render agrees with (bit for bit with `gdalwarp -et 0`); GDAL's default of 0.125 moves 1-2% of nearest-neighbour
 * picks, so the VRT and the virtual COG would show different pixels in QGIS.
 */
export const WARP_MAX_ERROR_PX = 0;
const WARP_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;
const WARP_BLOCK_X = 512;
const WARP_BLOCK_Y = 128;

export interface VrtOptions {
  /** The GDAL filename of a source: `/vsicurl/https://…`, `/vsis3/bucket/key` or a local path. */
  readonly sourcePath: (source: MosaicSource) => string;
  /** A line for the XML comment at the top (e.g. how sources are referenced). */
  readonly note?: string;
  /** Metadata items per band (e.g. GDAL's STATISTICS_*), written as the band's `<Metadata>`. */
  readonly bandMetadata?: readonly (readonly (readonly [string, string])[])[];
}

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[ch]!,
  );
}

/** Text that is safe inside an XML comment (no `--`). */
function commentText(text: string): string {
  return text.replace(/-{2,}/g, (m) => m.split('').join(' '));
}

/** A number as GDAL reads it back exactly (shortest round-trip form; nan and infinities spelled as GDAL does). */
export function vrtNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Number.POSITIVE_INFINITY) return 'inf';
  if (n === Number.NEGATIVE_INFINITY) return '-inf';
  return String(n);
}

function geoTransformText(gt: GeoTransform): string {
  return gt.map(vrtNumber).join(',');
}

/**
 * The GDAL filename of a location read directly: http(s) through /vsicurl/, s3:// through /vsis3/, az:// through
 * /vsiaz/, local paths as they are. Credentials in a URL (user info, query string) are never written out: the
 * client brings its own (GDAL_HTTP_HEADERS, AWS_* / AZURE_STORAGE_* settings).
 */
export function directSourcePath(location: string): string {
  if (/^https?:\/\//i.test(location)) {
    const u = new URL(location);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return `/vsicurl/${u.toString()}`;
  }
  if (location.startsWith('s3://')) return `/vsis3/${location.slice(5)}`;
  if (location.startsWith('az://')) return `/vsiaz/${location.slice(5)}`;
  if (location.startsWith('file://')) return location.slice(7);
  return location;
}

function isNorthUp(gt: GeoTransform): boolean {
  return gt[2] === 0 && gt[4] === 0 && gt[1] > 0 && gt[5] < 0;
}

/**
 * What the VRT needs of a raster: a source's header (RasterInfo), or what a catalogue says of an item's asset (no
 * block size then: GDAL reads it when it opens the asset).
 */
export interface VrtRaster {
  readonly crs: Crs;
  readonly transform: GeoTransform;
  readonly width: number;
  readonly height: number;
  readonly dtype: DType;
  readonly nodata: number | undefined;
  readonly hasMask: boolean;
  readonly blockWidth?: number;
  readonly blockHeight?: number;
}

/** The part of the mosaic grid (whole pixels) a source's footprint covers, or undefined when it misses it. */
export function sourceFootprintWindow(
  grid: Grid,
  info: VrtRaster,
): { x0: number; y0: number; width: number; height: number } | undefined {
  const srcBounds = gridBounds({ crs: info.crs, transform: info.transform, width: info.width, height: info.height });
  let b: readonly number[];
  try {
    b = info.crs.epsg === grid.crs.epsg ? srcBounds : transformBounds(srcBounds, info.crs, grid.crs);
  } catch {
    return undefined;
  }
  const gt = grid.transform;
  const cols = [(b[0] - gt[0]) / gt[1], (b[2] - gt[0]) / gt[1]];
  const rows = [(b[3] - gt[3]) / gt[5], (b[1] - gt[3]) / gt[5]];
  const x0 = Math.max(0, Math.floor(Math.min(...cols)));
  const x1 = Math.min(grid.width, Math.ceil(Math.max(...cols)));
  const y0 = Math.max(0, Math.floor(Math.min(...rows)));
  const y1 = Math.min(grid.height, Math.ceil(Math.max(...rows)));
  if (!(x1 > x0 && y1 > y0)) return undefined;
  return { x0, y0, width: x1 - x0, height: y1 - y0 };
}

/** Order in which the VRT lists the sources so GDAL's "later on top" gives the mosaic's compositing. */
export function vrtSourceOrder(mosaic: Mosaic): MosaicSource[] {
  return mosaic.composite === 'last' ? [...mosaic.sources] : [...mosaic.sources].reverse();
}

interface PlacedSource {
  /** GDAL filename the outer ComplexSource opens (a path, or an inline warped VRT) */
  readonly filename: string;
  readonly properties: { width: number; height: number; dtype: DType; blockX?: number; blockY?: number };
  readonly srcRect: readonly [number, number, number, number];
  readonly dstRect: readonly [number, number, number, number];
  /** band of the opened dataset for mosaic band k (0-based k) */
  readonly band: (k: number) => number;
  readonly nodata: number | undefined;
  readonly useMask: boolean;
  readonly warped: boolean;
}

/** An inline VRTWarpedDataset of `srcBands` (1-based) of a raster, on the mosaic's lattice over `win`. */
function warpedVrt(
  mosaic: Mosaic,
  info: VrtRaster,
  srcBands: readonly number[],
  path: string,
  win: { x0: number; y0: number; width: number; height: number },
): string {
  const g = mosaic.grid.transform;
  const dstGt: GeoTransform = [g[0] + win.x0 * g[1], g[1], 0, g[3] + win.y0 * g[5], 0, g[5]];
  const dtype = GDAL_DATA_TYPE[info.dtype];
  const nb = srcBands.length;
  const bands = srcBands
    .map(
      (_, k) =>
        `<VRTRasterBand dataType="${dtype}" band="${k + 1}" subClass="VRTWarpedRasterBand"><ColorInterp>Gray</ColorInterp></VRTRasterBand>`,
    )
    .join('');
  // GDAL makes a mask of an alpha band only when it is Byte or UInt16: a Byte alpha band works for every data type
  const alpha = `<VRTRasterBand dataType="Byte" band="${nb + 1}" subClass="VRTWarpedRasterBand"><ColorInterp>Alpha</ColorInterp></VRTRasterBand>`;
  const mappings = srcBands
    .map((b, k) => {
      const nd =
        info.nodata === undefined
          ? ''
          : `<SrcNoDataReal>${vrtNumber(info.nodata)}</SrcNoDataReal><SrcNoDataImag>0</SrcNoDataImag>`;
      return `<BandMapping src="${b}" dst="${k + 1}">${nd}</BandMapping>`;
    })
    .join('');
  const resampling = WARP_RESAMPLING[mosaic.resampling];
  return (
    `<VRTDataset rasterXSize="${win.width}" rasterYSize="${win.height}" subClass="VRTWarpedDataset">` +
    `<SRS>${crsAuthority(mosaic.grid.crs)}</SRS>` +
    `<GeoTransform>${geoTransformText(dstGt)}</GeoTransform>` +
    bands +
    alpha +
    `<BlockXSize>${WARP_BLOCK_X}</BlockXSize><BlockYSize>${WARP_BLOCK_Y}</BlockYSize>` +
    '<GDALWarpOptions>' +
    `<WarpMemoryLimit>${WARP_MEMORY_LIMIT_BYTES}</WarpMemoryLimit>` +
    `<ResampleAlg>${resampling}</ResampleAlg>` +
    `<WorkingDataType>${dtype}</WorkingDataType>` +
    `<Option name="ERROR_THRESHOLD">${WARP_MAX_ERROR_PX}</Option>` +
    '<Option name="INIT_DEST">0</Option>' +
    // a source pixel is nodata only when every band is (the engine's rule)
    '<Option name="UNIFIED_SRC_NODATA">YES</Option>' +
    '<Option name="DST_ALPHA_MAX">255</Option>' +
    `<SourceDataset relativeToVRT="0">${escapeXml(path)}</SourceDataset>` +
    '<Transformer>' +
    (WARP_MAX_ERROR_PX > 0 ? `<ApproxTransformer><MaxError>${WARP_MAX_ERROR_PX}</MaxError><BaseTransformer>` : '') +
    '<GenImgProjTransformer>' +
    `<SrcGeoTransform>${geoTransformText(info.transform)}</SrcGeoTransform>` +
    `<DstGeoTransform>${geoTransformText(dstGt)}</DstGeoTransform>` +
    '<ReprojectTransformer><ReprojectionTransformer>' +
    `<SourceSRS>${crsAuthority(info.crs)}</SourceSRS>` +
    `<TargetSRS>${crsAuthority(mosaic.grid.crs)}</TargetSRS>` +
    '</ReprojectionTransformer></ReprojectTransformer>' +
    '</GenImgProjTransformer>' +
    (WARP_MAX_ERROR_PX > 0 ? '</BaseTransformer></ApproxTransformer>' : '') +
    '</Transformer>' +
    `<BandList>${mappings}</BandList>` +
    `<DstAlphaBand>${nb + 1}</DstAlphaBand>` +
    '</GDALWarpOptions></VRTDataset>'
  );
}

/** Where a raster goes in the mosaic's VRT; `srcBands`: its band (1-based) for each band it gives. */
function placeRaster(
  mosaic: Mosaic,
  info: VrtRaster,
  path: string,
  srcBands: readonly number[],
): PlacedSource | undefined {
  const grid = mosaic.grid;
  const mgt = grid.transform;
  const sgt = info.transform;
  if (info.crs.epsg === grid.crs.epsg && isNorthUp(sgt) && isNorthUp(mgt)) {
    const xOff = (sgt[0] - mgt[0]) / mgt[1];
    const yOff = (sgt[3] - mgt[3]) / mgt[5];
    const xSize = (info.width * sgt[1]) / mgt[1];
    const ySize = (info.height * sgt[5]) / mgt[5];
    if (xOff >= grid.width || yOff >= grid.height || xOff + xSize <= 0 || yOff + ySize <= 0) return undefined;
    return {
      filename: path,
      properties: {
        width: info.width,
        height: info.height,
        dtype: info.dtype,
        blockX: info.blockWidth,
        blockY: info.blockHeight,
      },
      srcRect: [0, 0, info.width, info.height],
      dstRect: [xOff, yOff, xSize, ySize],
      band: (k) => srcBands[k],
      nodata: info.nodata,
      useMask: info.nodata === undefined && info.hasMask,
      warped: false,
    };
  }
  const win = sourceFootprintWindow(grid, info);
  if (!win) return undefined;
  return {
    filename: warpedVrt(mosaic, info, srcBands, path, win),
    properties: { width: win.width, height: win.height, dtype: info.dtype, blockX: WARP_BLOCK_X, blockY: WARP_BLOCK_Y },
    srcRect: [0, 0, win.width, win.height],
    dstRect: [win.x0, win.y0, win.width, win.height],
    band: (k) => k + 1,
    nodata: undefined,
    useMask: true,
    warped: true,
  };
}

function placeSource(mosaic: Mosaic, source: MosaicSource, path: string): PlacedSource | undefined {
  return placeRaster(
    mosaic,
    source.raster.info,
    path,
    mosaic.bandIndices.map((b) => b + 1),
  );
}

function blockAttributes(pr: PlacedSource['properties']): string {
  return pr.blockX && pr.blockY ? ` BlockXSize="${pr.blockX}" BlockYSize="${pr.blockY}"` : '';
}

function rect(tag: string, r: readonly [number, number, number, number]): string {
  return `<${tag} xOff="${vrtNumber(r[0])}" yOff="${vrtNumber(r[1])}" xSize="${vrtNumber(r[2])}" ySize="${vrtNumber(r[3])}"/>`;
}

function colorInterp(mosaic: Mosaic, k: number): string {
  if (mosaic.dtype === 'uint8' && (mosaic.bandCount === 3 || mosaic.bandCount === 4))
    return ['Red', 'Green', 'Blue', 'Alpha'][k];
  return 'Gray';
}

function hasMaskBand(mosaic: Mosaic, placed: readonly PlacedSource[]): boolean {
  return mosaic.nodata === undefined && placed.some((p) => p.useMask);
}

/**
 * True when the mosaic's VRT has a dataset mask band (no nodata value, sources with masks or warped): QGIS then
 * shows the mask as an extra alpha band after the data bands.
 */
export function mosaicVrtHasMask(mosaic: Mosaic): boolean {
  const placed = mosaic.sources.map((s) => placeSource(mosaic, s, '')).filter((p) => p !== undefined);
  return hasMaskBand(mosaic, placed);
}

/** The VRT XML of a mosaic. */
export function mosaicVrt(mosaic: Mosaic, options: VrtOptions): string {
  const grid = mosaic.grid;
  const order = vrtSourceOrder(mosaic);
  const placed: PlacedSource[] = [];
  const skipped: number[] = [];
  for (const s of order) {
    const p = placeSource(mosaic, s, options.sourcePath(s));
    if (p) placed.push(p);
    else skipped.push(s.index);
  }
  const notes = [
    `cogmill mosaic "${mosaic.id}" (${mosaic.title}): ${grid.width} x ${grid.height} pixels, ${mosaic.bandCount} band(s) ${mosaic.dtype}, ${crsAuthority(grid.crs)}.`,
  ];
  if (mosaic.composite === 'first' || mosaic.composite === 'last') {
    notes.push(
      `Compositing "${mosaic.composite} valid pixel wins": GDAL paints later sources on top, so sources are listed ${mosaic.composite === 'first' ? 'last to first' : 'first to last'}.`,
    );
  } else {
    notes.push(
      `Compositing "${mosaic.composite}" cannot be expressed in a VRT; this VRT shows the first valid pixel instead. The virtual COG (${mosaic.id}.tif) has the ${mosaic.composite} values.`,
    );
  }
  if (placed.some((p) => p.warped)) {
    notes.push(
      `Sources in another CRS are reprojected by GDAL's warper (inline VRTWarpedDataset, ${mosaic.resampling}, ${WARP_MAX_ERROR_PX > 0 ? `max error ${WARP_MAX_ERROR_PX} px` : 'exact transformation of every pixel'}).`,
    );
  }
  if (skipped.length) notes.push(`Sources ${skipped.join(', ')} lie outside the mosaic's extent and are left out.`);
  if (options.note) notes.push(options.note);
  return vrtXml(
    mosaic,
    notes,
    Array.from({ length: mosaic.bandCount }, () => placed),
    placed,
    options,
  );
}

/**
 * The XML: the dataset, then per band k its sources `perBand[k]` (GDAL paints them in order, later on top; each
 * placed source gives band k through `band(k)`), then a dataset mask over `maskSources` when the mosaic has no nodata.
 */
function vrtXml(
  mosaic: Mosaic,
  notes: readonly string[],
  perBand: readonly (readonly PlacedSource[])[],
  maskSources: readonly PlacedSource[],
  options: Pick<VrtOptions, 'bandMetadata'>,
): string {
  const grid = mosaic.grid;

  const out: string[] = [];
  out.push(`<VRTDataset rasterXSize="${grid.width}" rasterYSize="${grid.height}">`);
  out.push(`  <!--\n${notes.map((n) => `    ${commentText(n)}`).join('\n')}\n  -->`);
  out.push(`  <SRS>${crsAuthority(grid.crs)}</SRS>`);
  out.push(`  <GeoTransform>${geoTransformText(grid.transform)}</GeoTransform>`);
  out.push('  <Metadata><MDI key="AREA_OR_POINT">Area</MDI></Metadata>');
  for (let k = 0; k < mosaic.bandCount; k++) {
    out.push(`  <VRTRasterBand dataType="${GDAL_DATA_TYPE[mosaic.dtype]}" band="${k + 1}">`);
    out.push(`    <Description>${escapeXml(mosaic.bandNames[k] ?? `b${k + 1}`)}</Description>`);
    const items = options.bandMetadata?.[k] ?? [];
    if (items.length) {
      out.push(
        `    <Metadata>${items.map(([key, v]) => `<MDI key="${escapeXml(key)}">${escapeXml(v)}</MDI>`).join('')}</Metadata>`,
      );
    }
    if (mosaic.nodata !== undefined) out.push(`    <NoDataValue>${vrtNumber(mosaic.nodata)}</NoDataValue>`);
    out.push(`    <ColorInterp>${colorInterp(mosaic, k)}</ColorInterp>`);
    for (const p of perBand[k]) {
      const resampling = p.warped ? '' : ` resampling="${VRT_RESAMPLING[mosaic.resampling]}"`;
      out.push(`    <ComplexSource${resampling}>`);
      out.push(`      <SourceFilename relativeToVRT="0">${escapeXml(p.filename)}</SourceFilename>`);
      out.push(`      <SourceBand>${p.band(k)}</SourceBand>`);
      const pr = p.properties;
      out.push(
        `      <SourceProperties RasterXSize="${pr.width}" RasterYSize="${pr.height}" DataType="${GDAL_DATA_TYPE[pr.dtype]}"${blockAttributes(pr)}/>`,
      );
      out.push(`      ${rect('SrcRect', p.srcRect)}`);
      out.push(`      ${rect('DstRect', p.dstRect)}`);
      if (p.nodata !== undefined) out.push(`      <NODATA>${vrtNumber(p.nodata)}</NODATA>`);
      if (p.useMask) out.push('      <UseMaskBand>true</UseMaskBand>');
      out.push('    </ComplexSource>');
    }
    out.push('  </VRTRasterBand>');
  }
  // Without a nodata value, validity lives in the sources' masks (and the warped sources' alpha): a dataset mask
  // that ORs them (sources paint only their valid pixels) tells GDAL and QGIS which pixels are empty, as the tiles do.
  if (hasMaskBand(mosaic, maskSources)) {
    out.push('  <MaskBand>');
    out.push('    <VRTRasterBand dataType="Byte">');
    for (const p of maskSources) {
      const pr = p.properties;
      out.push('      <ComplexSource resampling="nearest">');
      out.push(`        <SourceFilename relativeToVRT="0">${escapeXml(p.filename)}</SourceFilename>`);
      out.push('        <SourceBand>mask,1</SourceBand>');
      out.push(
        `        <SourceProperties RasterXSize="${pr.width}" RasterYSize="${pr.height}" DataType="Byte"${blockAttributes(pr)}/>`,
      );
      out.push(`        ${rect('SrcRect', p.srcRect)}`);
      out.push(`        ${rect('DstRect', p.dstRect)}`);
      out.push('        <NODATA>0</NODATA>');
      out.push('      </ComplexSource>');
    }
    out.push('    </VRTRasterBand>');
    out.push('  </MaskBand>');
  }
  out.push('</VRTDataset>');
  return `${out.join('\n')}\n`;
}

/** Most ComplexSources (items x bands) one catalogue VRT lists; more must be narrowed with a window or a datetime. */
export const MAX_CATALOGUE_VRT_SOURCES = 20_000;

export interface CatalogueVrtOptions {
  /** the items to list (indices into the mosaic's items, in compositing order): those under a window, in a period */
  readonly items: readonly number[];
  /** The GDAL filename of an item's asset (`item` indexes the mosaic's items). */
  readonly assetPath: (item: number, asset: string, href: string) => string;
  readonly note?: string;
  readonly bandMetadata?: VrtOptions['bandMetadata'];
}

/**
 * The VRT of a catalogue mosaic: band k lists asset `bands[k]` of the chosen items (one ComplexSource each, the
 * asset's own band; a 20 m asset on the 10 m grid is resampled by GDAL, an asset in another CRS warped inline), in
 * the order that gives the composite ("first": last to first). Grids, sample types and nodata come from the
 * catalogue, so writing it reads nothing. Composites a VRT cannot express (min, max, mean, median, count) are
 * refused: GDAL would silently show something else.
 */
export function catalogueVrt(mosaic: Mosaic, options: CatalogueVrtOptions): string {
  const mi = mosaic.items;
  if (!mi) throw new RenderError('internal', `mosaic ${mosaic.id} is not a catalogue mosaic`);
  if (mosaic.composite !== 'first' && mosaic.composite !== 'last') {
    throw new RenderError(
      'unsupported',
      `mosaic ${mosaic.id} composites "${mosaic.composite}", which a VRT cannot express (GDAL paints one valid pixel over another); read /mosaics/${mosaic.id}.tif (the virtual COG) for its values`,
    );
  }
  const sources = options.items.length * mi.bands.length;
  if (sources > MAX_CATALOGUE_VRT_SOURCES) {
    throw new RenderError(
      'too-large',
      `the VRT of mosaic ${mosaic.id} would list ${options.items.length} items x ${mi.bands.length} bands = ${sources} sources (at most ${MAX_CATALOGUE_VRT_SOURCES}); narrow it with bbox=minx,miny,maxx,maxy (in the mosaic's CRS) or datetime=`,
    );
  }
  const order = mosaic.composite === 'first' ? [...options.items].reverse() : [...options.items];
  const placedByKey = new Map<string, PlacedSource | null>();
  let warped = false;
  const perBand = mi.bands.map((ref) =>
    order.flatMap((i) => {
      // a band of one period's set lists the items of that period only
      const it = mi.items[i];
      if (ref.period && !(it.endDatetime >= ref.period.startMs && it.datetime <= ref.period.endMs)) return [];
      const key = `${i}\n${ref.asset}\n${ref.band}`;
      let p = placedByKey.get(key);
      if (p === undefined) {
        const a = mi.items[i].assets[ref.asset];
        p = null;
        if (a?.transform && a.epsg !== undefined && a.width !== undefined && a.height !== undefined) {
          const info: VrtRaster = {
            crs: crsFromEpsg(a.epsg),
            transform: a.transform,
            width: a.width,
            height: a.height,
            dtype: a.dtype ?? mosaic.dtype,
            nodata: a.nodata ?? mosaic.nodata,
            hasMask: false,
          };
          const placed = placeRaster(mosaic, info, options.assetPath(i, ref.asset, a.href), [ref.band + 1]);
          // one band of the asset whichever mosaic band lists it: the asset's own, or the warped VRT's first
          if (placed) p = { ...placed, band: () => (placed.warped ? 1 : ref.band + 1) };
        }
        placedByKey.set(key, p);
      }
      if (p?.warped) warped = true;
      return p ? [p] : [];
    }),
  );
  const grid = mosaic.grid;
  const notes = [
    `cogmill catalogue mosaic "${mosaic.id}" (${mosaic.title}): ${grid.width} x ${grid.height} pixels, ${mosaic.bandCount} band(s) ${mosaic.dtype}, ${crsAuthority(grid.crs)}; ${options.items.length} of its ${mi.items.length} items.`,
    `Bands ${mi.bands.map((b) => b.name).join(', ')}: an asset of each item${mi.bands.some((b) => b.period) ? ' of one period (asset@period)' : ''}. Compositing "${mosaic.composite} valid pixel wins": GDAL paints later sources on top, so items are listed ${mosaic.composite === 'first' ? 'last to first' : 'first to last'} of the compositing order.`,
  ];
  if (warped) {
    notes.push(
      `Assets in another CRS are reprojected by GDAL's warper (inline VRTWarpedDataset, ${mosaic.resampling}, ${WARP_MAX_ERROR_PX > 0 ? `max error ${WARP_MAX_ERROR_PX} px` : 'exact transformation of every pixel'}).`,
    );
  }
  if (options.note) notes.push(options.note);
  return vrtXml(mosaic, notes, perBand, perBand[0] ?? [], options);
}
