# syntax=docker/dockerfile:1
# The delenda image: docker build -t ghcr.io/delenda-dev/delenda:0.1.0 .
# (Not built in this repository's CI: the test machines have no Docker
# engine. See docs/deploy.md.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The cache mounts keep the registry and the target directory between builds;
# the binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/delenda /out/delenda

# glibc and libgcc from Debian 12, like the build stage; TLS is rustls, so no
# OpenSSL. No shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/delenda /delenda
# Numeric, so the kubelet can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/delenda"]
CMD ["controller"]
