# imagelake's container image: one binary for every role (serve, api, worker, kafka-ingest,
# lake-writer, scheduler, and the jobs and admin commands), chosen by the command.
#
#   docker build -t imagelake .                                   # builds the release binary
#   docker build --target runtime-prebuilt --build-arg BINARY=imagelake -t imagelake CONTEXT
#                                                                 # packs a binary built outside
#
# The runtime holds the binary, the shared libraries it links beyond glibc (libssl3 for
# librdkafka's TLS and SASL; zlib1g and libgcc-s1 are in the base) and the CA certificates TLS
# needs, runs as an unprivileged user, and writes only under /data (run it with a read-only root
# filesystem). scripts/container-image builds and runs it without a Docker engine. Nothing here
# needs BuildKit, so Cloud Build's docker step (`gcloud builds submit --tag`) builds it as is.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# The release build: what scripts/setup installs (cmake and nasm for libjpeg-turbo, the curl
# and OpenSSL headers for librdkafka), then one locked build with the default features.
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake nasm libcurl4-openssl-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin imagelake \
 && strip -o /imagelake target/release/imagelake \
 && chmod 0755 /imagelake

# What every runtime image shares: libraries, user, data volume, entry point.
FROM ${RUNTIME_IMAGE} AS runtime-base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="imagelake" \
      org.opencontainers.image.description="Upload, process, keep and query images: the API, workers, stream consumers, lake writer and scheduler in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 imagelake \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin imagelake \
 && mkdir -p /data \
 && chown 10001:10001 /data
# Every address, not the loopback the binary defaults to on a laptop; Cloud Run sets PORT itself.
# /data is the one writable place: mount a volume there to keep the embedded deployment's files
# (no VOLUME instruction: its anonymous volumes outlive containers unseen, and shadow mounts).
ENV IMAGELAKE_DATA_DIR=/data \
    PORT=8080
WORKDIR /data
EXPOSE 8080 5432
USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/imagelake"]
CMD ["serve"]

# A binary built outside (CI's own build): BINARY names it in the build context.
FROM runtime-base AS runtime-prebuilt
ARG BINARY=imagelake
COPY ${BINARY} /usr/local/bin/imagelake

# The default target: the release binary of the build stage.
FROM runtime-base AS runtime
COPY --from=build /imagelake /usr/local/bin/imagelake
