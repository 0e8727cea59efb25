"""GDAL's time for the benchmark's XYZ tiles: the reference for bench/tiles.bench.ts.

Run with the Python that has GDAL's bindings (/usr/bin/python3):

    python3 bench/gdal.tiles.py JOB.json WORKER WORKERS

JOB.json: {"sources": [...], "tiles": [[z, x, y], ...], "format": "png" | "webp", "scale": [lo, hi],
           "passes": 2}. This process renders the tiles whose index % WORKERS == WORKER, each pass in the same
order: gdal.Warp of the tile's EPSG:3857 window (256 x 256, nearest, alpha) from the sources opened once (later
sources painted over earlier ones, so the list is given reversed), scaled to 8 bits, encoded in /vsimem/.
Prints one JSON line per pass: {"pass": i, "tiles": n, "wallMs": ..., "latenciesMs": [...]}.
"""

import json
import sys
import time

from osgeo import gdal

HALF = 20037508.342789244


def tile_bounds(z, x, y):
    span = 2 * HALF / (2**z)
    minx = -HALF + x * span
    maxy = HALF - y * span
    return [minx, maxy - span, minx + span, maxy]


def main():
    job_file, worker, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(job_file) as f:
        job = json.load(f)
    gdal.UseExceptions()
    sources = [gdal.Open(s) for s in job["sources"]]
    lo, hi = job["scale"]
    fmt = job["format"]
    mine = [t for i, t in enumerate(job["tiles"]) if i % workers == worker]
    for p in range(job.get("passes", 1)):
        lat = []
        t_pass = time.perf_counter()
        for k, (z, x, y) in enumerate(mine):
            t0 = time.perf_counter()
            warped = gdal.Warp(
                "",
                sources,
                format="MEM",
                dstSRS="EPSG:3857",
                outputBounds=tile_bounds(z, x, y),
                width=256,
                height=256,
                resampleAlg="near",
                dstAlpha=True,
            )
            alpha_max = 255 if warped.GetRasterBand(1).DataType == gdal.GDT_Byte else 65535
            name = f"/vsimem/tile-{worker}-{k}.{fmt}"
            if fmt == "png":
                gdal.Translate(
                    name,
                    warped,
                    format="PNG",
                    outputType=gdal.GDT_Byte,
                    scaleParams=[[lo, hi, 0, 255], [0, alpha_max, 0, 255]],
                )
            else:
                gdal.Translate(
                    name,
                    warped,
                    format="WEBP",
                    outputType=gdal.GDT_Byte,
                    bandList=[1, 1, 1, 2],
                    scaleParams=[[lo, hi, 0, 255], [lo, hi, 0, 255], [lo, hi, 0, 255], [0, alpha_max, 0, 255]],
                    creationOptions=["QUALITY=75"],
                )
            size = gdal.VSIStatL(name).size
            gdal.Unlink(name)
            if size <= 0:
                raise RuntimeError(f"empty tile {z}/{x}/{y}")
            lat.append((time.perf_counter() - t0) * 1000)
        wall = (time.perf_counter() - t_pass) * 1000
        print(json.dumps({"pass": p, "tiles": len(mine), "wallMs": wall, "latenciesMs": lat}), flush=True)


if __name__ == "__main__":
    main()
