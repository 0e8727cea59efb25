# cogmill as a container: `docker build -t cogmill .`, then see README.md ("Container", "Sidecar").
#
# Two stages: the first installs the production dependencies from the lockfile (sharp brings its prebuilt
# libvips for linux-x64 / linux-arm64 glibc in its npm package, so no compiler is needed), the second holds only
# the runtime: Node 24 (which runs the TypeScript sources directly), node_modules, src and openapi.yaml.

FROM node:24-slim AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# the deflate addon (libdeflate, the library GDAL links): without it cogmill falls back to node:zlib
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev libdeflate-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY native/deflate ./native/deflate
RUN sh native/deflate/build.sh

FROM node:24-slim
# MALLOC_MMAP_THRESHOLD_: a fixed threshold keeps glibc from raising it after large frees, so the large buffers of
# a burst of heavy requests are mmapped and handed back to the OS when freed (bench/hostile.bench.ts: RSS back
# within 5% of its warm level instead of 30-85% above it)
ENV NODE_ENV=production \
    MALLOC_MMAP_THRESHOLD_=131072 \
    COGMILL_SERVER_HOST=0.0.0.0 \
    COGMILL_SERVER_PORT=8080
WORKDIR /app
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libdeflate0 >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/native/deflate/build/Release ./native/deflate/build/Release
COPY package.json openapi.yaml ./
COPY bin ./bin
COPY src ./src
# /data: local sources (the default command serves the GeoTIFFs found there); /etc/cogmill: an optional config
RUN mkdir -p /data /etc/cogmill && chown node:node /data
USER node
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# the slim image has no curl: ask Node itself
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.COGMILL_SERVER_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node is PID 1: the CLI installs SIGTERM/SIGINT handlers (graceful drain); its only child processes are the
# short-lived stac-geoparquet decoders it starts and waits for
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/cogmill.js"]
# with neither COGMILL_CONFIG nor arguments, serve the GeoTIFFs under /data (the working folder);
# with a config: -e COGMILL_CONFIG=/etc/cogmill/config.yaml, or `serve --config /etc/cogmill/config.yaml`
CMD ["serve"]
