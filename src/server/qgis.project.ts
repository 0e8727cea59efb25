/**
 * A QGIS project (`.qgs` XML, zipped as `.qgz`) that opens every view of one mosaic, styled like its tiles
 * (pure: mosaic, URLs and style in, text out). One group named after the mosaic holds, top to bottom:
 *
 * - the virtual COG (real values) over `/vsicurl?list_dir=no&url=...`: `list_dir=no` is GDAL's per-file form of
 *   GDAL_DISABLE_READDIR_ON_OPEN, so opening it costs no directory probe. Its renderer shows the same bands with
 *   the same stretch (min/max) and colormap as the tiles of the same request: multiband colour for three output
 *   bands, single band gray for one, single band pseudocolour (a 256-stop ramp of the tiles' colormap) for one
 *   band with `colormap=`;
 * - the VRT (real values), styled the same way;
 * - the WMTS layer in the mosaic's native grid (source pixels unresampled) with the request's style;
 * - the XYZ layer (WebMercatorQuad) with the request's style.
 *
 * With `expression=` that QGIS's raster calculator can compute (one output; arithmetic, comparisons, abs, sqrt,
 * logs, trigonometry), a band math layer of QGIS's virtual raster provider over the virtual COG comes first,
 * styled with the expression's stretch and colormap as the tiles are.
 *
 * Only the first layer is switched on (the others are one click away), so opening the project renders one view.
 * The project CRS is the mosaic's CRS and the view is the mosaic's extent.
 *
 * A bearer token (for deployments that protect the tile routes) goes into the XYZ and WMTS data sources as
 * `http-header:Authorization=...`, which QGIS 3.26+ sends with every request of the layer; it is never put into a
 * URL. GDAL layers cannot carry a header per layer in QGIS 3.22: the README says to set GDAL_HTTP_HEADERS.
 */
import { crsFromEpsg } from '../render/crs.ts';
import type { Colormap } from '../render/style.colormap.ts';
import type { ExprNode } from '../render/style.expression.ts';
import type { Bounds, Crs, Resampling } from '../render/types.ts';
import { xmlEscape } from './wmts.capabilities.ts';

/** The QGIS version the project is written for (and read back by the tests); later versions read it too. */
export const QGIS_PROJECT_VERSION = '3.22.0-Białowieża';

export interface QgisProjectStyle {
  /** 1-based bands shown: one (gray or colormap) or three (red, green, blue) */
  readonly bands: readonly number[];
  /** [min, max] per shown band: the stretch the tiles use */
  readonly ranges: readonly (readonly [number, number])[];
  readonly colormap?: Colormap;
  readonly resampling?: Resampling;
  /** values up to this one are drawn transparent (see VIRTUAL_RASTER_NODATA_MAX) */
  readonly transparentUpTo?: number;
}

/**
 * QGIS 3.22's virtual raster provider writes -FLT_MAX where an input is nodata without declaring it nodata (and
 * ignores user nodata values): the renderer makes everything up to this value transparent, as the tiles draw it.
 */
const VIRTUAL_RASTER_NODATA_MAX = -3.4e38;

export interface QgisProjectInput {
  readonly id: string;
  readonly title: string;
  readonly crs: Crs;
  /** the mosaic's extent in its CRS */
  readonly bounds: Bounds;
  readonly bandCount: number;
  /** `http://host/mosaics/ID.tif` */
  readonly cogUrl: string;
  /** `http://host/mosaics/ID.vrt` */
  readonly vrtUrl: string;
  /** the VRT has a dataset mask, which QGIS shows as band `bandCount + 1`: the renderer takes it as alpha */
  readonly vrtMaskBand?: boolean;
  /** the capabilities URL, style query included */
  readonly wmtsUrl: string;
  /** the matrix set the WMTS layer uses (`native` when the mosaic has one) */
  readonly wmtsTileMatrixSet: string;
  /** the CRS of that matrix set and the mosaic's extent in it */
  readonly wmtsCrs: Crs;
  readonly wmtsBounds: Bounds;
  /** the mosaic's extent in EPSG:3857 (the XYZ layer's CRS) */
  readonly mercatorBounds: Bounds;
  /** XYZ template with `{z}/{x}/{y}`, style query included */
  readonly xyzUrl: string;
  readonly minZoom: number;
  readonly maxZoom: number;
  readonly style: QgisProjectStyle;
  /** an Authorization header value the XYZ and WMTS layers send (see the file comment) */
  readonly authorization?: string;
  /** band math QGIS can compute: a layer of QGIS's virtual raster provider over the virtual COG, on top */
  readonly expression?: QgisProjectExpression;
}

export interface QgisProjectExpression {
  /** the expression as the request gave it (layer name) */
  readonly text: string;
  /** the formula in QGIS raster calculator syntax, over `"m@k"` (band k of the virtual COG) */
  readonly formula: string;
  /** the mosaic's grid size: the virtual raster computes on the mosaic's own pixels */
  readonly width: number;
  readonly height: number;
  /** band 1 (the formula's result) with the tiles' stretch of the expression and the colormap */
  readonly style: QgisProjectStyle;
}

/**
 * An expression tree in QGIS raster calculator syntax, or undefined when QGIS cannot compute it (functions it
 * lacks, `%`, `!`). Band k reads `"m@k"`.
 */
export function qgisFormula(node: ExprNode): string | undefined {
  switch (node.kind) {
    case 'num':
      return Number.isFinite(node.value) ? String(node.value) : undefined;
    case 'band':
      return `"m@${node.band}"`;
    case 'unary': {
      const a = qgisFormula(node.arg);
      if (a === undefined || node.op === '!') return undefined;
      return node.op === '-' ? `(-${a})` : a;
    }
    case 'binary': {
      const op = QGIS_BINARY[node.op];
      const l = qgisFormula(node.left);
      const r = qgisFormula(node.right);
      return op && l !== undefined && r !== undefined ? `(${l} ${op} ${r})` : undefined;
    }
    case 'call': {
      const fn = QGIS_FUNCTIONS[node.fn];
      const args = node.args.map(qgisFormula);
      if (!fn || args.some((a) => a === undefined)) return undefined;
      return `${fn}(${args.join(', ')})`;
    }
  }
}

const QGIS_BINARY: Readonly<Record<string, string>> = {
  '+': '+',
  '-': '-',
  '*': '*',
  '/': '/',
  '^': '^',
  '<': '<',
  '<=': '<=',
  '>': '>',
  '>=': '>=',
  '==': '=',
  '!=': '!=',
  '&&': 'AND',
  '||': 'OR',
};

/** Functions of cogmill's band math that QGIS's raster calculator has (natural log is `ln` there). */
const QGIS_FUNCTIONS: Readonly<Record<string, string>> = {
  abs: 'abs',
  sqrt: 'sqrt',
  log: 'ln',
  log10: 'log10',
  sin: 'sin',
  cos: 'cos',
  tan: 'tan',
  asin: 'asin',
  acos: 'acos',
  atan: 'atan',
};

/** The GDAL filename of a URL with directory listing off (GDAL_DISABLE_READDIR_ON_OPEN for that file only). */
export function vsicurlNoListing(url: string): string {
  return `/vsicurl?list_dir=no&url=${encodeURIComponent(url)}`;
}

function num(v: number): string {
  return Number.isFinite(v) ? String(v) : '0';
}

function spatialRefSys(crs: Crs): string {
  // QGIS resolves the authority id through the proj4 text when srsid is 0 (its own database ids are unknown here)
  return (
    '<spatialrefsys><wkt></wkt>' +
    `<proj4>${xmlEscape(crs.proj4)}</proj4><srsid>0</srsid><srid>${crs.epsg}</srid>` +
    `<authid>EPSG:${crs.epsg}</authid><description>${xmlEscape(crs.name)}</description>` +
    `<projectionacronym></projectionacronym><ellipsoidacronym></ellipsoidacronym>` +
    `<geographicflag>${crs.geographic ? 'true' : 'false'}</geographicflag></spatialrefsys>`
  );
}

function extentXml(tag: string, b: Bounds): string {
  return `<${tag}><xmin>${num(b[0])}</xmin><ymin>${num(b[1])}</ymin><xmax>${num(b[2])}</xmax><ymax>${num(b[3])}</ymax></${tag}>`;
}

/** User-defined limits: QGIS keeps the min/max it is given and never recomputes them. */
const MIN_MAX_ORIGIN =
  '<minMaxOrigin><limits>None</limits><extent>WholeRaster</extent><statAccuracy>Estimated</statAccuracy>' +
  '<cumulativeCutLower>0.02</cumulativeCutLower><cumulativeCutUpper>0.98</cumulativeCutUpper><stdDevFactor>2</stdDevFactor></minMaxOrigin>';

function contrast(tag: string, range: readonly [number, number]): string {
  return `<${tag}><minValue>${num(range[0])}</minValue><maxValue>${num(range[1])}</maxValue><algorithm>StretchToMinimumMaximum</algorithm></${tag}>`;
}

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}

/**
 * The tiles colour a value v by `lut[round((v - lo) * 255 / (hi - lo))]` (clamped): a ramp with a stop at the value
 * of every entry, interpolated between stops and extended beyond them (clip 0), draws the same colours.
 */
function pseudocolor(
  band: number,
  range: readonly [number, number],
  cm: Colormap,
  transparent: string,
  alphaBand: number,
): string {
  const [lo, hi] = range;
  const items: string[] = [];
  for (let k = 0; k < 256; k++) {
    const v = lo + ((hi - lo) * k) / 255;
    const l = k * 4;
    const color = `#${hex2(cm.lut[l])}${hex2(cm.lut[l + 1])}${hex2(cm.lut[l + 2])}`;
    items.push(
      `<item alpha="${cm.lut[l + 3]}" value="${num(v)}" label="${num(Number(v.toPrecision(6)))}" color="${color}"/>`,
    );
  }
  return (
    `<rasterrenderer opacity="1" alphaBand="${alphaBand}" band="${band}" classificationMin="${num(lo)}" classificationMax="${num(hi)}" nodataColor="" type="singlebandpseudocolor">` +
    `${transparent}${MIN_MAX_ORIGIN}<rastershader>` +
    `<colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="${num(lo)}" maximumValue="${num(hi)}" labelPrecision="4">` +
    `${items.join('')}</colorrampshader></rastershader></rasterrenderer>`
  );
}

function transparency(style: QgisProjectStyle): string {
  if (style.transparentUpTo === undefined) return '<rasterTransparency/>';
  return (
    '<rasterTransparency><singleValuePixelList>' +
    `<pixelListEntry min="-1.7976931348623157e+308" max="${style.transparentUpTo}" percentTransparent="100"/>` +
    '</singleValuePixelList></rasterTransparency>'
  );
}

/** The renderer of a values layer (COG or VRT) that draws what the tiles draw. */
export function valuesRenderer(style: QgisProjectStyle, alphaBand = -1): string {
  const range = (k: number) => style.ranges[Math.min(k, style.ranges.length - 1)];
  if (style.bands.length === 3) {
    const [r, g, b] = style.bands;
    return (
      `<rasterrenderer opacity="1" alphaBand="${alphaBand}" redBand="${r}" greenBand="${g}" blueBand="${b}" nodataColor="" type="multibandcolor">` +
      `<rasterTransparency/>${MIN_MAX_ORIGIN}` +
      contrast('redContrastEnhancement', range(0)) +
      contrast('greenContrastEnhancement', range(1)) +
      contrast('blueContrastEnhancement', range(2)) +
      '</rasterrenderer>'
    );
  }
  if (style.colormap) return pseudocolor(style.bands[0], range(0), style.colormap, transparency(style), alphaBand);
  return (
    `<rasterrenderer opacity="1" alphaBand="${alphaBand}" grayBand="${style.bands[0]}" gradient="BlackToWhite" nodataColor="" type="singlebandgray">` +
    `${transparency(style)}${MIN_MAX_ORIGIN}${contrast('contrastEnhancement', range(0))}</rasterrenderer>`
  );
}

const QGIS_RESAMPLER: Record<Resampling, string | undefined> = {
  nearest: undefined,
  bilinear: 'bilinear',
  cubic: 'cubic',
  average: 'bilinear',
  mode: undefined,
};

function pipe(renderer: string, resampling: Resampling | undefined): string {
  const r = resampling ? QGIS_RESAMPLER[resampling] : undefined;
  const resampler = r
    ? `<rasterresampler maxOversampling="2" zoomedInResampler="${r}" zoomedOutResampler="${r}"/>`
    : '<rasterresampler maxOversampling="2"/>';
  return (
    `<pipe>${renderer}<brightnesscontrast gamma="1" contrast="0" brightness="0"/>` +
    '<huesaturation grayscaleMode="0" colorizeRed="255" colorizeOn="0" colorizeStrength="100" invertColors="0" colorizeBlue="128" saturation="0" colorizeGreen="128"/>' +
    `${resampler}<resamplingStage>resamplingFilter</resamplingStage></pipe>`
  );
}

/** Renderer of an image layer (WMTS, XYZ): the RGBA the server drew, as is. */
const IMAGE_RENDERER = `<rasterrenderer opacity="1" alphaBand="-1" band="1" nodataColor="" type="singlebandcolordata"><rasterTransparency/>${MIN_MAX_ORIGIN}</rasterrenderer>`;

interface LayerSpec {
  readonly id: string;
  readonly name: string;
  readonly provider: 'gdal' | 'wms' | 'virtualraster';
  readonly source: string;
  readonly crs: Crs;
  readonly extent: Bounds;
  readonly pipe: string;
  readonly visible: boolean;
}

function mapLayer(l: LayerSpec): string {
  return (
    '<maplayer type="raster" hasScaleBasedVisibilityFlag="0" maxScale="0" minScale="1e+08" autoRefreshEnabled="0" autoRefreshTime="0" refreshOnNotifyEnabled="0" refreshOnNotifyMessage="" styleCategories="AllStyleCategories">' +
    extentXml('extent', l.extent) +
    `<id>${xmlEscape(l.id)}</id><datasource>${xmlEscape(l.source)}</datasource>` +
    `<layername>${xmlEscape(l.name)}</layername><srs>${spatialRefSys(l.crs)}</srs>` +
    `<provider encoding="">${l.provider}</provider>` +
    `<noData><noDataList useSrcNoData="1" bandNo="1"/></noData>` +
    '<map-layer-style-manager current="default"><map-layer-style name="default"/></map-layer-style-manager>' +
    '<flags><Identifiable>1</Identifiable><Removable>1</Removable><Searchable>1</Searchable><Private>0</Private></flags>' +
    `${l.pipe}<blendMode>0</blendMode></maplayer>`
  );
}

function treeLayer(l: LayerSpec): string {
  return `<layer-tree-layer id="${xmlEscape(l.id)}" name="${xmlEscape(l.name)}" source="${xmlEscape(l.source)}" providerKey="${l.provider}" checked="${l.visible ? 'Qt::Checked' : 'Qt::Unchecked'}" expanded="0"><customproperties/></layer-tree-layer>`;
}

/** A QGIS data source URI (key=value pairs joined by `&`, values percent-encoded where they hold URLs). */
function wmsUri(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

/** The layers of the project, top to bottom. */
export function qgisProjectLayers(p: QgisProjectInput): LayerSpec[] {
  const safeId = p.id.replace(/[^A-Za-z0-9_]/g, '_');
  const values = pipe(valuesRenderer(p.style), p.style.resampling);
  const header: [string, string][] = p.authorization
    ? [['http-header:Authorization', encodeURIComponent(p.authorization)]]
    : [];
  const wmts = wmsUri([
    ['contextualWMSLegend', '0'],
    ['crs', `EPSG:${p.wmtsCrs.epsg}`],
    ['dpiMode', '7'],
    ['featureCount', '10'],
    ['format', 'image/png'],
    ...header,
    ['layers', encodeURIComponent(p.id)],
    ['styles', 'default'],
    ['tileMatrixSet', encodeURIComponent(p.wmtsTileMatrixSet)],
    ['url', encodeURIComponent(p.wmtsUrl)],
  ]);
  const xyz = wmsUri([
    ...header,
    ['type', 'xyz'],
    ['url', encodeURIComponent(p.xyzUrl)],
    ['zmax', String(p.maxZoom)],
    ['zmin', String(p.minZoom)],
  ]);
  const title = p.title || p.id;
  const expr = p.expression;
  const math: LayerSpec[] = expr
    ? [
        {
          id: `cogmill_${safeId}_expression`,
          name: `${title} · ${expr.text}`,
          provider: 'virtualraster',
          // QGIS decodes the whole URI before it splits the inner one: the inner source holds no '&' or '?'
          source:
            `?crs=EPSG:${p.crs.epsg}&extent=${p.bounds.map(num).join(',')}&width=${expr.width}&height=${expr.height}` +
            `&formula=${encodeURIComponent(expr.formula)}&m:uri=${encodeURIComponent(`/vsicurl/${p.cogUrl}`)}&m:provider=gdal`,
          crs: p.crs,
          extent: p.bounds,
          pipe: pipe(
            valuesRenderer({ ...expr.style, transparentUpTo: VIRTUAL_RASTER_NODATA_MAX }),
            expr.style.resampling,
          ),
          visible: true,
        },
      ]
    : [];
  return [
    ...math,
    {
      id: `cogmill_${safeId}_cog`,
      name: `${title} · virtual COG (values)`,
      provider: 'gdal',
      source: vsicurlNoListing(p.cogUrl),
      crs: p.crs,
      extent: p.bounds,
      pipe: values,
      visible: !expr,
    },
    {
      id: `cogmill_${safeId}_vrt`,
      name: `${title} · VRT (values)`,
      provider: 'gdal',
      source: vsicurlNoListing(p.vrtUrl),
      crs: p.crs,
      extent: p.bounds,
      pipe: p.vrtMaskBand ? pipe(valuesRenderer(p.style, p.bandCount + 1), p.style.resampling) : values,
      visible: false,
    },
    {
      id: `cogmill_${safeId}_wmts`,
      name: `${title} · WMTS (${p.wmtsTileMatrixSet === 'native' ? 'native grid' : p.wmtsTileMatrixSet})`,
      provider: 'wms',
      source: wmts,
      crs: p.wmtsCrs,
      extent: p.wmtsBounds,
      pipe: pipe(IMAGE_RENDERER, undefined),
      visible: false,
    },
    {
      id: `cogmill_${safeId}_xyz`,
      name: `${title} · XYZ tiles (Web Mercator)`,
      provider: 'wms',
      source: xyz,
      crs: crsFromEpsg(3857),
      extent: p.mercatorBounds,
      pipe: pipe(IMAGE_RENDERER, undefined),
      visible: false,
    },
  ];
}

/** The `.qgs` XML of the project. */
export function qgisProjectXml(p: QgisProjectInput): string {
  const layers = qgisProjectLayers(p);
  const title = p.title || p.id;
  const srs = spatialRefSys(p.crs);
  const [x0, y0, x1, y1] = p.bounds;
  return `<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis projectname="${xmlEscape(title)}" version="${QGIS_PROJECT_VERSION}">
  <homePath path=""/>
  <title>${xmlEscape(title)}</title>
  <projectCrs>${srs}</projectCrs>
  <layer-tree-group>
    <customproperties/>
    <layer-tree-group name="${xmlEscape(title)}" checked="Qt::Checked" expanded="1">
      <customproperties/>
      ${layers.map(treeLayer).join('\n      ')}
    </layer-tree-group>
    <custom-order enabled="0">${layers.map((l) => `<item>${xmlEscape(l.id)}</item>`).join('')}</custom-order>
  </layer-tree-group>
  <mapcanvas name="theMapCanvas" annotationsVisible="1">
    <units>${p.crs.geographic ? 'degrees' : 'meters'}</units>
    ${extentXml('extent', p.bounds)}
    <rotation>0</rotation>
    <destinationsrs>${srs}</destinationsrs>
    <rendermaptile>0</rendermaptile>
  </mapcanvas>
  <projectlayers>
    ${layers.map(mapLayer).join('\n    ')}
  </projectlayers>
  <layerorder>${layers.map((l) => `<layer id="${xmlEscape(l.id)}"/>`).join('')}</layerorder>
  <properties>
    <SpatialRefSys><ProjectionsEnabled type="int">1</ProjectionsEnabled></SpatialRefSys>
  </properties>
  <ProjectViewSettings UseProjectScales="0" rotation="0">
    <Scales/>
    <DefaultViewExtent xmin="${num(x0)}" ymin="${num(y0)}" xmax="${num(x1)}" ymax="${num(y1)}">${srs}</DefaultViewExtent>
  </ProjectViewSettings>
</qgis>
`;
}
