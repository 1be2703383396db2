# Multi-stage build: compile TypeScript and generate the Prisma client in the build stage; the runtime
# stage holds only production dependencies and the compiled output, and runs as the unprivileged `node` user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY prisma ./prisma
COPY src ./src
COPY scripts ./scripts
COPY bench ./bench
# `npm run build` runs `prisma generate` (no schema engine needed for it) and then tsc.
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# SQL migrations, applied by the service itself at start.
COPY --from=build /app/prisma ./prisma
COPY regions.config.json ./regions.config.json
USER node
EXPOSE 8081
# Set REGION, ADMIN_TOKEN, TOKEN_SIGNING_SECRET (and REGIONS_CONFIG / REDIS_URL / DATABASE_URL / PORT / HOST).
CMD ["node", "dist/src/main.js"]
