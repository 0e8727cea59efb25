"""Open a QGIS project headless and render each of its layers over the project's default view.

usage: qgis_check.py PROJECT.qgz OUT_DIR WIDTH HEIGHT
       qgis_check.py --layer GDAL_SOURCE   (the renderer QGIS picks by itself for a raster layer)

Prints one JSON document: the project CRS and view extent, and per layer its name, provider, validity,
renderer (type, bands, min/max), the PNG it rendered (OUT_DIR/<layer id>.png) and how many pixels of it are
not transparent. Run with QT_QPA_PLATFORM=offscreen.
"""
import json
import os
import sys

from qgis.core import (
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

QgsApplication.setPrefixPath('/usr', True)
app = QgsApplication([], False)
app.initQgis()


def renderer_info(layer):
    r = layer.renderer()
    if r is None:
        return None
    info = {'type': r.type()}
    if r.type() == 'multibandcolor':
        info['bands'] = [r.redBand(), r.greenBand(), r.blueBand()]
        ces = [r.redContrastEnhancement(), r.greenContrastEnhancement(), r.blueContrastEnhancement()]
        info['ranges'] = [[ce.minimumValue(), ce.maximumValue()] if ce else None for ce in ces]
    elif r.type() == 'singlebandgray':
        ce = r.contrastEnhancement()
        info['bands'] = [r.grayBand()]
        info['ranges'] = [[ce.minimumValue(), ce.maximumValue()]]
    elif r.type() == 'singlebandpseudocolor':
        info['bands'] = [r.band()]
        info['ranges'] = [[r.classificationMin(), r.classificationMax()]]
        shader = r.shader().rasterShaderFunction()
        info['stops'] = len(shader.colorRampItemList())
    return info


if sys.argv[1] == '--layer':
    from qgis.core import QgsRasterLayer
    layer = QgsRasterLayer(sys.argv[2], 'layer', 'gdal')
    print(json.dumps({'valid': layer.isValid(), 'renderer': renderer_info(layer) if layer.isValid() else None}))
    sys.stdout.flush()
    os._exit(0)  # exitQgis with a layer outside a project crashes QGIS 3.22 on the way out

project_path, out_dir, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
project = QgsProject.instance()
ok = project.read(project_path)
view = project.viewSettings().defaultViewExtent()
extent = [view.xMinimum(), view.yMinimum(), view.xMaximum(), view.yMaximum()]
root = project.layerTreeRoot()


layers = []
for node in root.findLayers():
    layer = node.layer()
    entry = {
        'id': node.layerId(),
        'name': node.name(),
        'group': node.parent().name(),
        'visible': node.isVisible(),
        'valid': bool(layer and layer.isValid()),
    }
    if layer is not None:
        entry['provider'] = layer.providerType()
        entry['source'] = layer.source()
        entry['crs'] = layer.crs().authid()
        entry['bandCount'] = layer.bandCount()
        entry['renderer'] = renderer_info(layer)
    if entry['valid']:
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(project.crs())
        settings.setExtent(view)
        settings.setOutputSize(QSize(width, height))
        settings.setBackgroundColor(QColor(0, 0, 0, 0))
        settings.setOutputImageFormat(QImage.Format_ARGB32)
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        image = job.renderedImage()
        path = os.path.join(out_dir, node.layerId() + '.png')
        image.save(path, 'PNG')
        opaque = 0
        for y in range(0, image.height()):
            for x in range(0, image.width()):
                if (image.pixel(x, y) >> 24) & 0xFF:
                    opaque += 1
        entry['png'] = path
        entry['opaque'] = opaque
        entry['errors'] = [e.message for e in job.errors()]
    layers.append(entry)

print(json.dumps({
    'read': ok,
    'crs': project.crs().authid(),
    'extent': extent,
    'layers': layers,
}))
app.exitQgis()
