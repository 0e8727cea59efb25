/**
 * geotiff imports Node's `http` and `https` for its own remote sources, which cogmill never uses (it reads every
 * source itself). An ESM import of a built-in builds that module's ES facade, and `http`'s facade evaluates every
 * export, which loads Node's bundled fetch implementation (undici): ~30 ms per thread, in every worker thread. This
 * resolve hook hands geotiff's two imports the modules themselves (process.getBuiltinModule: no facade, nothing
 * loaded until used). Registered first thing in each thread that loads the reader.
 */
import module from 'node:module';

const PLAIN = new Map([
  ['http', new URL('./builtin.http.ts', import.meta.url).href],
  ['https', new URL('./builtin.https.ts', import.meta.url).href],
]);

let registered = false;

export function registerBuiltinHooks(): void {
  if (registered || typeof module.registerHooks !== 'function') return;
  registered = true;
  module.registerHooks({
    resolve(specifier, context, next) {
      const plain = PLAIN.get(specifier);
      if (plain && context.parentURL?.includes('/node_modules/geotiff/'))
        return { url: plain, format: 'module', shortCircuit: true };
      return next(specifier, context);
    },
  });
}

registerBuiltinHooks();
