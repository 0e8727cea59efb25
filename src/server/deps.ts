/** What the HTTP layer is given by the composition root. No module of the server builds these itself. */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.ts';
import type { Catalog } from '../render/catalog.ts';
import type { Engine } from '../render/engine.ts';

export interface AppDeps {
  readonly config: Config;
  readonly engine: Engine;
  readonly catalog: Catalog;
  readonly log: Logger;
  readonly metrics: Registry;
  /** set while the process drains on SIGTERM: readiness fails, new materialisations are refused */
  readonly state: { draining: boolean };
}
