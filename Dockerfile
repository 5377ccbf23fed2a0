# A container image of Gatewise. Build: docker build -t gatewise .
# Run:   docker run -p 8080:8080 -v $PWD/gatewise.yaml:/etc/gatewise/gatewise.yaml:ro gatewise
# The config must listen on 0.0.0.0 (inside the container) and a port >= 1024: the image runs
# as the unprivileged user "node". See docs/deployment.md.

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY examples ./examples
COPY bin ./bin
RUN npx tsc -p .

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist/src ./dist/src
COPY bin ./bin
COPY src/lab/certs ./src/lab/certs
USER node
EXPOSE 8080 3128
# --min-semi-space-size=4: a 4 MiB floor under V8's young generation. Without it a process
# settles, about half the time, into a regime where a large body streamed through it runs
# V8's mark-compact dozens of times a second (twice the CPU per GiB); with it, none of the
# processes measured did (docs/benchmarks.md §37). Costs ~8 MiB of idle RSS per process.
# Node refuses this flag in NODE_OPTIONS, so it is given here; workers inherit it.
ENTRYPOINT ["node", "--min-semi-space-size=4", "/app/bin/gatewise.js"]
CMD ["run", "-c", "/etc/gatewise/gatewise.yaml"]
