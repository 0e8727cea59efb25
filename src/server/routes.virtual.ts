import { Hono } from 'hono';
import type { AppEnv } from './app.ts';
import type { AppDeps } from './deps.ts';

export function virtualRoutes(_deps: AppDeps): Hono<AppEnv> {
  return new Hono<AppEnv>();
}
