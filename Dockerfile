# syntax=docker/dockerfile:1
#
# Myelin homeserver image: the `myelin` binary on Debian slim, running as a non-root user with
# its data (SQLite database, signing key, uploaded media) in the /data volume.
#
#   docker build -t myelin .
#   docker run -p 8008:8008 -v myelin-data:/data myelin
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# ---- build ---------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# The whole workspace: cargo needs every member's manifest and sources to resolve it, and the
# binary embeds config.example.toml and the migrations. .dockerignore keeps target/ and .git out.
COPY . .

# The registry and target directories live in cache mounts so rebuilds only recompile what
# changed; the binary is copied out in the same step because the mount is gone afterwards.
RUN --mount=type=cache,id=myelin-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=myelin-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=myelin-target,target=/build/target,sharing=locked \
    cargo build --release --locked -p homeserver \
    && cp target/release/myelin /usr/local/bin/myelin

# ---- runtime -------------------------------------------------------------------------------
# Same Debian release as the builder, so the binary finds the glibc it was linked against.
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="Myelin" \
      org.opencontainers.image.description="Myelin, a Matrix homeserver" \
      org.opencontainers.image.licenses="AGPL-3.0-only"

# The only package. The binary bundles its own TLS roots (webpki-roots) today; the system CA
# bundle is here for anything that reads /etc/ssl/certs (and a later switch to system roots).
# Not pinned to a package version: Debian drops old versions from its mirrors on every update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid so volumes and bind mounts can be prepared on the host (chown 10001:10001).
RUN groupadd --system --gid 10001 myelin \
    && useradd --system --uid 10001 --gid myelin --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin myelin \
    && mkdir -p /data \
    && chown myelin:myelin /data

COPY --from=builder /usr/local/bin/myelin /usr/local/bin/myelin

# Listen on all interfaces inside the container; keep data in the volume. Any other option can be
# set the same way (MYELIN_<KEY>, MYELIN_<SECTION>__<KEY>; see config.example.toml).
ENV MYELIN_LISTEN=0.0.0.0:8008 \
    MYELIN_DATA_DIR=/data

# Declared after the chown so a new named volume starts out owned by the myelin user.
VOLUME /data
WORKDIR /data
USER 10001:10001

# 8008: everything by default. 8448: the conventional federation port, used when
# MYELIN_FEDERATION_LISTEN=0.0.0.0:8448 is set (usually with MYELIN_TLS__* certificate files).
EXPOSE 8008 8448

# `myelin healthcheck` GETs /health on the port of MYELIN_LISTEN via 127.0.0.1 and exits 0 or 1.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["myelin", "healthcheck"]

ENTRYPOINT ["myelin"]
CMD ["serve"]
