# syntax=docker/dockerfile:1
# The delenda image: docker build -t ghcr.io/delenda-dev/delenda:0.1.0 .
#
# Base images are build arguments, so a build without a registry can supply
# bases of its own (the test environment makes both: tests/env/servers/image.sh):
#   RUST_IMAGE     the toolchain that compiles the binary
#   RUNTIME_IMAGE  what the binary runs on: glibc and libgcc of Debian 12,
#                  CA certificates, time zones, user 65532; no shell
#   BINARY_FROM    the stage or image that holds /out/delenda: `build`
#                  compiles it here from the `sources` stage; an image made
#                  from a binary that `cargo build --release --locked`
#                  compiled from those same sources elsewhere skips the
#                  compile (the test environment reuses its cargo cache)
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY_FROM=build

# Exactly the files the compile reads (.dockerignore lets no others in):
# the crate, and the demo manifests it embeds (include_str!).
FROM scratch AS sources
COPY Cargo.toml Cargo.lock /src/
COPY src /src/src/
COPY examples/demo/policies.yaml /src/examples/demo/

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY --from=sources /src ./
# The cache mounts keep the registry and the target directory between builds;
# the binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin delenda \
    && install -D -m 0755 target/release/delenda /out/delenda

FROM ${BINARY_FROM} AS binary

# glibc and libgcc from Debian 12, like the build stage; TLS is rustls, so no
# OpenSSL. No shell, no package manager.
FROM ${RUNTIME_IMAGE}
# The same binary is the kubectl plugin when run by the name
# kubectl-delenda: copy /delenda out of the image and link it on PATH
# (ln -s "$(command -v delenda)" ~/.local/bin/kubectl-delenda); see
# docs/gitops.md.
COPY --from=binary /out/delenda /delenda
# Numeric, so the kubelet can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/delenda"]
CMD ["controller"]
