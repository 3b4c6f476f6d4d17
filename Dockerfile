# syntax=docker/dockerfile:1
# The gitopsd image: the release binary on a distroless base, nothing else of the build.
# Linted by tests/it/deploy.rs (hadolint, nothing above info). No container engine runs on the
# project's machines; the binary the tests run is the one built here.

# Build: the Rust toolchain image already has the C toolchain, pkg-config and OpenSSL's headers
# that git2 needs (libgit2 and libssh2 are built from their vendored sources); zlib is linked
# statically so the run stage needs nothing the distroless base does not have.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV LIBZ_SYS_STATIC=1 CARGO_TERM_COLOR=never
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin gitopsd

# Run: glibc, OpenSSL's runtime and CA certificates, no shell, no package manager. The user is
# distroless' nonroot (65532), numeric so that Kubernetes' runAsNonRoot can check it. The root
# filesystem may be read-only: the only writes go to GITOPSD_WORKDIR (an emptyDir in
# manifests/deployment.yaml).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gitopsd /usr/local/bin/gitopsd
ENV GITOPSD_WORKDIR=/var/lib/gitopsd GITOPSD_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gitopsd"]
CMD ["run", "--config", "/etc/gitopsd/gitopsd.yaml"]
