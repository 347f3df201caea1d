#!/usr/bin/env bash
# The local part of `make demo`: really run the example's sweep in containers.
#
# Works from whatever state Docker is in: no engine (start one when this
# machine can, else say how), an engine without the base image (bootstrap it
# when this machine can, else say how), or everything ready. Never fails the
# demo for a missing prerequisite: the sweep and the dry run were already
# shown; it says what to run to get the rest.
#
#   .ci/demo-local-run.sh CALIBAN_BIN_DIR BASE_IMAGE   (empty BASE_IMAGE: Caliban's public defaults)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$1
BASE_IMAGE=${2:-}

say() { echo "[demo] $*"; }
# Only root with apt can start dockerd or bootstrap an image, and only for the
# local default engine (a DOCKER_HOST elsewhere is not ours to start).
can_prepare() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${DOCKER_HOST:-}" ]; }
engine_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }
how_to_prepare="as root on Debian/Ubuntu: sudo bash .ci/test-env.sh engine base"

if ! engine_answers; then
  where=${DOCKER_HOST:-the local Docker socket}
  if can_prepare; then
    say "no Docker engine answers at $where: starting one with .ci/test-env.sh"
    CALIBAN_TEST_BASE_IMAGE=${BASE_IMAGE:-caliban-test/base:bookworm} bash .ci/test-env.sh engine ${BASE_IMAGE:+base} \
      || { say "could not start a Docker engine (see above); the local run is skipped. Fix that, then: make demo"; exit 0; }
  else
    say "no Docker engine answers at $where, so the local run is skipped."
    if [ -n "${DOCKER_HOST:-}" ]; then
      say "to get it: start the engine DOCKER_HOST points at (or unset DOCKER_HOST), then: make demo"
    else
      say "to get it: install and start Docker ($how_to_prepare), then: make demo"
    fi
    exit 0
  fi
fi

if [ -n "$BASE_IMAGE" ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if can_prepare; then
    say "the base image $BASE_IMAGE is not in this engine: bootstrapping it from the apt mirror (a few minutes)"
    CALIBAN_TEST_BASE_IMAGE=$BASE_IMAGE bash .ci/test-env.sh engine base \
      || { say "could not build $BASE_IMAGE (see above); the local run is skipped. Fix that, then: make demo"; exit 0; }
  else
    say "the base image $BASE_IMAGE is not in this engine, so the local run is skipped."
    say "to get it: build it ($how_to_prepare), or use Caliban's public base images (needs Docker Hub): make demo BASE_IMAGE="
    exit 0
  fi
fi

echo "== A real local run of every experiment (the first build takes a minute or two) =="
cd example
if [ -n "$BASE_IMAGE" ]; then export CALIBAN_BASE_IMAGE=$BASE_IMAGE; fi
status=0
"$BIN/caliban" run --nogpu --experiment_config experiment.json trainer.train || status=$?
if [ "$status" -eq 0 ]; then
  say "each job wrote its metrics.json under example/caliban_outputs/<group>/job_<id>/model/"
fi
exit "$status"
