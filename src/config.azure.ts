/**
 * The `azure` section of the configuration and where its credentials come from, strongest first:
 * 1. the config file and `COGMILL_AZURE_*` (secrets also from files: `COGMILL_AZURE_ACCOUNT_KEY_FILE`, ...);
 * 2. the conventional variables `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`
 *    (or `AZURE_STORAGE_ACCESS_KEY`, GDAL's name), `AZURE_STORAGE_SAS_TOKEN`: used only when step 1 gives no
 *    credential; the account and endpoint of step 1 still win;
 * 3. nothing: the render layer then uses DefaultAzureCredential (environment, workload and managed identity, CLI).
 * Like the rest of the config layer, this module reads the environment only from the object it is given.
 */
import { z } from 'zod';

const positiveInt = z.number().int().positive();

export const azureSchema = z
  .object({
    account: z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'a storage account name is 3-24 lowercase letters and digits')
      .optional()
      .describe('storage account of az:// URLs; default: AZURE_STORAGE_ACCOUNT, or the connection string'),
    accountKey: z
      .string()
      .min(1)
      .optional()
      .describe('shared key of the account (never logged); default: AZURE_STORAGE_KEY'),
    sasToken: z
      .string()
      .min(1)
      .optional()
      .describe('SAS token for the account or its containers (never logged); default: AZURE_STORAGE_SAS_TOKEN'),
    connectionString: z
      .string()
      .min(1)
      .optional()
      .describe('connection string, the strongest credential (never logged); default: AZURE_STORAGE_CONNECTION_STRING'),
    endpoint: z
      .url({ protocol: /^https?$/, error: 'endpoint must be an http:// or https:// URL' })
      .optional()
      .describe(
        'blob endpoint of an emulator or sovereign cloud (http://127.0.0.1:10000/devstoreaccount1); default: https://ACCOUNT.blob.core.windows.net',
      ),
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(4)
      .describe('attempts per Azure source request, the first included (exports retry up to 8 times)'),
    timeoutMs: positiveInt.default(30_000).describe('longest one Azure request may take (plus 1 s per MiB sent)'),
  })
  .strict();

export type AzureConfig = z.output<typeof azureSchema>;

/** the credential keys of the section, strongest first */
const CREDENTIAL_KEYS = ['connectionString', 'accountKey', 'sasToken'] as const;

/** conventional variable -> key of the section */
const CONVENTIONAL: readonly (readonly [string, keyof AzureConfig])[] = [
  ['AZURE_STORAGE_CONNECTION_STRING', 'connectionString'],
  ['AZURE_STORAGE_ACCOUNT', 'account'],
  ['AZURE_STORAGE_KEY', 'accountKey'],
  ['AZURE_STORAGE_ACCESS_KEY', 'accountKey'],
  ['AZURE_STORAGE_SAS_TOKEN', 'sasToken'],
];

/**
 * Fill the raw `azure` section (after the file and COGMILL_AZURE_* were merged) from the conventional variables:
 * credentials only when the section has none, the account only when it names none. Records in `origins` which
 * variable each filled key came from.
 */
export function applyConventionalAzureEnv(
  raw: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
  origins: Map<string, string>,
): void {
  const current = (raw.azure ?? {}) as Record<string, unknown>;
  const hasCredential = CREDENTIAL_KEYS.some((k) => current[k] !== undefined);
  const filled: Record<string, unknown> = { ...current };
  for (const [name, key] of CONVENTIONAL) {
    const value = env[name]?.trim();
    if (!value || filled[key] !== undefined) continue;
    const isCredential = (CREDENTIAL_KEYS as readonly string[]).includes(key);
    if (isCredential && hasCredential) continue;
    filled[key] = value;
    origins.set(`azure.${key}`, name);
  }
  if (Object.keys(filled).length > Object.keys(current).length) raw.azure = filled;
}

/** Which credential will be used, and where it came from, for messages: "the shared key of account x (AZURE_STORAGE_KEY)". */
export function azureCredentialSource(
  azure: AzureConfig,
  origins: ReadonlyMap<string, string>,
  where: string,
): string | undefined {
  const from = (key: string) => origins.get(`azure.${key}`) ?? `azure.${key} in ${where}`;
  if (azure.connectionString !== undefined) return from('connectionString');
  if (azure.account !== undefined && azure.accountKey !== undefined) return from('accountKey');
  if (azure.sasToken !== undefined) return from('sasToken');
  return undefined;
}

/** Problems a schema cannot see: a key without its account. */
export function checkAzure(azure: AzureConfig): string[] {
  if (azure.accountKey !== undefined && azure.account === undefined && azure.connectionString === undefined)
    return ['azure: accountKey needs azure.account (COGMILL_AZURE_ACCOUNT or AZURE_STORAGE_ACCOUNT)'];
  return [];
}
