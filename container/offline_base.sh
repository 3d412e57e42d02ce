#!/usr/bin/env bash
# Build the "offline" base image for the geocomply container where no registry can be pulled from:
# a Debian bookworm rootfs (debootstrap, from the Debian mirror) + a venv at /opt/venv with the CPU torch
# wheel and every `train` dependency, installed from a host-side wheelhouse, then `docker import`ed.
#
#   container/offline_base.sh [IMAGE]     (default geocomply-base:offline; needs root, debootstrap, docker)
#
# The image stands in for the AWS PyTorch DLC: the Dockerfile installs the project on top with
# `--build-arg BASE_IMAGE=geocomply-base:offline --build-arg PIP_INSTALL_ARGS=--no-index`.
# Cached: when an image with the same recipe hash exists, nothing is rebuilt.
# Env: PYTHON (host interpreter, must be CPython 3.11 on x86_64 like Debian's), TORCH_SPEC (torch==2.13.0),
# DEBIAN_MIRROR (http://deb.debian.org/debian), WHEELHOUSE (.wheelhouse, reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-geocomply-base:offline}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHEELHOUSE=${WHEELHOUSE:-.wheelhouse}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The requirements: core + `train` and `qlora` extras from pyproject.toml (one source of truth), torch pinned first.
reqs=$("$PYTHON" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["train"] + p["optional-dependencies"]["qlora"] + ["setuptools>=68", "wheel"]))
PY
)
recipe=$( { cat "$0"; echo "$reqs"; echo "$TORCH_SPEC"; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{index .Config.Labels "geocomply.recipe"}}' "$IMAGE" 2>/dev/null)" = "$recipe" ]; then
  say "$IMAGE is up to date (recipe $recipe)"
  exit 0
fi
"$PYTHON" -c 'import sys, platform; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")' \
  || { echo "offline_base.sh: error: $PYTHON must be CPython 3.11 on x86_64 (Debian bookworm's python3)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "offline_base.sh: error: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }

say "wheelhouse $WHEELHOUSE ($TORCH_SPEC + train dependencies)"
mkdir -p "$WHEELHOUSE"
printf '%s\n%s\n' "$TORCH_SPEC" "$reqs" > "$WHEELHOUSE/requirements.txt"
# torch first and alone, so the resolver never reaches for a CUDA build of it.
"$PYTHON" -m pip download -q --only-binary=:all: --no-deps -d "$WHEELHOUSE" "$TORCH_SPEC"
"$PYTHON" -m pip download -q -d "$WHEELHOUSE" -r "$WHEELHOUSE/requirements.txt"

work=$(mktemp -d /var/tmp/geocomply-rootfs.XXXXXX)
rootfs=$work/rootfs
cleanup() {
  for m in "$rootfs/wheels" "$rootfs/proc"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
say "debootstrap bookworm -> $rootfs (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,procps,tesseract-ocr \
  bookworm "$rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
say "venv /opt/venv with $TORCH_SPEC and the train dependencies (from the wheelhouse, no index)"
mkdir -p "$rootfs/wheels"
mount --bind "$WHEELHOUSE" "$rootfs/wheels"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" python3 -m venv /opt/venv
chroot "$rootfs" /opt/venv/bin/pip install -q --no-cache-dir --no-index --find-links /wheels \
  -r /wheels/requirements.txt
umount "$rootfs/wheels" "$rootfs/proc"
rmdir "$rootfs/wheels"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
say "docker import -> $IMAGE"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL geocomply.recipe=$recipe" - "$IMAGE" >/dev/null
say "built $IMAGE"
