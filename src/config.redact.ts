/** Redaction: a copy of the config safe to log or print. */
import type { Config } from './config.schema.ts';
import { redactUrl } from './render/source.http.ts';

const REDACTED = '[redacted]';

/** redis://user:secret@host:6379/0 -> redis://user:[redacted]@host:6379/0 (the host stays: it helps) */
export function redactRedisUrl(url: string): string {
  const m = /^(rediss?:\/\/)([^:@/]*)(:[^@/]*)?@(.*)$/.exec(url);
  if (!m) return url.includes('@') ? REDACTED : url;
  const [, scheme, user, password, rest] = m;
  return password === undefined ? url : `${scheme}${user}:${REDACTED}@${rest}`;
}

/** A copy of the config safe to log or print: secrets replaced, credentials and query strings stripped from URLs. */
export function redactConfig(config: Config): Record<string, unknown> {
  const url = (s: string) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? redactUrl(s) : s);
  const hidden = (key: string, v: unknown) => (v === undefined ? {} : { [key]: REDACTED });
  const { accessKeyId, secretAccessKey, ...s3 } = config.s3;
  const { token, ...auth } = config.auth;
  const { accountKey, sasToken, connectionString, ...azure } = config.azure;
  const { redis, ...materialize } = config.materialize;
  return {
    ...config,
    s3: { ...s3, ...hidden('accessKeyId', accessKeyId), ...hidden('secretAccessKey', secretAccessKey) },
    azure: {
      ...azure,
      ...hidden('accountKey', accountKey),
      ...hidden('sasToken', sasToken),
      ...hidden('connectionString', connectionString),
    },
    auth: { ...auth, ...hidden('token', token) },
    materialize: { ...materialize, ...(redis === undefined ? {} : { redis: redactRedisUrl(redis) }) },
    sources: { ...config.sources, allowedUrlPrefixes: config.sources.allowedUrlPrefixes.map(url) },
    mosaics: config.mosaics.map((m) => ({
      ...m,
      ...(m.sources ? { sources: m.sources.map(url) } : {}),
      ...(m.index ? { index: url(m.index) } : {}),
      ...(m.stac
        ? {
            stac: {
              ...m.stac,
              ...(m.stac.items ? { items: url(m.stac.items) } : {}),
              ...(m.stac.search ? { search: url(m.stac.search) } : {}),
            },
          }
        : {}),
    })),
  };
}
