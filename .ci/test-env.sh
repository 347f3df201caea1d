#!/usr/bin/env bash
# Prepare a real Docker engine, a local base image and a loopback registry for
# the test suite. Idempotent: every step is skipped when already done, so it is
# cheap to run before every test session. Nothing here can be pulled from an
# image registry; the base image is bootstrapped from the apt mirror.
set -euo pipefail

STATE_DIR=${CALIBAN_TEST_STATE_DIR:-/tmp/caliban-test-env}
BASE_IMAGE=${CALIBAN_TEST_BASE_IMAGE:-caliban-test/base:bookworm}
REGISTRY_ADDR=${CALIBAN_TEST_REGISTRY:-127.0.0.1:5000}
mkdir -p "$STATE_DIR"

log() { echo "[test-env] $*"; }

apt_updated=0
need_pkg() {
  local missing=()
  for cmd_pkg in "$@"; do
    local cmd=${cmd_pkg%%:*} pkg=${cmd_pkg##*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

need_pkg dockerd:docker.io docker-registry:docker-registry debootstrap:debootstrap script:bsdutils curl:curl

# 1. Engine
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up:"; tail -20 "$STATE_DIR/dockerd.log"; exit 1; }
fi
log "engine ready: $(docker version --format '{{.Server.Version}}')"

# 2. Base image, bootstrapped from the machine's own apt mirror.
mirror_uri() {
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
  fi
  echo "$uri"
}
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  rootfs="$STATE_DIR/rootfs"
  rm -rf "$rootfs"
  log "bootstrapping $BASE_IMAGE (about a minute)"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$rootfs" "$(mirror_uri)" >"$STATE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$STATE_DIR/debootstrap.log"; exit 1; }
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ln -sf python3 "$rootfs/usr/bin/python"
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
log "base image ready: $BASE_IMAGE"

# 3. Loopback registry for push tests.
if ! curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
  cat >"$STATE_DIR/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $STATE_DIR/registry-data}, delete: {enabled: true}}
http: {addr: $REGISTRY_ADDR}
YML
  log "starting registry on $REGISTRY_ADDR"
  nohup docker-registry serve "$STATE_DIR/registry.yml" >"$STATE_DIR/registry.log" 2>&1 &
  for _ in $(seq 1 30); do curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null || { tail -20 "$STATE_DIR/registry.log"; exit 1; }
fi
log "registry ready: $REGISTRY_ADDR"
