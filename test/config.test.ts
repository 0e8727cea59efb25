/** Configuration: defaults, files (YAML and JSON), environment overrides, and messages that name the bad key. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { envName } from '../src/config.env.ts';
import { loadConfigValidated, parseConfig } from '../src/config.parse.ts';
import { redactConfig } from '../src/config.redact.ts';
import { configReference, configReferenceMarkdown } from '../src/config.reference.ts';
import { ConfigError } from '../src/config.schema.ts';
import { loadConfig, trustedSourcePolicy, withCommandLineMosaic } from '../src/config.ts';
import { engineSettings } from '../src/main.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, text);
  return p;
}

/** The ConfigError message of loading `opts`, failing the test when it loads. */
async function failure(opts: Parameters<typeof loadConfig>[0]): Promise<string> {
  try {
    await loadConfig(opts);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e.message;
  }
  assert.fail('the configuration was accepted');
}

describe('defaults', () => {
  test('an empty configuration has every documented default and is frozen', async () => {
    const c = await loadConfig({});
    assert.equal(c.server.port, 8080);
    assert.equal(c.server.host, '0.0.0.0');
    assert.equal(c.server.requestTimeoutMs, 30_000);
    assert.equal(c.server.shutdownGraceMs, 10_000);
    assert.deepEqual(c.server.corsOrigins, ['*']);
    assert.equal(c.cache.headerBytes, 64 * 1024 * 1024);
    assert.equal(c.limits.maxConcurrentRenders, 16);
    assert.equal(c.auth.token, undefined);
    assert.equal(c.auth.allowUnauthenticated, false);
    assert.deepEqual(c.materialize.allowedDestinations, []);
    assert.deepEqual(c.mosaics, []);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.server) && Object.isFrozen(c.server.corsOrigins));
    assert.throws(() => {
      (c.server as { port: number }).port = 1;
    }, TypeError);
  });

  test('with nothing set the schema is not needed: the defaults snapshot is what the schema gives', async () => {
    // config.defaults.ts must equal configSchema.parse({}) and the mosaic schema's defaults: after a schema change,
    // write its new values there (the failure shows them)
    const fast = await loadConfig({ env: {} });
    const validated = await loadConfigValidated({ env: {} });
    assert.deepStrictEqual(fast, validated);
    assert.ok(Object.isFrozen(fast) && Object.isFrozen(fast.materialize) && Object.isFrozen(fast.sources.roots));
    // a command-line mosaic of plain sources gets the definition's defaults, as the schema would give them
    const def = { id: 'default', title: 'default', sources: ['/data/a.tif', 's3://b/c.tif'] };
    const added = await withCommandLineMosaic(fast, def);
    assert.deepStrictEqual(added, parseConfig({ ...validated, mosaics: [def] }, 'command line'));
    assert.ok(Object.isFrozen(added.mosaics[0]));
    // anything else is validated: a bad source name, catalogue options, a variable, an override
    await assert.rejects(withCommandLineMosaic(fast, { ...def, sources: [''] }), ConfigError);
    await assert.rejects(withCommandLineMosaic(fast, { ...def, composite: 'sometimes' }), ConfigError);
    await assert.rejects(loadConfig({ env: { COGMILL_SERVER_PORT: 'eighty' } }), ConfigError);
    await assert.rejects(loadConfig({ env: { AZURE_STORAGE_KEY: 'k' } }), /accountKey needs azure.account/);
    await assert.rejects(loadConfig({ overrides: { server: { port: -1 } } }), ConfigError);
  });

  test('the reference lists every key of every section with its env variable and default', () => {
    const ref = configReference();
    const keys = ref.map((r) => r.key);
    for (const k of [
      'server.port',
      'sources.roots',
      's3.secretAccessKey',
      'cache.tileBytes',
      'limits.maxQueuedRenders',
    ]) {
      assert.ok(keys.includes(k), k);
    }
    for (const k of ['auth.token', 'materialize.allowedDestinations', 'log.level']) assert.ok(keys.includes(k), k);
    assert.equal(ref.find((r) => r.key === 'server.requestTimeoutMs')?.env, 'COGMILL_SERVER_REQUEST_TIMEOUT_MS');
    assert.equal(ref.find((r) => r.key === 'server.requestTimeoutMs')?.default, 30_000);
    assert.equal(envName('s3', 'secretAccessKey'), 'COGMILL_S3_SECRET_ACCESS_KEY');
    for (const r of ref) assert.ok(r.description.length > 10, `${r.key} has a description`);
  });

  test('the README documents every key: its configuration table is the generated one', async () => {
    const readme = await readFile(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
    assert.ok(
      readme.includes(configReferenceMarkdown()),
      'README.md must contain the output of `node src/cli.ts config --reference` verbatim',
    );
  });
});

describe('files', () => {
  test('YAML: values are read and relative paths are relative to the file', async () => {
    const p = await file(
      'a.yaml',
      `server:
  port: 9001
  corsOrigins: [https://qgis.example.org]
sources:
  roots: [data, /abs/elsewhere]
  allowedUrlPrefixes: ["https://cogs.example.com/prod/"]
materialize:
  allowedDestinations: [exports/, "s3://bucket/out/"]
mosaics:
  - id: m1
    sources: ["scenes/*.tif", "https://cogs.example.com/prod/x.tif"]
    composite: last
`,
    );
    const c = await loadConfig({ file: p });
    assert.equal(c.server.port, 9001);
    assert.deepEqual(c.server.corsOrigins, ['https://qgis.example.org']);
    assert.deepEqual(c.sources.roots, [path.join(dir, 'data'), '/abs/elsewhere']);
    assert.deepEqual(c.materialize.allowedDestinations, [`${path.join(dir, 'exports')}/`, 's3://bucket/out/']);
    assert.deepEqual(c.mosaics[0].sources, [path.join(dir, 'scenes/*.tif'), 'https://cogs.example.com/prod/x.tif']);
    assert.equal(c.mosaics[0].composite, 'last');
    assert.equal(c.mosaics[0].resampling, 'nearest');
  });

  test('JSON: read by extension', async () => {
    const p = await file('b.json', JSON.stringify({ limits: { maxZoom: 18 }, log: { level: 'warn' } }));
    const c = await loadConfig({ file: p });
    assert.equal(c.limits.maxZoom, 18);
    assert.equal(c.log.level, 'warn');
  });

  test('a missing file, broken YAML, broken JSON and a non-object are reported with the file name', async () => {
    assert.match(await failure({ file: path.join(dir, 'nope.yaml') }), /cannot read config file .*nope\.yaml/);
    const yamlMsg = await failure({ file: await file('bad.yaml', 'server:\n  port: [1,\n') });
    assert.match(yamlMsg, /bad\.yaml is not valid YAML/);
    assert.match(yamlMsg, /line \d+/);
    assert.match(
      await failure({ file: await file('bad.json', '{"server": {"port": 80,}}') }),
      /bad\.json is not valid JSON/,
    );
    assert.match(await failure({ file: await file('list.yaml', '- a\n- b\n') }), /must hold an object/);
  });

  test('bad values name the key (YAML)', async () => {
    const msg = await failure({
      file: await file(
        'keys.yaml',
        `server:
  port: eighty
  prot: 1
limits:
  maxConcurrentRenders: 0
auth:
  token: short
sources:
  allowedUrlPrefixes: ["https://example.com"]
mosaics:
  - id: ok
    sources: [a.tif]
  - id: "bad id!"
    sources: []
`,
      ),
    });
    assert.match(msg, /keys\.yaml: server\.port: .*expected number/);
    assert.match(msg, /server\.prot: unknown key \(did you mean "port"\?\)/);
    assert.match(msg, /limits\.maxConcurrentRenders: /);
    assert.match(msg, /auth\.token: the token must be at least 16 characters/);
    assert.match(msg, /sources\.allowedUrlPrefixes\[0\]: a URL prefix is scheme:\/\/host\//);
    assert.match(msg, /mosaics\[1\]\.id: ids are/);
    assert.match(msg, /mosaics\[1\]\.sources: a mosaic needs at least one source/);
    assert.doesNotMatch(msg, /mosaics\[0\]/);
  });

  test('bad values name the key (JSON), including cross-field rules', async () => {
    const dup = await failure({
      file: await file(
        'dup.json',
        JSON.stringify({
          mosaics: [
            { id: 'a', sources: ['x.tif'] },
            { id: 'a', sources: ['y.tif'] },
          ],
        }),
      ),
    });
    assert.match(dup, /dup\.json: mosaics\[1\]\.id: "a" is used by another mosaic/);
    const s3 = await failure({ file: await file('s3.json', JSON.stringify({ s3: { accessKeyId: 'AKIAEXAMPLE' } })) });
    assert.match(s3, /s3: accessKeyId and secretAccessKey go together/);
    const dest = await failure({
      file: await file(
        'dest.json',
        JSON.stringify({ materialize: { allowedDestinations: ['s3://bucket/no-slash', 'https://x/'] } }),
      ),
    });
    assert.match(
      dest,
      /allowedDestinations\[0\]: "s3:\/\/bucket\/no-slash" must be s3:\/\/bucket\/ or s3:\/\/bucket\/prefix\//,
    );
    assert.match(dest, /allowedDestinations\[1\]: "https:\/\/x\/" is neither/);
    const typo = await failure({
      file: await file('typo.json', JSON.stringify({ limit: {}, mosaics: [{ id: 'a', source: [] }] })),
    });
    assert.match(typo, /limit: unknown key \(did you mean "limits"\?\)/);
    assert.match(typo, /mosaics\[0\]\.source: unknown key \(did you mean "sources"\?\)/);
    const level = await failure({ file: await file('level.json', JSON.stringify({ log: { level: 'loud' } })) });
    assert.match(level, /log\.level: /);
  });
});

describe('environment', () => {
  test('COGMILL_<SECTION>_<KEY> overrides the file; command-line overrides win over both', async () => {
    const p = await file('env.yaml', 'server:\n  port: 9001\n  host: 127.0.0.1\n');
    const tokenFile = await file('token.txt', 'a-token-from-a-file-0123456789\n');
    const c = await loadConfig({
      file: p,
      env: {
        COGMILL_SERVER_PORT: '9100',
        COGMILL_SOURCES_ROOTS: '/data, /mnt/more',
        COGMILL_AUTH_ALLOW_UNAUTHENTICATED: 'true',
        COGMILL_CACHE_TILE_BYTES: '1048576',
        COGMILL_AUTH_TOKEN_FILE: tokenFile,
        COGMILL_S3_ENDPOINT: 'http://127.0.0.1:7480',
        COGMILL_S3_FORCE_PATH_STYLE: 'no',
        COGMILL_UNRELATED: 'x',
        HOME: '/root',
      },
      overrides: { server: { host: '::1' } },
    });
    assert.equal(c.server.port, 9100);
    assert.equal(c.server.host, '::1');
    assert.deepEqual(c.sources.roots, ['/data', '/mnt/more']);
    assert.equal(c.auth.allowUnauthenticated, true);
    assert.equal(c.cache.tileBytes, 1048576);
    assert.equal(c.auth.token, 'a-token-from-a-file-0123456789');
    assert.equal(c.s3.endpoint, 'http://127.0.0.1:7480');
    assert.equal(c.s3.forcePathStyle, false);
  });

  test('a bad environment value names the variable and the key', async () => {
    const msg = await failure({ env: { COGMILL_LIMITS_MAX_ZOOM: 'high', COGMILL_SERVER_PUBLIC_URL: 'ftp://x' } });
    assert.match(msg, /environment: limits\.maxZoom \(from COGMILL_LIMITS_MAX_ZOOM\): .*expected number/);
    assert.match(msg, /server\.publicUrl \(from COGMILL_SERVER_PUBLIC_URL\): publicUrl must be an http/);
    const bool = await failure({ env: { COGMILL_AUTH_ALLOW_UNAUTHENTICATED: 'maybe' } });
    assert.match(bool, /auth\.allowUnauthenticated \(from COGMILL_AUTH_ALLOW_UNAUTHENTICATED\)/);
  });

  test('a misspelt variable of a known section is an error with a suggestion', async () => {
    const msg = await failure({ env: { COGMILL_SERVER_PROT: '1' } });
    assert.match(msg, /COGMILL_SERVER_PROT: no such setting \(did you mean COGMILL_SERVER_PORT\?\)/);
    const missing = await failure({ env: { COGMILL_AUTH_TOKEN_FILE: path.join(dir, 'absent') } });
    assert.match(missing, /COGMILL_AUTH_TOKEN_FILE: cannot read/);
  });
});

describe('source policy and redaction', () => {
  test('trusted sources become roots and URL prefixes (query strings dropped)', () => {
    const p = trustedSourcePolicy([
      '/data/a/scene.tif',
      '/data/b/',
      '/data/c/**/*.tif',
      '/data/d/x*.tif',
      'https://h.example.com/p/q/r.tif?X-Amz-Credential=AK/2024/us/s3/aws4',
      's3://bucket/prefix/',
      's3://bucket2/k.tif',
    ]);
    assert.deepEqual(p.roots, ['/data/a', '/data/b', '/data/c', '/data/d']);
    assert.deepEqual(p.allowedUrlPrefixes, ['https://h.example.com/p/q/', 's3://bucket/prefix/', 's3://bucket2/']);
  });

  test('configured mosaics widen the engine policy to exactly their own folders and prefixes', async () => {
    const c = await loadConfig({
      overrides: {
        sources: { roots: ['/srv/extra'] },
        mosaics: [{ id: 'm', sources: ['/srv/scenes/*.tif', 'https://cogs.example.com/a/b.tif'] }],
      },
    });
    const s = engineSettings(c);
    assert.deepEqual(s.roots, ['/srv/extra', '/srv/scenes']);
    assert.deepEqual(s.allowedUrlPrefixes, ['https://cogs.example.com/a/']);
  });

  test('redactConfig hides tokens, keys and URL credentials', async () => {
    const c = await loadConfig({
      overrides: {
        auth: { token: 'tok-0123456789abcdef' },
        s3: { accessKeyId: 'AKIA-ID', secretAccessKey: 'S3-SECRET-VALUE' },
        mosaics: [{ id: 'm', sources: ['https://user:pw@h.example.com/a.tif?sig=abc'] }],
      },
    });
    const text = JSON.stringify(redactConfig(c));
    for (const secret of ['tok-0123456789abcdef', 'AKIA-ID', 'S3-SECRET-VALUE', 'pw@', 'sig=abc']) {
      assert.ok(!text.includes(secret), secret);
    }
    assert.match(text, /"token":"\[redacted\]"/);
    const plain = JSON.stringify(redactConfig(await loadConfig({})));
    assert.ok(!plain.includes('redacted'), 'absent secrets are not shown as present');
  });

  test('materialize.redis: checked at start, its password redacted, the host kept', async () => {
    const c = await loadConfig({
      env: { COGMILL_MATERIALIZE_REDIS: 'redis://queue:S3CRET-PW@redis.internal:6380/2' },
    });
    assert.equal(c.materialize.redis, 'redis://queue:S3CRET-PW@redis.internal:6380/2');
    const shown = (redactConfig(c).materialize as { redis: string }).redis;
    assert.equal(shown, 'redis://queue:[redacted]@redis.internal:6380/2');
    const open = await loadConfig({ overrides: { materialize: { redis: 'redis://127.0.0.1:6379' } } });
    assert.equal((redactConfig(open).materialize as { redis: string }).redis, 'redis://127.0.0.1:6379');
    await assert.rejects(
      loadConfig({ overrides: { materialize: { redis: 'http://redis:6379' } } }),
      /materialize\.redis.*redis:\/\/\[user:password@\]host:port/s,
    );
  });
});
