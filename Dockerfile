# syntax=docker/dockerfile:1
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Cache dependencies separately from the sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches examples && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/core.rs \
    && cargo fetch --locked
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin aws-auth-operator \
    && cp target/release/aws-auth-operator /aws-auth-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /aws-auth-operator /usr/local/bin/aws-auth-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/aws-auth-operator"]
