/**
 * Entry of a materialisation worker thread: the resolve hook of builtin.hooks.ts first (a hook must be in place
 * before the module graph it concerns is loaded), then the worker itself.
 */
import '../builtin.hooks.ts';

await import('./pipeline.worker.ts');
