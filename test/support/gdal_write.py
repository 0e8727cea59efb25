"""Write a raster with GDAL (the reference writer of the tests): a COG by default, or a tiled GeoTIFF."""
from osgeo import gdal, osr

gdal.UseExceptions()


def write(path, arrays, epsg, gt, dtype, nodata=None, mask=None, cog=True, blocksize=256, compress='DEFLATE', extra=()):
    """`arrays`: one 2-D array a band; `mask`: a per-dataset mask (0 = no data) written as GDAL's mask band."""
    h, w = arrays[0].shape
    mem = gdal.GetDriverByName('MEM').Create('', w, h, len(arrays), dtype)
    mem.SetGeoTransform(gt)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    mem.SetProjection(srs.ExportToWkt())
    for i, a in enumerate(arrays):
        b = mem.GetRasterBand(i + 1)
        if nodata is not None:
            b.SetNoDataValue(nodata)
        b.WriteArray(a)
    if mask is not None:
        mem.CreateMaskBand(gdal.GMF_PER_DATASET)
        mem.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    if cog:
        opts = [f'COMPRESS={compress}', f'BLOCKSIZE={blocksize}', 'OVERVIEW_RESAMPLING=AVERAGE', *extra]
        gdal.Translate(path, mem, format='COG', creationOptions=opts)
    else:
        opts = ['TILED=YES', f'BLOCKXSIZE={blocksize}', f'BLOCKYSIZE={blocksize}', f'COMPRESS={compress}', *extra]
        gdal.Translate(path, mem, format='GTiff', creationOptions=opts)
