# The attune binary and the core pack, for the multi-process deployment of docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p attune

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 nodejs bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/attune /usr/local/bin/attune
COPY packs/core /usr/local/share/attune/packs/core
RUN useradd --system --home /var/lib/attune --create-home attune
USER attune
WORKDIR /var/lib/attune
ENTRYPOINT ["attune"]
