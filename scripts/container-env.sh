#!/usr/bin/env bash
# container-env.sh — the container engine for the image and compose tests, on any Linux host.
#
# With a working Docker engine (`docker info` answers) it uses Docker and `docker compose` (or
# `docker-compose`): what users have. Without one it sets up podman from Debian's packages
# (podman, runc, docker-compose, debootstrap) and serves the Docker API from podman's socket, so
# docker-compose works unchanged.
#
# Offline mode: when no image registry can be reached (air-gapped CI), the base images the
# Dockerfiles name are built locally instead of pulled:
#   docker.io/library/debian:bookworm-slim  <- debootstrap --variant=minbase from the host's
#                                              APT mirror (read from the host's APT sources)
#   docker.io/library/rust:<ver>-slim-bookworm (+ aliases) <- that image + the host's own Rust
#                                              toolchain (rustc --print sysroot) + gcc, libc6-dev
# It is chosen automatically when pulling debian:bookworm-slim fails; VERILIMIT_CONTAINER_OFFLINE=1
# forces it, =0 forbids it.
#
# Usage:
#   bash scripts/container-env.sh setup                  # idempotent; fast when already done
#   bash scripts/container-env.sh engine                 # prints docker or podman
#   bash scripts/container-env.sh build DIR TAG [build args...]
#   bash scripts/container-env.sh compose DIR [compose args...]
#   bash scripts/container-env.sh service-stop           # stop what setup/compose started (podman)
#   bash scripts/container-env.sh status
#
# Knobs: VERILIMIT_CONTAINER_ENGINE=docker|podman (default: docker when its engine answers),
#        VERILIMIT_CONTAINER_OFFLINE=1|0, CONTAINER_ENV_WORK (scratch dir), PODMAN_SOCK,
#        FORCE_REBUILD=1 (rebuild local base images).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
WORK=${CONTAINER_ENV_WORK:-${TMPDIR:-/tmp}/verilimit-container-env}
PODMAN_SOCK=${PODMAN_SOCK:-/run/podman/podman.sock}
SUITE=bookworm
DEBIAN_REPO=docker.io/library/debian
RUST_REPO=docker.io/library/rust
CONTAINERS_CONF=/etc/containers/containers.conf
PODMAN_PACKAGES=(podman runc netavark aardvark-dns debootstrap docker-compose curl ca-certificates)

log() { printf '[container-env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ engine ---
docker_works() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

engine() {
    case "${VERILIMIT_CONTAINER_ENGINE:-}" in
        docker | podman) echo "$VERILIMIT_CONTAINER_ENGINE" ;;
        "") if docker_works; then echo docker; else echo podman; fi ;;
        *) die "VERILIMIT_CONTAINER_ENGINE must be docker or podman, not '$VERILIMIT_CONTAINER_ENGINE'" ;;
    esac
}
ENGINE=$(engine)
ctr() { "$ENGINE" "$@"; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (podman and its packages)"; }

ensure_podman_packages() {
    local missing=() p
    for p in "${PODMAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || die "no Docker engine and no apt-get to install podman: install Docker or podman"
        log "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# crun fails on hosts with cgroup v1 and no systemd (rlimit errors): runc + cgroupfs, no forced
# default ulimits. Only written when the file is absent or was written by this script.
ensure_containers_conf() {
    local want
    want=$'# written by verilimit scripts/container-env.sh\n[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
    mkdir -p /etc/containers
    if [ -f "$CONTAINERS_CONF" ] && ! head -1 "$CONTAINERS_CONF" | grep -q 'container-env'; then
        return 0
    fi
    if [ ! -f "$CONTAINERS_CONF" ] || [ "$(cat "$CONTAINERS_CONF")" != "${want%$'\n'}" ]; then
        printf '%s' "$want" >"$CONTAINERS_CONF"
        log "wrote $CONTAINERS_CONF"
    fi
}

# ------------------------------------------------------------- apt sources ---
# The host's APT sources file that carries the main $SUITE suite.
apt_sources_file() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        if awk -v s="$SUITE" 'BEGIN{RS="";FS="\n"} {for(i=1;i<=NF;i++) if($i ~ "^Suites:" && (" " $i " ") ~ (" " s " ")) found=1} END{exit !found}' "$f"; then
            echo "$f"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        if grep -Eq "^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+$SUITE([[:space:]]|$)" "$f"; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

# The first mirror URI serving the main $SUITE suite, read at run time.
debian_mirror() {
    local f
    f=$(apt_sources_file) || die "offline mode needs an APT source for Debian $SUITE on the host"
    case "$f" in
        *.sources)
            awk -v s="$SUITE" 'BEGIN{RS="";FS="\n"} {
                uri=""; suites=""
                for(i=1;i<=NF;i++){
                  if($i ~ /^URIs:/){v=$i; sub(/^URIs:[ \t]*/,"",v); uri=v}
                  if($i ~ /^Suites:/){v=$i; sub(/^Suites:[ \t]*/,"",v); suites=" " v " "}
                }
                if(index(suites," " s " ")){split(uri,a,/[ \t]+/); print a[1]; exit}
              }' "$f" ;;
        *)
            awk -v s="$SUITE" '$1=="deb"{ i=2; if($i ~ /^\[/){ while($i !~ /\]$/) i++; i++ } if($(i+1)==s){print $i; exit} }' "$f" ;;
    esac
}

# --------------------------------------------------------------- extra CAs ---
# Hosts behind a TLS-inspecting proxy trust extra CAs; without them apt, pip and cargo inside
# the images fail. Every host-trusted CA that Debian's ca-certificates does not ship is copied
# into the image's /usr/local/share/ca-certificates/.
host_extra_cas() { # OUTDIR
    local out=$1 f known=() extra=()
    mkdir -p "$out"
    mapfile -d '' known < <(find /usr/share/ca-certificates -name '*.crt' -print0 2>/dev/null)
    [ -f /etc/ssl/certs/ca-certificates.crt ] && extra+=(/etc/ssl/certs/ca-certificates.crt)
    for f in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
        [ -f "$f" ] && extra+=("$f")
    done
    [ ${#extra[@]} -gt 0 ] || return 0
    awk -v out="$out" '
      /-----BEGIN CERTIFICATE-----/ { inb=1; body=""; pem=$0 "\n"; next }
      inb { pem = pem $0 "\n" }
      /-----END CERTIFICATE-----/ && inb {
        inb=0
        if (phase == "known") seen[body]=1
        else if (!(body in seen)) {
          seen[body]=1; n++; f=sprintf("%s/host-extra-%d.crt", out, n); printf "%s", pem > f; close(f)
        }
        next
      }
      inb { b=$0; gsub(/[ \t\r]/, "", b); body = body b }
    ' phase=known "${known[@]}" phase=extra "${extra[@]}"
}

ca_hash() {
    local d
    d=$(mktemp -d)
    host_extra_cas "$d"
    cat "$d"/*.crt 2>/dev/null | sha256sum | cut -c1-16
    rm -rf "$d"
}

# ------------------------------------------------------------- base images ---
image_exists() { ctr image inspect "$1" >/dev/null 2>&1; }
label_of() { ctr image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }
image_id() { ctr image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
tag_all() { # SRC TAG...
    local src=$1 t
    shift
    for t in "$@"; do ctr tag "$src" "$t"; done
}
engine_build() { # CONTEXT TAG [args...]: a plain build that never pulls in offline mode
    local dir=$1 tag=$2
    shift 2
    if [ "$ENGINE" = podman ]; then
        # --format docker keeps HEALTHCHECK (dropped in OCI format).
        local pull=()
        [ "$(cat "$WORK/offline" 2>/dev/null)" = 1 ] && pull=(--pull=never)
        podman build --network host --format docker "${pull[@]}" -t "$tag" "$@" "$dir"
    else
        docker build --network host -t "$tag" "$@" "$dir"
    fi
}

build_debian_image() {
    local ref="$DEBIAN_REPO:$SUITE-slim" cah mirror src rootfs
    cah=$(ca_hash)
    if image_exists "$ref" && [ "${FORCE_REBUILD:-0}" != 1 ] \
        && [ "$(label_of "$ref" io.verilimit.ca-sha)" = "$cah" ]; then
        tag_all "$ref" "$DEBIAN_REPO:$SUITE" "$DEBIAN_REPO:12-slim" "$DEBIAN_REPO:12"
        return 0
    fi
    command -v debootstrap >/dev/null || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
    }
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "could not read the Debian mirror from the host's APT sources"
    src=$(apt_sources_file)
    rootfs="$WORK/rootfs-$SUITE"
    log "offline: debootstrap --variant=minbase $SUITE (mirror from $src)"
    rm -rf "$rootfs"
    mkdir -p "$WORK"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    # The host's APT sources (same mirror, security and updates) inside the image.
    rm -f "$rootfs/etc/apt/sources.list"
    mkdir -p "$rootfs/etc/apt/sources.list.d"
    case "$src" in
        *.sources) cp "$src" "$rootfs/etc/apt/sources.list.d/debian.sources" ;;
        *) cp "$src" "$rootfs/etc/apt/sources.list" ;;
    esac
    # Slimmed the way the official -slim images are.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
    printf 'APT::Install-Recommends "false";\nAPT::AutoRemove::SuggestsImportant "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    printf 'Acquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/groff/*
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    : >"$rootfs/etc/resolv.conf"
    rm -f "$rootfs/etc/hostname"
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    host_extra_cas "$rootfs/usr/local/share/ca-certificates"
    log "offline: import $ref ($(ls "$rootfs/usr/local/share/ca-certificates" | wc -l) extra host CA(s))"
    tar --numeric-owner -C "$rootfs" -cf - . | ctr import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' --change "LABEL io.verilimit.ca-sha=$cah" - "$ref" >/dev/null
    rm -rf "$rootfs"
    tag_all "$ref" "$DEBIAN_REPO:$SUITE" "$DEBIAN_REPO:12-slim" "$DEBIAN_REPO:12"
}

host_rustc() {
    if command -v rustc >/dev/null 2>&1; then
        command -v rustc
    elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/rustc" ]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustc"
    else
        die "offline mode needs a Rust toolchain on the host (rustup) to build the rust base image"
    fi
}

rust_tags() { # VERSION: every tag the official image has for it (all slim bookworm here)
    local v=$1 mm=${1%.*} m=${1%%.*} x
    for x in "$v" "$mm" "$m"; do
        echo "$RUST_REPO:$x-slim-$SUITE" "$RUST_REPO:$x-slim" "$RUST_REPO:$x-$SUITE" "$RUST_REPO:$x"
    done
    echo "$RUST_REPO:slim-$SUITE" "$RUST_REPO:slim" "$RUST_REPO:$SUITE" "$RUST_REPO:latest"
}

build_rust_image() {
    local rustc ver host sysroot ref ctx tc base_id rustup_bin p
    rustc=$(host_rustc)
    ver=$("$rustc" --version | awk '{print $2}')
    host=$("$rustc" -vV | sed -n 's/^host: //p')
    sysroot=$("$rustc" --print sysroot)
    ref="$RUST_REPO:$ver-slim-$SUITE"
    base_id=$(image_id "$DEBIAN_REPO:$SUITE-slim")
    # shellcheck disable=SC2046
    if image_exists "$ref" && [ "${FORCE_REBUILD:-0}" != 1 ] \
        && [ "$(label_of "$ref" io.verilimit.base-id)" = "$base_id" ]; then
        tag_all "$ref" $(rust_tags "$ver")
        return 0
    fi
    ctx="$WORK/rust-ctx"
    tc="$ctx/rustup/toolchains/$ver-$host"
    log "offline: staging the host toolchain $sysroot ($ver, $host)"
    rm -rf "$ctx"
    mkdir -p "$tc" "$ctx/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$tc" -xf -
    sed -i '/^rust-docs-/d' "$tc/lib/rustlib/components" 2>/dev/null || true
    rm -f "$tc"/lib/rustlib/manifest-rust-docs-*
    ln -s "$ver-$host" "$ctx/rustup/toolchains/stable-$host"
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n\n[overrides]\n' \
        "$ver-$host" >"$ctx/rustup/settings.toml"
    rustup_bin=$(dirname "$rustc")/rustup
    [ -x "$rustup_bin" ] || rustup_bin=$(command -v rustup) || die "offline mode needs rustup on the host"
    cp -L "$rustup_bin" "$ctx/cargo/bin/rustup"
    for p in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
        ln -s rustup "$ctx/cargo/bin/$p"
    done
    chmod -R a+w "$ctx/rustup" "$ctx/cargo"
    cat >"$ctx/Containerfile" <<CFG
FROM $DEBIAN_REPO:$SUITE-slim
LABEL io.verilimit.base-id=$base_id
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$ver
RUN set -eux; apt-get update; \\
    apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev pkg-config; \\
    rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN set -eux; rustup --version; cargo --version; rustc --version
CFG
    log "offline: build $ref"
    engine_build "$ctx" "$ref" -f "$ctx/Containerfile" >"$WORK/rust-build.log" 2>&1 \
        || { tail -30 "$WORK/rust-build.log" >&2; die "rust base image build failed (log: $WORK/rust-build.log)"; }
    rm -rf "$ctx"
    # shellcheck disable=SC2046
    tag_all "$ref" $(rust_tags "$ver")
}

# Offline when told, or when the registry does not give us debian:bookworm-slim.
decide_offline() {
    local offline
    case "${VERILIMIT_CONTAINER_OFFLINE:-}" in
        1) offline=1 ;;
        0) offline=0 ;;
        *)
            if timeout 120 "$ENGINE" pull -q "$DEBIAN_REPO:$SUITE-slim" >/dev/null 2>&1; then
                offline=0
            else
                offline=1
                log "no image registry reachable: offline mode (base images built locally)"
            fi ;;
    esac
    mkdir -p "$WORK"
    echo "$offline" >"$WORK/offline"
}

cmd_setup() {
    if [ "$ENGINE" = podman ]; then
        need_root
        ensure_podman_packages
        ensure_containers_conf
    fi
    ctr version >/dev/null 2>&1 || die "$ENGINE does not work here ($ENGINE version failed)"
    decide_offline
    if [ "$(cat "$WORK/offline")" = 1 ]; then
        [ "$(id -u)" = 0 ] || die "offline mode needs root (debootstrap)"
        build_debian_image
        build_rust_image
    fi
    log "setup done: engine $ENGINE, offline $(cat "$WORK/offline")"
}

# ----------------------------------------------------------------- compose ---
podman_api_alive() {
    [ -S "$PODMAN_SOCK" ] && curl -fsS --max-time 3 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
}

ensure_podman_api() {
    podman_api_alive && return 0
    mkdir -p "$(dirname "$PODMAN_SOCK")" "$WORK"
    rm -f "$PODMAN_SOCK"
    log "starting podman system service on unix://$PODMAN_SOCK"
    setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" >"$WORK/podman-service.log" 2>&1 </dev/null &
    echo $! >"$WORK/podman-service.pid"
    local _i
    for _i in $(seq 1 50); do
        podman_api_alive && return 0
        sleep 0.2
    done
    die "podman API service did not come up (log: $WORK/podman-service.log)"
}

# podman runs HEALTHCHECKs from systemd timers; without systemd health stays "starting" and
# compose's `condition: service_healthy` would wait for ever. This loop runs them itself.
cmd_health_pump() {
    local steady=${HEALTH_STEADY_S:-10} id status now
    declare -A last=()
    while :; do
        now=$(date +%s)
        while read -r id status; do
            case "$status" in
                *"(starting)") ;;
                *"(healthy)" | *"(unhealthy)") [ $((now - ${last[$id]:-0})) -ge "$steady" ] || continue ;;
                *) continue ;;
            esac
            podman healthcheck run "$id" >/dev/null 2>&1 || true
            last[$id]=$now
        done < <(podman ps --no-trunc --format '{{.ID}} {{.Status}}' 2>/dev/null)
        sleep 2
    done
}

ensure_health_pump() {
    local pidf="$WORK/health-pump.pid"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then return 0; fi
    mkdir -p "$WORK"
    setsid nohup bash "$SELF" _health-pump >"$WORK/health-pump.log" 2>&1 </dev/null &
    echo $! >"$pidf"
}

cmd_compose() {
    [ $# -ge 1 ] || die "usage: $0 compose DIR [compose args...]"
    local dir=$1
    shift
    [ -d "$dir" ] || die "no such directory: $dir"
    cd "$dir"
    if [ "$ENGINE" = docker ]; then
        if docker compose version >/dev/null 2>&1; then exec docker compose "$@"; fi
        command -v docker-compose >/dev/null || die "neither 'docker compose' nor docker-compose is installed"
        exec docker-compose "$@"
    fi
    ensure_podman_api
    ensure_health_pump
    DOCKER_HOST="unix://$PODMAN_SOCK" COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0 \
        exec docker-compose "$@"
}

cmd_service_stop() {
    local name pidf
    for name in podman-service health-pump; do
        pidf="$WORK/$name.pid"
        if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then kill "$(cat "$pidf")"; fi
        rm -f "$pidf"
    done
}

cmd_status() {
    echo "engine: $ENGINE"
    echo "offline: $(cat "$WORK/offline" 2>/dev/null || echo unknown)"
    if [ "$ENGINE" = podman ]; then
        if podman_api_alive; then echo "podman api: up"; else echo "podman api: down"; fi
        if [ -f "$WORK/health-pump.pid" ] && kill -0 "$(cat "$WORK/health-pump.pid")" 2>/dev/null; then
            echo "healthcheck runner: up"
        else
            echo "healthcheck runner: down"
        fi
    fi
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
        setup) cmd_setup "$@" ;;
        engine) echo "$ENGINE" ;;
        build)
            [ $# -ge 2 ] || die "usage: $0 build DIR TAG [build args...]"
            engine_build "$@" ;;
        compose) cmd_compose "$@" ;;
        service-stop) cmd_service_stop ;;
        _health-pump) cmd_health_pump ;;
        status) cmd_status ;;
        *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
           exit 2 ;;
    esac
}
main "$@"
