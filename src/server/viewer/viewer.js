/*
 * cogmill QC viewer. Runs in the browser after OpenLayers' full build (global `ol`). Reads the mosaic's
 * description, TileJSON and statistics from the server, shows the tiles with the chosen style, answers map
 * clicks with the point endpoint, and keeps the QGIS URLs in step with the style.
 *
 * The style is mirrored in the page's own query string (`?bands=4,3,2&rescale=0,3000&...`) so a styled view can
 * be bookmarked or shared.
 */

const config = JSON.parse(document.documentElement.dataset.config);
const $ = (id) => document.getElementById(id);
const root = document.documentElement;

/** ol/TileState values used by the tile loader */
const TILE_ERROR = 3;
const TILE_EMPTY = 4;
const STATISTICS_WAIT_MS = 5000;
const TILE_SIZE_PX = 256;

const ui = {
  meta: $('meta'),
  modeInputs: [...document.querySelectorAll('input[name="mode"]')],
  expressionField: $('expression-field'),
  expression: $('expression'),
  bandRows: $('band-rows'),
  stretchAuto: $('stretch-auto'),
  stretchMinMax: $('stretch-minmax'),
  colormapField: $('colormap-field'),
  colormap: $('colormap'),
  colormapReverse: $('colormap-reverse'),
  resampling: $('resampling'),
  status: $('status'),
  inspector: $('inspector'),
  links: $('links'),
};

/** What the server told us, filled in by `start()`. */
const server = { mosaic: null, tilejson: null, statistics: null };

/** The current style; `rows` hold one entry per displayed channel: { band, min, max } (min/max as typed). */
const style = {
  mode: 'single',
  rows: [],
  expression: '',
  colormap: '',
  colormapReversed: false,
  resampling: config.defaultResampling,
};

const tiles = { pending: 0, loaded: 0, failed: 0, lastError: '' };
let map = null;
let source = null;
let marker = null;

// ---------------------------------------------------------------- helpers

async function getJson(url, signal) {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, signal });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const message = body && typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
    throw new Error(message);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function bandCount() {
  return server.mosaic ? server.mosaic.bands.length : 1;
}

function bandLabel(index) {
  const b = server.mosaic?.bands.find((x) => x.index === index);
  return b?.name && b.name !== `b${index}` && b.name !== `Band ${index}` ? `${index} · ${b.name}` : `Band ${index}`;
}

function isIntegerType() {
  return !/^float/.test(server.mosaic?.dtype ?? 'float');
}

/** A statistic of one band, whatever the exact shape of the statistics document. */
function bandStat(index, key) {
  const s = server.statistics;
  if (!s) return undefined;
  const list = Array.isArray(s) ? s : Array.isArray(s.bands) ? s.bands : null;
  let b = null;
  if (list) b = list.find((x) => (x.index ?? x.band) === index) ?? list[index - 1];
  else if (s[`b${index}`]) b = s[`b${index}`];
  else if (s[String(index)]) b = s[String(index)];
  if (!b) return undefined;
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  if (key === 'min' || key === 'max') return num(b[key]);
  const p = key; // a percentile number: 2 or 98
  const pct = b.percentiles;
  const fromPct = Array.isArray(pct)
    ? num(pct.find((e) => e.p === p || e.percentile === p)?.value)
    : pct && typeof pct === 'object'
      ? num(pct[`p${p}`] ?? pct[p] ?? pct[String(p)])
      : undefined;
  return fromPct ?? num(b[`p${p}`]) ?? num(b[`percentile_${p}`]);
}

function formatLimit(v) {
  if (v === undefined) return '';
  if (isIntegerType()) return String(Math.round(v));
  return String(Number(v.toPrecision(6)));
}

function formatValue(v) {
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(8)));
}

// ---------------------------------------------------------------- style <-> URL

/** The style as query parameters, commas kept readable (QGIS and people paste these). */
function styleQuery() {
  const parts = [];
  const add = (k, v) => parts.push(`${k}=${encodeURIComponent(v).replace(/%2C/gi, ',')}`);
  if (style.mode === 'expression' && style.expression.trim()) add('expression', style.expression.trim());
  else add('bands', style.rows.map((r) => r.band).join(','));
  const limits = style.rows.map((r) => [r.min.trim(), r.max.trim()]);
  if (
    limits.length &&
    limits.every(([lo, hi]) => lo !== '' && hi !== '' && Number.isFinite(+lo) && Number.isFinite(+hi))
  ) {
    for (const [lo, hi] of limits) add('rescale', `${lo},${hi}`);
  }
  if (style.mode !== 'rgb' && (style.colormap || style.colormapReversed)) {
    add('colormap', `${style.colormap || 'gray'}${style.colormapReversed ? '_r' : ''}`);
  }
  if (style.resampling && style.resampling !== config.defaultResampling) add('resampling', style.resampling);
  return parts.join('&');
}

/** The tile URL template on this origin, for the map. */
function mapTileTemplate(hidpi) {
  return `${config.mosaicUrl}/tiles/{z}/{x}/{y}${hidpi ? '@2x' : ''}.png?${styleQuery()}`;
}

/** Read a style from the page's own query string (a shared link). Returns true when it set rescale limits. */
function readStyleFromLocation() {
  const q = new URLSearchParams(location.search);
  const n = bandCount();
  const bands = (q.get('bands') ?? '')
    .split(',')
    .map((s) => Number.parseInt(s, 10))
    .filter((b) => b >= 1 && b <= n);
  const expression = q.get('expression') ?? '';
  if (expression) {
    style.mode = 'expression';
    style.expression = expression;
    style.rows = [{ band: 1, min: '', max: '' }];
  } else if (bands.length === 3) {
    style.mode = 'rgb';
    style.rows = bands.map((band) => ({ band, min: '', max: '' }));
  } else if (bands.length === 1) {
    style.mode = 'single';
    style.rows = [{ band: bands[0], min: '', max: '' }];
  } else if (n >= 3) {
    style.mode = 'rgb';
    style.rows = [1, 2, 3].map((band) => ({ band, min: '', max: '' }));
  } else {
    style.mode = 'single';
    style.rows = [{ band: 1, min: '', max: '' }];
  }
  const rescale = q.getAll('rescale').map((s) => s.split(','));
  let haveLimits = false;
  if (rescale.length === style.rows.length && rescale.every((p) => p.length === 2)) {
    style.rows.forEach((r, i) => {
      r.min = rescale[i][0];
      r.max = rescale[i][1];
    });
    haveLimits = true;
  }
  const cm = q.get('colormap') ?? '';
  const cmName = cm.replace(/_r$/, '');
  if (config.colormaps.includes(cmName) || cmName === 'gray') {
    style.colormap = cmName === 'gray' ? '' : cmName;
    style.colormapReversed = cm.endsWith('_r');
  }
  const rs = q.get('resampling');
  if (rs && config.resamplings.includes(rs)) style.resampling = rs;
  return haveLimits;
}

function writeStyleToLocation() {
  const url = `${location.pathname}?${styleQuery()}`;
  history.replaceState(null, '', url);
}

/** Fill each row's limits from the statistics: the 2nd-98th percentile (`auto`) or the min/max. */
function stretchRows(kind, onlyEmpty) {
  for (const r of style.rows) {
    if (onlyEmpty && (r.min !== '' || r.max !== '')) continue;
    if (style.mode === 'expression') continue; // the statistics describe bands, not an expression
    const lo = kind === 'auto' ? (bandStat(r.band, 2) ?? bandStat(r.band, 'min')) : bandStat(r.band, 'min');
    const hi = kind === 'auto' ? (bandStat(r.band, 98) ?? bandStat(r.band, 'max')) : bandStat(r.band, 'max');
    if (lo === undefined || hi === undefined) continue;
    r.min = formatLimit(lo);
    r.max = formatLimit(hi === lo ? hi + 1 : hi);
  }
}

// ---------------------------------------------------------------- controls

function renderBandRows() {
  ui.bandRows.replaceChildren();
  const channels = style.mode === 'rgb' ? ['r', 'g', 'b'] : [''];
  style.rows.forEach((row, i) => {
    const chan = channels[i] ?? '';
    const select = el('select', { 'aria-label': chan ? `${chan.toUpperCase()} band` : 'band', 'data-row': i });
    if (style.mode === 'expression') {
      select.append(el('option', { value: '', text: 'expression' }));
      select.disabled = true;
    } else {
      for (const b of server.mosaic.bands) select.append(el('option', { value: b.index, text: bandLabel(b.index) }));
      select.value = String(row.band);
    }
    select.addEventListener('change', () => {
      row.band = Number(select.value);
      row.min = '';
      row.max = '';
      stretchRows('auto', true);
      renderBandRows();
      styleChanged();
    });
    const limit = (key) => {
      const input = el('input', {
        type: 'number',
        step: 'any',
        inputmode: 'decimal',
        'aria-label': `${chan ? `${chan.toUpperCase()} ` : ''}${key}`,
        'data-row': i,
        'data-limit': key,
        placeholder: 'auto',
      });
      input.value = row[key];
      input.addEventListener('change', () => {
        row[key] = input.value;
        styleChanged();
      });
      return input;
    };
    ui.bandRows.append(
      el(
        'div',
        { class: 'band-row' },
        el('span', { class: chan ? `chan ${chan}` : 'chan none', text: chan.toUpperCase() }),
        select,
        limit('min'),
        limit('max'),
      ),
    );
  });
}

function setMode(mode) {
  if (mode === style.mode) return;
  const first = style.rows[0]?.band ?? 1;
  style.mode = mode;
  if (mode === 'rgb') {
    const n = bandCount();
    style.rows = [0, 1, 2].map((k) => ({ band: Math.min(n, first + k), min: '', max: '' }));
  } else {
    style.rows = [{ band: first, min: '', max: '' }];
  }
  stretchRows('auto', true);
  syncControls();
  styleChanged();
}

function syncControls() {
  for (const input of ui.modeInputs) input.checked = input.value === style.mode;
  ui.expressionField.hidden = style.mode !== 'expression';
  ui.expression.value = style.expression;
  ui.colormapField.hidden = style.mode === 'rgb';
  ui.colormap.value = style.colormap;
  ui.colormapReverse.checked = style.colormapReversed;
  ui.resampling.value = style.resampling;
  renderBandRows();
}

function buildControls() {
  for (const name of config.colormaps) ui.colormap.append(el('option', { value: name, text: name }));
  for (const name of config.resamplings) {
    const label = name === config.defaultResampling ? `${name} (mosaic default)` : name;
    ui.resampling.append(el('option', { value: name, text: label }));
  }
  for (const input of ui.modeInputs) {
    if (input.value === 'rgb' && bandCount() < 3) {
      input.disabled = true;
      input.parentElement.title = 'RGB needs a mosaic with at least 3 bands';
    }
    input.addEventListener('change', () => input.checked && setMode(input.value));
  }
  ui.expression.addEventListener('change', () => {
    style.expression = ui.expression.value;
    styleChanged();
  });
  ui.colormap.addEventListener('change', () => {
    style.colormap = ui.colormap.value;
    styleChanged();
  });
  ui.colormapReverse.addEventListener('change', () => {
    style.colormapReversed = ui.colormapReverse.checked;
    styleChanged();
  });
  ui.resampling.addEventListener('change', () => {
    style.resampling = ui.resampling.value;
    styleChanged();
  });
  ui.stretchAuto.addEventListener('click', () => {
    stretchRows('auto', false);
    renderBandRows();
    styleChanged();
  });
  ui.stretchMinMax.addEventListener('click', () => {
    stretchRows('minmax', false);
    renderBandRows();
    styleChanged();
  });
}

// ---------------------------------------------------------------- QGIS links

function linkSpecs() {
  const links = server.mosaic.links;
  const q = styleQuery();
  return [
    { key: 'xyz', label: 'XYZ tiles', hint: 'Layer ▸ Add XYZ layer', url: `${links.tiles}?${q}` },
    // QGIS appends SERVICE=WMS&... to a capabilities URL unless it names SERVICE=WMTS itself
    {
      key: 'wmts',
      label: 'WMTS',
      hint: 'WMS/WMTS connection',
      url: `${links.wmts}?SERVICE=WMTS&REQUEST=GetCapabilities&${q}`,
    },
    { key: 'vrt', label: 'VRT (data values)', hint: 'Add raster layer', url: `/vsicurl/${links.vrt}` },
    { key: 'cog', label: 'COG (data values)', hint: 'Add raster layer', url: `/vsicurl/${links.cog}` },
  ];
}

async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no async clipboard (plain http on another host): copy the selected input text instead
    input.focus();
    input.select();
    return document.execCommand('copy');
  }
}

function renderLinks() {
  ui.links.replaceChildren();
  for (const spec of linkSpecs()) {
    const input = el('input', {
      type: 'text',
      readonly: true,
      'aria-label': `${spec.label} URL`,
      'data-link': spec.key,
    });
    input.value = spec.url;
    input.addEventListener('focus', () => input.select());
    const button = el('button', {
      type: 'button',
      class: 'copy',
      'data-copy': spec.url,
      'data-link': spec.key,
      text: 'Copy',
    });
    button.addEventListener('click', async () => {
      const ok = await copyText(button.dataset.copy, input);
      button.textContent = ok ? 'Copied' : 'Select + Ctrl-C';
      button.classList.toggle('copied', ok);
      setTimeout(() => {
        button.textContent = 'Copy';
        button.classList.remove('copied');
      }, 1500);
    });
    ui.links.append(
      el(
        'div',
        { class: 'link' },
        el('div', { class: 'link-label' }, el('span', { text: spec.label }), el('span', { text: spec.hint })),
        el('div', { class: 'link-row' }, input, button),
      ),
    );
  }
  // every view in one QGIS project, styled as the map is now
  const q = styleQuery();
  const project = server.mosaic.links.qgis;
  if (project) {
    ui.links.prepend(
      el(
        'div',
        { class: 'link project' },
        el(
          'div',
          { class: 'link-label' },
          el('span', { text: 'QGIS project' }),
          el('span', { text: 'COG, VRT, WMTS and XYZ layers, styled like this map' }),
        ),
        el('a', {
          class: 'download',
          href: q ? `${project}?${q}` : project,
          download: `${config.id}.qgz`,
          'data-link': 'qgis',
          text: 'Download QGIS project (.qgz)',
        }),
      ),
    );
  }
}

// ---------------------------------------------------------------- status

function showStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', isError);
}

function updateTileStatus() {
  if (tiles.lastError) showStatus(`Tiles: ${tiles.lastError}`, true);
  else if (tiles.pending > 0) showStatus(`Loading tiles… ${tiles.pending} pending`);
  else showStatus(`${tiles.loaded} tile(s) loaded · zoom ${map ? map.getView().getZoom().toFixed(1) : '–'}`);
}

// ---------------------------------------------------------------- map

/** Load a tile with fetch so a 204 is an empty tile and an error shows the server's message. */
function loadTile(tile, src) {
  const image = tile.getImage();
  fetch(src)
    .then(async (res) => {
      if (res.status === 204) {
        tile.setState(TILE_EMPTY);
        return;
      }
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        tiles.lastError = `HTTP ${res.status}${body?.message ? `: ${body.message}` : ''}`;
        tile.setState(TILE_ERROR);
        return;
      }
      const url = URL.createObjectURL(await res.blob());
      const release = () => URL.revokeObjectURL(url);
      image.addEventListener('load', release, { once: true });
      image.addEventListener('error', release, { once: true });
      image.src = url;
    })
    .catch(() => tile.setState(TILE_ERROR));
}

function buildMap() {
  const b = server.mosaic.boundsWgs84;
  const clampLat = (v) => Math.max(-85.05, Math.min(85.05, v));
  const extent = ol.proj.transformExtent([b[0], clampLat(b[1]), b[2], clampLat(b[3])], 'EPSG:4326', 'EPSG:3857');
  const minZoom = server.tilejson?.minzoom ?? 0;
  const maxZoom = server.tilejson?.maxzoom ?? 22;
  const hidpi = window.devicePixelRatio > 1.25;

  source = new ol.source.XYZ({
    url: mapTileTemplate(hidpi),
    tileSize: TILE_SIZE_PX,
    tilePixelRatio: hidpi ? 2 : 1,
    minZoom,
    maxZoom,
    // past the deepest zoom the server renders, show the pixels as blocks: this is a QC view
    interpolate: false,
    transition: 0,
    tileLoadFunction: loadTile,
  });
  source.on('tileloadstart', () => {
    tiles.pending++;
    updateTileStatus();
  });
  source.on('tileloadend', () => {
    tiles.pending = Math.max(0, tiles.pending - 1);
    tiles.loaded++;
    updateTileStatus();
  });
  source.on('tileloaderror', () => {
    tiles.pending = Math.max(0, tiles.pending - 1);
    tiles.failed++;
    updateTileStatus();
  });
  const layer = new ol.layer.Tile({ source, extent, preload: 1 });

  // the mosaic's bounding box, so an empty or transparent area still shows where the mosaic is
  const [x0, y0, x1, y1] = extent;
  const outline = new ol.layer.Vector({
    source: new ol.source.Vector({
      features: [
        new ol.Feature(
          new ol.geom.Polygon([
            [
              [x0, y0],
              [x1, y0],
              [x1, y1],
              [x0, y1],
              [x0, y0],
            ],
          ]),
        ),
      ],
    }),
    style: new ol.style.Style({
      stroke: new ol.style.Stroke({ color: 'rgba(31, 111, 235, 0.6)', width: 1, lineDash: [4, 4] }),
    }),
  });

  marker = new ol.Overlay({ element: el('div', { class: 'marker' }), positioning: 'center-center', stopEvent: false });

  map = new ol.Map({
    target: 'map',
    layers: [layer, outline],
    overlays: [marker],
    controls: ol.control.defaults.defaults({ attribution: false, rotate: false }).extend([
      new ol.control.ScaleLine(),
      new ol.control.ZoomToExtent({ extent, label: '⤢', tipLabel: 'Zoom to the mosaic' }),
      new ol.control.MousePosition({
        projection: 'EPSG:4326',
        coordinateFormat: (c) => `${c[0].toFixed(5)}, ${c[1].toFixed(5)}`,
        placeholder: 'lon, lat',
      }),
    ]),
    // whole zoom levels: tiles are drawn at 1:1 (or whole multiples past the deepest level), pixels stay crisp
    view: new ol.View({
      projection: 'EPSG:3857',
      maxZoom: Math.min(maxZoom + 4, 28),
      minZoom: 0,
      constrainResolution: true,
    }),
  });
  map.getView().fit(extent, { padding: [24, 24, 24, 24], maxZoom });
  map.on('moveend', updateTileStatus);
  map.on('rendercomplete', () => {
    root.dataset.renders = String(Number(root.dataset.renders ?? 0) + 1);
    root.dataset.map = 'rendered';
  });
  map.on('singleclick', (e) => inspect(e.coordinate));
  window.cogmill = { map, layer, source, style, styleQuery };
}

/** Everything that follows the style: the page's query string, the QGIS links, the status line. */
function refreshDerived() {
  writeStyleToLocation();
  renderLinks();
  updateTileStatus();
}

function styleChanged() {
  tiles.lastError = '';
  if (source) {
    root.dataset.map = 'loading';
    source.setUrl(mapTileTemplate(source.getTilePixelRatio(1) > 1));
  }
  refreshDerived();
}

// ---------------------------------------------------------------- pixel inspector

/** Per-band rows of a point answer: `values: [{ band, name, value, nodata }]` (plain numbers also understood). */
function pointBands(json) {
  const values = Array.isArray(json.values) ? json.values : Array.isArray(json.bands) ? json.bands : [];
  return values.map((v, i) => {
    const entry = v !== null && typeof v === 'object' ? v : { value: v };
    const index = entry.band ?? entry.index ?? i + 1;
    const value = entry.value ?? null;
    return {
      index,
      label: bandLabel(index),
      value,
      nodata: entry.nodata === true || value === null || json.valid === false,
    };
  });
}

let inspectSeq = 0;
async function inspect(coordinate) {
  const [lon, lat] = ol.proj.toLonLat(coordinate);
  const seq = ++inspectSeq;
  marker.setPosition(coordinate);
  ui.inspector.dataset.state = 'loading';
  ui.inspector.dataset.lon = String(lon);
  ui.inspector.dataset.lat = String(lat);
  const where = el('p', { class: 'where', text: `lon ${lon.toFixed(6)}, lat ${lat.toFixed(6)}` });
  ui.inspector.replaceChildren(where, el('p', { class: 'hint', text: 'Reading…' }));
  let json;
  try {
    json = await getJson(`${config.mosaicUrl}/point?lon=${lon}&lat=${lat}`);
  } catch (e) {
    if (seq !== inspectSeq) return;
    ui.inspector.replaceChildren(where, el('p', { class: 'error', text: e.message }));
    ui.inspector.dataset.state = 'error';
    return;
  }
  if (seq !== inspectSeq) return;
  const rows = pointBands(json);
  const outside = json.inside === false || json.outside === true;
  const table = el(
    'table',
    {},
    el('thead', {}, el('tr', {}, el('th', { text: 'Band' }), el('th', { class: 'num', text: 'Value' }))),
    el(
      'tbody',
      {},
      ...rows.map((r) =>
        el(
          'tr',
          {
            class: r.nodata ? 'nodata' : '',
            'data-band': r.index,
            'data-value': r.value === null ? 'null' : String(r.value),
            'data-nodata': r.nodata ? 'true' : 'false',
          },
          el('td', { text: r.label }),
          el(
            'td',
            { class: 'value' },
            r.value === null ? '—' : formatValue(r.value),
            r.nodata ? el('span', { class: 'badge', text: 'nodata' }) : null,
          ),
        ),
      ),
    ),
  );
  const extra = [];
  if (Number.isInteger(json.col) && Number.isInteger(json.row)) extra.push(`pixel ${json.col}, ${json.row}`);
  if (outside) extra.push('outside the mosaic');
  if (extra.length) where.textContent += ` · ${extra.join(' · ')}`;
  ui.inspector.replaceChildren(where, table);
  ui.inspector.dataset.state = 'ready';
}

// ---------------------------------------------------------------- start

function describe(m) {
  const crs = m.crs?.epsg ? `EPSG:${m.crs.epsg}` : (m.crs?.name ?? '');
  const nodata = m.nodata === null || m.nodata === undefined ? 'no nodata' : `nodata ${m.nodata}`;
  return `${m.width.toLocaleString('en')} × ${m.height.toLocaleString('en')} px · ${m.bands.length} band(s) · ${m.dtype} · ${crs} · ${nodata}`;
}

async function start() {
  try {
    server.mosaic = await getJson(config.mosaicUrl);
  } catch (e) {
    showStatus(`Could not read the mosaic: ${e.message}`, true);
    root.dataset.map = 'error';
    return;
  }
  ui.meta.textContent = describe(server.mosaic);
  const limitsGiven = readStyleFromLocation();
  buildControls();
  syncControls();

  const tilejson = getJson(`${config.mosaicUrl}/tilejson.json`).catch(() => null);
  const stats = new AbortController();
  const timer = setTimeout(() => stats.abort(), STATISTICS_WAIT_MS);
  const statistics = getJson(`${config.mosaicUrl}/statistics`, stats.signal)
    .catch(() => null)
    .finally(() => clearTimeout(timer));
  server.tilejson = await tilejson;
  server.statistics = await statistics;
  if (server.statistics && !limitsGiven) stretchRows('auto', true);
  renderBandRows();
  buildMap();
  refreshDerived();
}

start();
