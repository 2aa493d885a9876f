# syntax=docker/dockerfile:1
# Small non-root image: build with dev dependencies, ship only dist/ and production node_modules.
ARG NODE_IMAGE=node:lts-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY routes ./routes
COPY flags ./flags
RUN chown -R node:node /app/flags
USER node
EXPOSE 8080 9090
# Admin must listen beyond loopback for the probe and for operators: that needs CUTOVER_ADMIN_TOKEN.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--min-semi-space-size=8", "--no-memory-reducer", "dist/cli.js"]
CMD ["serve", "--routes", "/app/routes", "--flags", "/app/flags", "--port", "8080", "--admin-port", "9090"]
