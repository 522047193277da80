# relay-host in a container (deploy/kubernetes/, README "Deploy on Kubernetes").
#
#   docker build -t relay-host:0.1.0 .
#
# Stage 1 builds with the toolchain rust-toolchain.toml pins (Rust 1.97.0 plus the
# wasm32-unknown-unknown target: crates/relay-host/build.rs compiles the relay
# component for it, encodes it and embeds it in the binary). Stage 2 holds the
# binary alone.

FROM rust:1.97.0-slim-bookworm AS build
WORKDIR /src
# Installs what rust-toolchain.toml names (the target, clippy, rustfmt) on top of
# the image's 1.97.0, in a layer of its own.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustup target list --installed | grep -qx wasm32-unknown-unknown
COPY . .
RUN cargo build --release --locked -p relay-host \
 && install -D -m 0755 target/release/relay-host /out/relay-host

FROM debian:bookworm-slim
# A fixed numeric uid, so Kubernetes can check runAsNonRoot
# (deploy/kubernetes/statefulset.yaml runs as 10001).
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --no-create-home --shell /usr/sbin/nologin relay
# TLS roots are compiled in (webpki-roots; add more with ca_file): no CA bundle needed.
COPY --from=build /out/relay-host /usr/local/bin/relay-host
USER 10001:10001
# /metrics, /healthz and /readyz when run with --metrics 0.0.0.0:9464.
EXPOSE 9464
# Exec form: relay-host is PID 1 and gets the SIGTERM itself (going_idle, close
# 1000, exit 0). Keep stdin open (`docker run -i`, `stdin: true`): its end means
# shutdown.
ENTRYPOINT ["relay-host"]
CMD ["run", "--config", "/etc/relay/tenants.toml", "--metrics", "0.0.0.0:9464"]
