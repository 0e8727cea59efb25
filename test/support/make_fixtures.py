"""Writes the test fixtures with GDAL (the reference writer), deterministically.

usage: /usr/bin/python3 test/support/make_fixtures.py OUTDIR
"""
import sys
import numpy as np
from osgeo import gdal, osr

from gdal_write import write

gdal.UseExceptions()
out = sys.argv[1]


def texture(h, w, seed, lo, hi, x0=0.0, y0=0.0):
    """Spatially correlated texture: a few sinusoids in world-ish coordinates plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx += x0
    yy += y0
    v = np.zeros((h, w))
    for k in range(5):
        fx, fy = rng.uniform(0.005, 0.05, 2)
        ph = rng.uniform(0, 6.28)
        v += np.sin(xx * fx + yy * fy + ph) / (k + 1)
    v += rng.normal(0, 0.05, (h, w))
    v = (v - v.min()) / (v.max() - v.min())
    return lo + v * (hi - lo)


def to_utm(epsg, lon, lat):
    s = osr.SpatialReference(); s.ImportFromEPSG(4326); s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    t = osr.SpatialReference(); t.ImportFromEPSG(epsg)
    x, y, _ = osr.CoordinateTransformation(s, t).TransformPoint(lon, lat)
    return x, y


# Two uint16 scenes either side of the UTM 31/32 boundary (6°E), overlapping, with nodata wedges (nodata 0).
res = 20.0
w, h = 700, 600
for name, epsg, lon in (('utm32', 32632, 6.02), ('utm31', 32631, 5.98)):
    cx, cy = to_utm(epsg, lon, 45.0)
    x0 = round((cx - w * res / 2) / res) * res
    y0 = round((cy + h * res / 2) / res) * res
    a = texture(h, w, 1 if epsg == 32632 else 2, 100, 4000, x0 / res, -y0 / res).astype(np.uint16)
    yy, xx = np.mgrid[0:h, 0:w]
    if epsg == 32632:
        a[(xx + yy) < 220] = 0          # nodata wedge top-left
    else:
        a[(w - xx) + (h - yy) < 260] = 0  # nodata wedge bottom-right
    write(f'{out}/{name}.tif', [a], epsg, (x0, res, 0, y0, 0, -res), gdal.GDT_UInt16, nodata=0, extra=['PREDICTOR=2'])

# The same UTM 32 scene as a plain striped GeoTIFF without overviews (a different reading path).
src = gdal.Open(f'{out}/utm32.tif')
gdal.Translate(f'{out}/utm32_striped.tif', src, format='GTiff', creationOptions=['TILED=NO', 'COMPRESS=LZW'])
src = None

# RGB uint8 in Web Mercator, pixel-interleaved, JPEG-free (lossless) so values compare exactly.
cx, cy = to_utm(3857, 6.0, 45.0)
w3, h3 = 640, 512
r3 = 30.0
x0 = round((cx - w3 * r3 / 2) / r3) * r3
y0 = round((cy + h3 * r3 / 2) / r3) * r3
rgb = [texture(h3, w3, 10 + i, 1, 255).astype(np.uint8) for i in range(3)]
write(f'{out}/rgb.tif', rgb, 3857, (x0, r3, 0, y0, 0, -r3), gdal.GDT_Byte, cog=True, compress='DEFLATE')

# float32 in EPSG:4326 with nodata -9999 and a NaN-free texture.
w4, h4 = 500, 400
r4 = 0.0004
f = texture(h4, w4, 20, -5.0, 35.0).astype(np.float32)
yy, xx = np.mgrid[0:h4, 0:w4]
f[(xx - 250) ** 2 + (yy - 200) ** 2 < 60 ** 2] = -9999
write(f'{out}/float.tif', [f], 4326, (5.9, r4, 0, 45.08, 0, -r4), gdal.GDT_Float32, nodata=-9999, extra=['PREDICTOR=3'])

# band-interleaved multi-band int16 with an internal mask, tiled GeoTIFF with internal overviews
w5, h5 = 300, 260
bands = [(texture(h5, w5, 30 + i, -2000, 2000)).astype(np.int16) for i in range(4)]
cx, cy = to_utm(32632, 6.03, 45.01)
mem = gdal.GetDriverByName('MEM').Create('', w5, h5, 4, gdal.GDT_Int16)
mem.SetGeoTransform((round(cx), 10, 0, round(cy), 0, -10))
s = osr.SpatialReference(); s.ImportFromEPSG(32632); mem.SetProjection(s.ExportToWkt())
for i, a in enumerate(bands):
    mem.GetRasterBand(i + 1).WriteArray(a)
mem.CreateMaskBand(gdal.GMF_PER_DATASET)
m = np.full((h5, w5), 255, np.uint8)
m[100:160, 50:120] = 0
mem.GetRasterBand(1).GetMaskBand().WriteArray(m)
gdal.SetConfigOption('GDAL_TIFF_INTERNAL_MASK', 'YES')
ds = gdal.GetDriverByName('GTiff').CreateCopy(f'{out}/planar_mask.tif', mem, options=['TILED=YES', 'BLOCKXSIZE=128', 'BLOCKYSIZE=128', 'INTERLEAVE=BAND', 'COMPRESS=DEFLATE'])
ds.BuildOverviews('AVERAGE', [2, 4])
ds = None
print('ok')
