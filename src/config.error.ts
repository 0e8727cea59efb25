/** A configuration that cannot be used: the message names every bad key and where it came from. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
