# verilimit container image: build on the official Rust image, run on Debian slim.
#
#   docker build -t verilimit .
#   docker run --rm -p 127.0.0.1:8765:8765 \
#     -e TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef -e TWILIO_AUTH_TOKEN=test-token \
#     verilimit
#
# The image listens on 0.0.0.0:8765, so the built-in development account is refused there:
# configure an account (TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN) or the server will not start.
# With VERILIMIT_TLS=true it also serves HTTPS on 0.0.0.0:443 as verify.twilio.com (README: "Every
# official SDK, unchanged"); the non-root user binds 443 where the container's
# net.ipv4.ip_unprivileged_port_start is 0 (Docker's default; podman: --sysctl, as the compose
# example does). /ca is where VERILIMIT_TLS_CA_OUT can write the CA certificate for a shared volume.
# Plain Dockerfile syntax only (no BuildKit cache mounts): builds with docker, the legacy
# builder, buildah and podman alike.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /build
# The shipped binary is stripped, so there is no point compiling debug line tables into it.
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# 1. Dependencies only, against a dummy crate: this layer is rebuilt only when Cargo.toml or
#    Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/verilimit* target/release/libverilimit* target/release/deps/verilimit-* \
           target/release/deps/libverilimit-* target/release/.fingerprint/verilimit-*

# 2. The crate itself. `sqlx::migrate!` embeds migrations/ (and migrations-postgres/) at
#    compile time, so they must be in place before this build.
COPY build.rs ./
COPY migrations ./migrations
COPY migrations-postgres ./migrations-postgres
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && install -D -m 0755 target/release/verilimit /out/verilimit \
 && /out/verilimit --version

FROM debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="verilimit" \
      org.opencontainers.image.description="A local Twilio Verify v2 server that enforces Service Rate Limits exactly" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and bind mounts can be
# chowned to it. /data is the database volume, owned by that user.
RUN groupadd --gid 10001 verilimit \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /data \
            --shell /usr/sbin/nologin verilimit \
 && install -d -o 10001 -g 10001 -m 0750 /data \
 && install -d -o 10001 -g 10001 -m 0755 /ca
COPY --from=build /out/verilimit /usr/local/bin/verilimit

ENV VERILIMIT_LISTEN=0.0.0.0:8765 \
    VERILIMIT_TLS_LISTEN=0.0.0.0:443 \
    VERILIMIT_DATABASE_URL=sqlite:///data/verilimit.db
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8765 443
# `verilimit healthcheck` probes /healthz on the VERILIMIT_LISTEN port over loopback: no curl in
# the image. (Change the port with VERILIMIT_LISTEN, not --listen, so the probe follows it.)
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/verilimit", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/verilimit"]
