# syntax=docker/dockerfile:1
# aws-auth-operator container image: `make docker` (or `docker build -t aws-auth-operator .`).
# tests/packaging.rs checks this file against the repository (copied paths, the binary's name,
# the stub targets of the dependency layer, the stripped binary, the runtime user, the labels).

# Not older than Cargo.toml's rust-version.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock
# change. Stubs stand in for every target Cargo.toml declares, so cargo can read the manifest.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/core.rs \
    && cargo build --release --locked --bin aws-auth-operator \
    && rm -rf src benches

# The git commit the image is built from, shown by the aws_auth_operator_build_info metric
# (`make docker` passes it); declared here so that it does not invalidate the dependency layer.
ARG AWS_AUTH_OPERATOR_GIT_COMMIT=""

# The operator itself. `render` embeds examples/ in the binary. touch: the copied sources keep
# their own mtimes, which may be older than the stub build, and cargo must rebuild them.
# The release profile keeps line tables (for backtraces and profilers): they move to a separate
# file, aws-auth-operator.debug (the `debug-info` stage), and the image ships the binary
# stripped, with a debuglink to that file (about a fifth of the size).
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin aws-auth-operator \
    && objcopy --only-keep-debug target/release/aws-auth-operator /aws-auth-operator.debug \
    && objcopy --strip-all --add-gnu-debuglink=/aws-auth-operator.debug target/release/aws-auth-operator /aws-auth-operator

# The debug info alone: `docker build --target debug-info --output type=local,dest=debug .`
FROM scratch AS debug-info
COPY --from=build /aws-auth-operator.debug /aws-auth-operator.debug

# Runtime: distroless (glibc, CA certificates, no shell, no package manager), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="aws-auth-operator" \
      org.opencontainers.image.description="Declarative, validated management of the EKS aws-auth ConfigMap through IamIdentityMapping resources" \
      org.opencontainers.image.source="https://github.com/aws-auth-operator/aws-auth-operator" \
      org.opencontainers.image.url="https://github.com/aws-auth-operator/aws-auth-operator" \
      org.opencontainers.image.documentation="https://github.com/aws-auth-operator/aws-auth-operator/tree/main/docs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /aws-auth-operator /usr/local/bin/aws-auth-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/aws-auth-operator"]
CMD ["run"]
