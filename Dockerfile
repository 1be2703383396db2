# The service image: one region per container (set REGION). Multi-stage: the build stage compiles the
# service (src/ only: no harness, tests or benchmark) and generates the Prisma client; the runtime stage holds
# production dependencies and the compiled output, and runs as the unprivileged `node` user.
# Node 22 LTS; the service supports Node >= 20.19 (Prisma 7's floor).
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: nothing may download a binary at build time (Prisma's engines are not needed:
# the client uses the pg driver adapter, and `prisma generate` runs without the schema engine).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.image.json prisma.config.ts ./
COPY prisma ./prisma
COPY src ./src
RUN npm run generate && npx tsc -p tsconfig.image.json && npm prune --omit=dev --ignore-scripts

FROM node:22-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# SQL migrations, applied by the service itself at start.
COPY --from=build /app/prisma ./prisma
# An example only; mount the deployment's own file and point REGIONS_CONFIG at it. The image ships no
# development allow-list (the repository's regions.config.json lets metadata fetches reach loopback).
COPY deploy/regions.example.json ./config/regions.example.json
USER node
EXPOSE 8080
# Ready: the database answers and is migrated (/readyz; /healthz is liveness only; a region that needs its re-seed,
# `joining`, counts as healthy: a restart would not seed it), asked on the region's operator
# port when it has one (OPERATOR_PORT, else its entry's operatorPort: it answers while the region's port is flooded;
# its /healthz too, 503 once the main thread is stalled), else on the port the region listens on: PORT, else its
# entry's in REGIONS_CONFIG (src/healthcheck.ts resolves them as the region does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "dist/src/healthcheck.js"]
# Required: REGIONS_CONFIG, REGION, ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS. Optional: PORT (else the port
# of the region's entry in REGIONS_CONFIG), OPERATOR_PORT, HOST, DATABASE_URL, REDIS_URL, REGION_REDIS_URL, REDIS_KEY_PREFIX (they override
# the file), ADMIN_TOKEN_ACCEPTED and TOKEN_ACCEPTED_SECRETS (rotations), LOG_LEVEL. Exec form: node is PID 1 and drains on SIGTERM.
CMD ["node", "dist/src/main.js"]
