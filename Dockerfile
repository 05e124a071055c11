# syntax=docker/dockerfile:1
# agentgate's container image: built with dev dependencies, run with production dependencies only, as a non-root user.
# test/deploy/ parses this file and replays it without a Docker engine; keep the last stage to COPY, ENV, USER and metadata.

# Node.js 24 LTS on Debian 13 (trixie), slim. For reproducible builds pin the digest: node:24-trixie-slim@sha256:...
ARG NODE_IMAGE=node:24-trixie-slim

# ---- build: compile TypeScript to dist/ and write schema/gateway.schema.json (needs the dev dependencies) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY schema ./schema
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only, without install scripts ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ARG NODE_IMAGE
LABEL org.opencontainers.image.title="agentgate" \
      org.opencontainers.image.description="A reverse proxy that adds agent-safety (idempotency, cost-based rate limits, one error envelope, silent-failure detection) to legacy HTTP APIs" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
ENV NODE_ENV=production
WORKDIR /app
# Everything is owned by root and not writable by the user the gateway runs as; it writes nothing but its stdout.
# package.json: "type": "module" for dist/, and the version `agentgate --version` prints.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/schema ./schema
# The default config: every route to ${UPSTREAM_URL}. Mount your own folder over /etc/agentgate (a folder, not a file, so edits reload).
COPY deploy/docker/gateway.yaml /etc/agentgate/gateway.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it: the node user of the official image.
USER 1000:1000
# 8080: the proxy agents call. 9090: admin (/metrics /healthz /readyz); keep it off public networks.
EXPOSE 8080 9090
# No curl in the image: Node's own fetch. /healthz, not /readyz: a Redis outage must not get the gateway restarted.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.AGENTGATE_HEALTHCHECK_URL || 'http://127.0.0.1:9090/healthz', {signal: AbortSignal.timeout(2500)}).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
# The gateway handles SIGTERM itself (drain, exit 0), also as PID 1; `docker run --init` works the same.
STOPSIGNAL SIGTERM
# V8's heap sized for a sidecar (docs/performance.md, "Memory"): the young generation capped at 8 MiB a semi-space
# (node's default grows it to 16) and the old generation let grow 20% over what survived its last collection before
# the next (V8 otherwise lets it grow up to 4 times): together about half the RSS under load for a few percent more
# CPU in the collector. The same flags are in the CLI's shebang and npm start; server.workers inherit them.
CMD ["node", "--max-semi-space-size=8", "--heap-growing-percent=20", "dist/cli.js", "--config", "/etc/agentgate/gateway.yaml"]
