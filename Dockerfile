# syntax=docker/dockerfile:1
# One builder and four small runtime images, one per binary:
#   docker build --target operator  -t ghcr.io/ordersystem/operator:0.1.0 .
#   docker build --target order     -t ghcr.io/ordersystem/order:0.1.0 .
#   docker build --target invoicing -t ghcr.io/ordersystem/invoicing:0.1.0 .
#   docker build --target shipping  -t ghcr.io/ordersystem/shipping:0.1.0 .
# The runtime images are distroless (no shell), run as uid 65532 and work with a read-only root filesystem:
# templates and migrations are compiled into the binaries.
#
# Build arguments, whose defaults are what users build:
#   RUST_VERSION   the rust:<version>-bookworm image the binaries are built in
#   RUNTIME_BASE   the runtime images' base (distroless cc-debian12, user nonroot 65532)
#   BINARIES       the stage or image holding /src/target/release/ordersystem-*; the default builds them here.
#   REVISION       the commit the images are built from (e.g. `--build-arg REVISION=$(git rev-parse HEAD)`):
#                  every binary reports it in its build_info metric; also the OCI revision label.
# A machine that can pull nothing points RUNTIME_BASE and BINARIES at local images and builds only the runtime
# stages (e2e/images/build-images.sh does, with buildah).

ARG RUST_VERSION=1.95
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=builder

FROM rust:${RUST_VERSION}-bookworm AS chef
# librdkafka is compiled from source by rdkafka-sys.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Dependencies only: this layer is rebuilt when Cargo.lock or a manifest changes, not when source does.
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p ordersystem-operator -p ordersystem-order -p ordersystem-invoicing -p ordersystem-shipping
COPY . .
RUN e2e/images/cargo-release.sh

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE} AS runtime
ARG REVISION=unknown
# Read by every binary (services/contract/src/build.rs); the operator never sets it in a pod.
ENV ORDERSYSTEM_BUILD_REVISION=${REVISION}
LABEL org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.source=https://github.com/ordersystem/ordersystem
USER 65532:65532

FROM runtime AS operator
COPY --from=binaries /src/target/release/ordersystem-operator /usr/local/bin/ordersystem-operator
ENTRYPOINT ["/usr/local/bin/ordersystem-operator"]

FROM runtime AS order
COPY --from=binaries /src/target/release/ordersystem-order /usr/local/bin/ordersystem-order
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ordersystem-order"]

FROM runtime AS invoicing
COPY --from=binaries /src/target/release/ordersystem-invoicing /usr/local/bin/ordersystem-invoicing
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ordersystem-invoicing"]

FROM runtime AS shipping
COPY --from=binaries /src/target/release/ordersystem-shipping /usr/local/bin/ordersystem-shipping
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ordersystem-shipping"]
