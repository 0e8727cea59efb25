/**
 * WMTS 1.0.0 capabilities of a mosaic (pure: mosaic, sets and URLs in, XML out). One layer, RESTful tile URLs
 * `{mosaic}/tiles/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.{fmt}`, and one `TileMatrixSet` per offered set:
 * WebMercatorQuad (levels 0 to the mosaic's maxzoom), WorldCRS84Quad (0 to the first level as fine as the mosaic)
 * and the mosaic's native grid (every level). Each link carries `TileMatrixSetLimits`: the tiles that touch the
 * mosaic. TopLeftCorner and bounding boxes follow the CRS's axis order, as WMTS 1.0.0 says and GDAL and QGIS read.
 */
import { IMAGE_MIME, type ImageFormat } from '../render/encode.ts';
import type { Mosaic } from '../render/mosaic.ts';
import {
  axisOrdered,
  boundsInSet,
  type TileMatrixSet,
  type TmsTileRange,
  tmsTilesForBounds,
} from '../render/tilematrix.sets.ts';
import { gridBounds } from '../render/types.ts';

export function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

/** One offered set and the levels listed for it (0..maxLevel). */
export interface WmtsSetOffer {
  readonly set: TileMatrixSet;
  readonly maxLevel: number;
}

export interface WmtsOptions {
  readonly mosaic: Mosaic;
  /** `.../mosaics/{id}` */
  readonly mosaicUrl: string;
  readonly capabilitiesUrl: string;
  readonly formats: readonly ImageFormat[];
  /** query string carried into every tile URL (style, tile size; already encoded, no leading `?`) */
  readonly query: string;
  readonly sets: readonly WmtsSetOffer[];
}

function corner(set: TileMatrixSet, x: number, y: number): string {
  return axisOrdered(set, x, y).join(' ');
}

/** The tile ranges of levels 0..maxLevel that touch the mosaic (levels it misses are left out). */
export function wmtsLimits(mosaic: Mosaic, offer: WmtsSetOffer): TmsTileRange[] {
  const b = boundsInSet(offer.set, mosaic.grid);
  const out: TmsTileRange[] = [];
  for (let z = 0; z <= offer.maxLevel; z++) {
    const r = tmsTilesForBounds(offer.set, z, b);
    if (r) out.push(r);
  }
  return out;
}

export function wmtsCapabilities(o: WmtsOptions): string {
  const m = o.mosaic;
  const [w, s, e, n] = m.boundsWgs84;
  const links: string[] = [];
  const sets: string[] = [];
  const boxes: string[] = [];
  const seenCrs = new Set<string>();
  for (const offer of o.sets) {
    const { set } = offer;
    const limits = wmtsLimits(m, offer).map(
      (r) =>
        `<TileMatrixLimits><TileMatrix>${r.z}</TileMatrix><MinTileRow>${r.minY}</MinTileRow><MaxTileRow>${r.maxY}</MaxTileRow>` +
        `<MinTileCol>${r.minX}</MinTileCol><MaxTileCol>${r.maxX}</MaxTileCol></TileMatrixLimits>`,
    );
    links.push(
      `<TileMatrixSetLink><TileMatrixSet>${set.id}</TileMatrixSet><TileMatrixSetLimits>\n        ${limits.join('\n        ')}\n      </TileMatrixSetLimits></TileMatrixSetLink>`,
    );
    const matrices: string[] = [];
    for (let z = 0; z <= offer.maxLevel; z++) {
      const t = set.matrix(z);
      matrices.push(
        `<TileMatrix><ows:Identifier>${t.id}</ows:Identifier><ScaleDenominator>${t.scaleDenominator}</ScaleDenominator>` +
          `<TopLeftCorner>${corner(set, t.originX, t.originY)}</TopLeftCorner><TileWidth>${t.tileWidth}</TileWidth><TileHeight>${t.tileHeight}</TileHeight>` +
          `<MatrixWidth>${t.matrixWidth}</MatrixWidth><MatrixHeight>${t.matrixHeight}</MatrixHeight></TileMatrix>`,
      );
    }
    const wkss =
      set.id === 'WebMercatorQuad' && set.wellKnownScaleSet
        ? '      <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible</WellKnownScaleSet>\n'
        : set.id === 'WorldCRS84Quad' && set.wellKnownScaleSet
          ? '      <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleCRS84Quad</WellKnownScaleSet>\n'
          : '';
    sets.push(`    <TileMatrixSet>
      <ows:Identifier>${set.id}</ows:Identifier>
      <ows:Title>${xmlEscape(set.title)}</ows:Title>
      <ows:SupportedCRS>${set.crsUrn}</ows:SupportedCRS>
${wkss}      ${matrices.join('\n      ')}
    </TileMatrixSet>`);
    // a box in every set's own CRS: without one GDAL reprojects the set's whole extent into the others' CRSs
    if (!seenCrs.has(set.crsUrn)) {
      seenCrs.add(set.crsUrn);
      const b = set.id === 'native' ? gridBounds(m.grid) : boundsInSet(set, m.grid);
      boxes.push(
        `<ows:BoundingBox crs="${set.crsUrn}"><ows:LowerCorner>${corner(set, b[0], b[1])}</ows:LowerCorner><ows:UpperCorner>${corner(set, b[2], b[3])}</ows:UpperCorner></ows:BoundingBox>`,
      );
    }
  }
  const q = o.query;
  const resources = o.formats.map((f) => {
    const url = `${o.mosaicUrl}/tiles/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.${f}${q ? `?${q}` : ''}`;
    return `<ResourceURL format="${IMAGE_MIME[f]}" resourceType="tile" template="${xmlEscape(url)}"/>`;
  });
  const restful =
    '<ows:Constraint name="GetEncoding"><ows:AllowedValues><ows:Value>RESTful</ows:Value></ows:AllowedValues></ows:Constraint>';
  const caps = xmlEscape(o.capabilitiesUrl);
  return `<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.opengis.net/wmts/1.0 http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd" version="1.0.0">
  <ows:ServiceIdentification>
    <ows:Title>${xmlEscape(m.title)}</ows:Title>
    <ows:ServiceType>OGC WMTS</ows:ServiceType>
    <ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>
  </ows:ServiceIdentification>
  <ows:OperationsMetadata>
    <ows:Operation name="GetCapabilities"><ows:DCP><ows:HTTP><ows:Get xlink:href="${caps}">${restful}</ows:Get></ows:HTTP></ows:DCP></ows:Operation>
    <ows:Operation name="GetTile"><ows:DCP><ows:HTTP><ows:Get xlink:href="${xmlEscape(`${o.mosaicUrl}/tiles/`)}">${restful}</ows:Get></ows:HTTP></ows:DCP></ows:Operation>
  </ows:OperationsMetadata>
  <Contents>
    <Layer>
      <ows:Title>${xmlEscape(m.title)}</ows:Title>
      <ows:Identifier>${xmlEscape(m.id)}</ows:Identifier>
      <ows:WGS84BoundingBox crs="urn:ogc:def:crs:OGC:2:84"><ows:LowerCorner>${w} ${s}</ows:LowerCorner><ows:UpperCorner>${e} ${n}</ows:UpperCorner></ows:WGS84BoundingBox>
      ${boxes.join('\n      ')}
      <Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>
${o.formats.map((f) => `      <Format>${IMAGE_MIME[f]}</Format>`).join('\n')}
      ${links.join('\n      ')}
      ${resources.join('\n      ')}
    </Layer>
${sets.join('\n')}
  </Contents>
  <ServiceMetadataURL xlink:href="${caps}"/>
</Capabilities>
`;
}
