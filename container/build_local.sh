#!/usr/bin/env bash
# Build the geocomply image locally (no push).
#
#   container/build_local.sh [--base offline|dlc|IMAGE] [--tag geocomply:local]
#
# --base offline (default): build geocomply-base:offline first (container/offline_base.sh: Debian rootfs +
#   CPU torch, nothing pulled from a registry), then the image on top with pip in --no-index mode.
# --base dlc: the AWS PyTorch DLC named in the Dockerfile (needs `docker login` to 763104351884's ECR).
# Docker's layer cache makes a rebuild after a code change take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=offline
TAG=geocomply:local
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE=$2; shift ;;
    --tag) TAG=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_local.sh: error: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
docker info >/dev/null 2>&1 || { echo "build_local.sh: error: no Docker engine answers (start dockerd)" >&2; exit 1; }
args=()
case "$BASE" in
  offline)
    container/offline_base.sh geocomply-base:offline
    args=(--build-arg BASE_IMAGE=geocomply-base:offline --build-arg PIP_INSTALL_ARGS=--no-index) ;;
  dlc) ;;
  *) args=(--build-arg "BASE_IMAGE=$BASE") ;;
esac
printf '\033[1m==> docker build -t %s (base: %s)\033[0m\n' "$TAG" "$BASE" >&2
# The offline build fetches nothing (--network none proves it); the DLC build's pip needs the network.
net=host
[ "$BASE" = offline ] && net=none
docker build -q --network "$net" "${args[@]}" -t "$TAG" . >/dev/null
echo "$TAG"
