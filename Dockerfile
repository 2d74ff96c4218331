# The ferris image: ferris (server, run, deploy), ferris-flight, ferris-k8s-deploy and
# ferris-k8s-monitor on a
# slim Debian. Built in two stages so the image carries no toolchain:
#   docker build -t ghcr.io/ferris-streams/ferris:0.1.0 .
# docs/kubernetes.md says where the image is used. The build fetches protoc from Maven
# Central (scripts/protoc.sh), as the test suite does, for the etcd client's generated code.
FROM rust:1.94-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake curl unzip \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    PROTOC="$(bash scripts/protoc.sh)" cargo build --workspace --bins --profile dist \
 && mkdir -p /out \
 && cp target/dist/ferris target/dist/ferris-flight target/dist/ferris-k8s-deploy \
       target/dist/ferris-k8s-monitor /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ferris --create-home ferris
COPY --from=build /out/ /usr/local/bin/
USER ferris
WORKDIR /var/lib/ferris
# Flight SQL, and HTTP (/health, /ready, /metrics, the REST API).
EXPOSE 50051 8080
ENTRYPOINT ["ferris"]
CMD ["server", "--flight", "0.0.0.0:50051", "--http", "0.0.0.0:8080"]
