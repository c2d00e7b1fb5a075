# syntax=docker/dockerfile:1
#
# Trust OS gateway image: `trustos serve` as a sidecar beside an agent container.
#
#   docker build -t trustos:dev .
#   docker run --rm -v trustos-home:/var/lib/trustos -p 127.0.0.1:8790:8790 trustos:dev
#
# The HTTP front listens on 0.0.0.0:8790 inside the container, because a Kubernetes kubelet
# probes /healthz on the pod IP, not on localhost. Every route but /healthz needs a bearer token
# listed (as a SHA-256) in gateway.toml's [[tokens]], and browser requests are refused unless
# their Origin is in allowed_origins; still, publish the port only to the pod / loopback (see
# deploy/README.md). State (gateway key, store, Merkle log) lives in $TRUSTOS_HOME: keep it on
# a persistent volume, or every restart makes a new gateway key and an empty log.

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p trustos \
    && install -D -m 0755 target/release/trustos /out/trustos

# ---- run --------------------------------------------------------------------------------------
# glibc + libgcc, no shell, no package manager; user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/trustos /usr/local/bin/trustos
ENV TRUSTOS_HOME=/var/lib/trustos
# The gateway key, the store and the Merkle log. A fresh volume is initialized by
# `trustos init` (the manifests run it as an init container); `trustos serve` also creates
# whatever is missing and never overwrites what is there.
VOLUME ["/var/lib/trustos"]
USER 65532:65532
EXPOSE 8790
ENTRYPOINT ["trustos"]
CMD ["serve", "--listen", "0.0.0.0:8790"]
