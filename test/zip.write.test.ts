import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { prng } from '../src/demo.data.ts';
import { zipArchive } from '../src/server/zip.write.ts';
import { PYTHON, sh, tempDir } from './support/gdal.ts';

test('zip archives read back by Python zipfile, CRCs checked: deflated text, stored noise, UTF-8 names', async () => {
  const text = new TextEncoder().encode('<qgis>'.repeat(5000));
  const rnd = prng(7);
  const noise = Uint8Array.from({ length: 4096 }, () => Math.floor(rnd() * 256));
  const zip = zipArchive([
    { name: 'a.qgs', data: text },
    { name: 'dir/noise.bin', data: noise },
    { name: 'é.txt', data: new Uint8Array(0) },
  ]);
  assert.ok(zip.byteLength < text.byteLength / 10 + noise.byteLength + 1000, 'text deflated, noise stored');
  const dir = await tempDir('cogmill-zip-');
  try {
    const file = path.join(dir, 'x.zip');
    await writeFile(file, zip);
    const out = await sh(PYTHON, [
      '-c',
      `import sys, zipfile, json, hashlib
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps([[i.filename, i.compress_type, i.file_size, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()]))`,
      file,
    ]);
    const sha = async (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    assert.deepEqual(JSON.parse(out), [
      ['a.qgs', 8, text.byteLength, await sha(text)],
      ['dir/noise.bin', 0, noise.byteLength, await sha(noise)],
      ['é.txt', 0, 0, await sha(new Uint8Array(0))],
    ]);
    assert.deepEqual(zipArchive([{ name: 'a', data: text }]), zipArchive([{ name: 'a', data: text }]), 'deterministic');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
