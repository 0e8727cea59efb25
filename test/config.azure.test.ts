/**
 * The `azure` configuration section: where the credential comes from (COGMILL_AZURE_*, files, the conventional
 * AZURE_STORAGE_* variables), what is refused, az:// allow-lists, and redaction.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { redactConfig } from '../src/config.redact.ts';
import { loadConfig, trustedSourcePolicy } from '../src/config.ts';
import { engineSettings } from '../src/main.ts';
import { azureSettingsOf } from '../src/settings.ts';
import { tempDir } from './support/gdal.ts';

const KEY = Buffer.alloc(64, 3).toString('base64');

async function failure(opts: Parameters<typeof loadConfig>[0]): Promise<string> {
  try {
    await loadConfig(opts);
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('the configuration was accepted');
}

describe('azure configuration', () => {
  test('nothing configured: no credential, DefaultAzureCredential is left to the render layer', async () => {
    const c = await loadConfig({ env: {} });
    assert.equal(c.azure.account, undefined);
    assert.equal(c.azure.credentialSource, undefined);
    assert.equal(c.azure.maxAttempts, 4);
    assert.equal(c.azure.timeoutMs, 30_000);
  });

  test('the conventional variables are used when nothing else names a credential', async () => {
    const c = await loadConfig({ env: { AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_KEY: KEY } });
    assert.equal(c.azure.account, 'acct1');
    assert.equal(c.azure.accountKey, KEY);
    assert.equal(c.azure.credentialSource, 'AZURE_STORAGE_KEY');
    // GDAL's name for the key
    const g = await loadConfig({ env: { AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_ACCESS_KEY: KEY } });
    assert.equal(g.azure.credentialSource, 'AZURE_STORAGE_ACCESS_KEY');
    const cs = await loadConfig({
      env: { AZURE_STORAGE_CONNECTION_STRING: 'AccountName=a;AccountKey=b', AZURE_STORAGE_KEY: KEY },
    });
    assert.equal(cs.azure.credentialSource, 'AZURE_STORAGE_CONNECTION_STRING', 'the connection string is strongest');
  });

  test('COGMILL_AZURE_* and the file beat the conventional variables; secrets can come from files', async () => {
    const dir = await tempDir('cogmill-azconf-');
    const keyFile = path.join(dir, 'key');
    await writeFile(keyFile, `${KEY}\n`);
    const env = {
      COGMILL_AZURE_ACCOUNT: 'mine',
      COGMILL_AZURE_ACCOUNT_KEY_FILE: keyFile,
      AZURE_STORAGE_ACCOUNT: 'theirs',
      AZURE_STORAGE_CONNECTION_STRING: 'AccountName=theirs;AccountKey=x',
      AZURE_STORAGE_SAS_TOKEN: 'sv=1&sig=2',
    };
    const c = await loadConfig({ env });
    assert.equal(c.azure.account, 'mine');
    assert.equal(c.azure.accountKey, KEY, 'read from the file, trimmed');
    assert.equal(c.azure.connectionString, undefined, 'no conventional credential once one is configured');
    assert.equal(c.azure.sasToken, undefined);
    assert.equal(c.azure.credentialSource, 'COGMILL_AZURE_ACCOUNT_KEY_FILE');

    const file = path.join(dir, 'cogmill.yaml');
    await writeFile(file, 'azure:\n  account: filed\n  sasToken: "sv=2&sig=3"\n');
    const f = await loadConfig({ file, env: { AZURE_STORAGE_KEY: KEY } });
    assert.equal(f.azure.account, 'filed');
    assert.equal(f.azure.accountKey, undefined);
    assert.equal(f.azure.credentialSource, 'azure.sasToken in cogmill.yaml');
    // without a credential of their own, the file's account takes the conventional key
    await writeFile(file, 'azure:\n  account: filed\n');
    const k = await loadConfig({ file, env: { AZURE_STORAGE_ACCOUNT: 'theirs', AZURE_STORAGE_KEY: KEY } });
    assert.equal(k.azure.account, 'filed');
    assert.equal(k.azure.credentialSource, 'AZURE_STORAGE_KEY');
    assert.deepEqual(azureSettingsOf(k.azure), {
      account: 'filed',
      accountKey: KEY,
      sasToken: undefined,
      connectionString: undefined,
      endpoint: undefined,
      credentialSource: 'AZURE_STORAGE_KEY',
      maxAttempts: 4,
      timeoutMs: 30_000,
    });
    assert.equal(engineSettings(k).azure?.account, 'filed');
  });

  test('bad values are named: a key without an account, a bad account or endpoint, a misspelt variable', async () => {
    assert.match(await failure({ env: { COGMILL_AZURE_ACCOUNT_KEY: KEY } }), /azure: accountKey needs azure\.account/);
    assert.match(
      await failure({ env: { COGMILL_AZURE_ACCOUNT: 'Not_Valid' } }),
      /azure\.account \(from COGMILL_AZURE_ACCOUNT\): a storage account name is 3-24 lowercase letters and digits/,
    );
    assert.match(await failure({ env: { COGMILL_AZURE_ENDPOINT: 'ftp://x' } }), /azure\.endpoint/);
    assert.match(await failure({ env: { COGMILL_AZURE_ACOUNT: 'x' } }), /did you mean COGMILL_AZURE_ACCOUNT\?/);
  });

  test('az:// allow-lists: prefixes and destinations are checked; configured az:// sources are trusted', async () => {
    const c = await loadConfig({
      overrides: {
        sources: { allowedUrlPrefixes: ['az://products/scenes/'] },
        materialize: { allowedDestinations: ['az://exports/'] },
      },
    });
    assert.deepEqual(c.sources.allowedUrlPrefixes, ['az://products/scenes/']);
    assert.deepEqual(c.materialize.allowedDestinations, ['az://exports/']);
    assert.match(
      await failure({ overrides: { materialize: { allowedDestinations: ['az://Exports/'] } } }),
      /must be az:\/\/container\/ or az:\/\/container\/prefix\//,
    );
    assert.match(
      await failure({ overrides: { materialize: { allowedDestinations: ['az://exports'] } } }),
      /ending in "\/"/,
    );
    assert.match(
      await failure({ overrides: { sources: { allowedUrlPrefixes: ['az://products/../x/'] } } }),
      /"\." or "\.\." path segments/,
    );
    assert.deepEqual(trustedSourcePolicy(['az://products/scenes/a.tif', 'az://products/more/']).allowedUrlPrefixes, [
      'az://products/scenes/',
      'az://products/more/',
    ]);
  });

  test('secrets are redacted', async () => {
    const c = await loadConfig({
      env: {
        COGMILL_AZURE_ACCOUNT: 'acct1',
        COGMILL_AZURE_ACCOUNT_KEY: KEY,
        COGMILL_AZURE_SAS_TOKEN: 'sv=1&sig=secret',
        COGMILL_AZURE_CONNECTION_STRING: 'AccountName=acct1;AccountKey=secret',
      },
    });
    const text = JSON.stringify(redactConfig(c));
    assert.ok(!text.includes(KEY) && !text.includes('secret'), text);
    const azure = redactConfig(c).azure as Record<string, unknown>;
    assert.equal(azure.account, 'acct1');
    assert.equal(azure.accountKey, '[redacted]');
    assert.equal(azure.connectionString, '[redacted]');
  });
});
