# syntax=docker/dockerfile:1
# Build: the Rust toolchain with the C toolchain libgit2 needs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin gitopsd

# Run: a minimal base with glibc and OpenSSL's runtime, no shell, a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gitopsd /usr/local/bin/gitopsd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gitopsd"]
CMD ["run", "--config", "/etc/gitopsd/gitopsd.yaml"]
