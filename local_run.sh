#!/usr/bin/env bash
# geocomply: one command from a fresh clone to results.
#
#   ./local_run.sh [--full] [--max-steps N] [--image auto|none|TAG]
#                            set up .venv, then run the main job on the bundled sample corpus:
#                            geoprep -> train (demo model) -> eval -> predict -> summary (runs/demo)
#   ./local_run.sh test      set up .venv, then run the test suite (what CI runs)
#   ./local_run.sh setup     only create/refresh .venv
#   ./local_run.sh image [--base offline|dlc]       build the SageMaker image (offline: nothing pulled)
#   ./local_run.sh local-mode [--base offline|dlc] [--instance local_cpu|local_gpu]
#                            image + a SageMaker SDK local-mode training job + serve its model.tar.gz
#
# Environment: PYTHON (default python3, must be >= 3.11), TORCH_SPEC (default torch==2.13.0: the CPU
# wheel; on a GPU machine set it to the CUDA build you want), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup_env() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "local_run.sh: error: $PYTHON is $("$PYTHON" -V 2>&1); geocomply needs Python >= 3.11" >&2; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the project's requirements changed (a second run reuses what is built).
  local stamp="$VENV/.geocomply-install" want
  want=$(cat pyproject.toml | sha256sum | cut -c1-16)-$TORCH_SPEC
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing geocomply and its dependencies into $VENV (first run: a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first, pinned, so that no later requirement pulls a multi-GB CUDA build on a CPU machine.
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

run_tests() {
  say "running the test suite"
  "$VENV/bin/python" -m pytest "$@"
}

main_job() {
  # prep -> train (the image's entry point; inside the image via SageMaker local mode when
  # Docker answers) -> eval -> predict -> summary. Each step reuses its output on a second run.
  say "main job on the bundled sample corpus -> ${OUT:-runs/demo} (about 20 minutes on 2 CPU cores)"
  "$VENV/bin/python" -m sft.mainjob --out "${OUT:-runs/demo}" "$@"
}

# The container path (see README "Container image and SageMaker"); without Docker, local-mode says so and
# runs the same job through the image's entry points directly (container/local_mode.py --direct).
image_cmd() {
  local base=offline tag=geocomply:local
  while [ $# -gt 0 ]; do
    case "$1" in
      --base) base=$2; shift ;;
      --tag) tag=$2; shift ;;
      --instance) LM_INSTANCE=$2; shift ;;
      *) echo "local_run.sh: error: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
  done
  PYTHON="$VENV/bin/python" container/build_local.sh --base "$base" --tag "$tag" >/dev/null
  IMAGE_TAG=$tag
}
local_mode_cmd() {
  if ! docker info >/dev/null 2>&1; then
    say "no Docker engine answers: running the same job through the container entry points directly"
    "$VENV/bin/python" container/local_mode.py --direct --work "${OUT:-runs/local-mode}"
    return
  fi
  image_cmd "$@"
  "$VENV/bin/python" container/local_mode.py --image "$IMAGE_TAG" --instance "${LM_INSTANCE:-local_cpu}" \
    --work "${OUT:-runs/local-mode}"
}

cmd=${1:-run}
case "$cmd" in -h|--help) ;; -*) set -- run "$@"; cmd=run ;; esac
case "$cmd" in
  image) shift; setup_env; image_cmd "$@"; say "built $IMAGE_TAG" ;;
  local-mode) shift; setup_env; local_mode_cmd "$@" ;;
  setup) setup_env ;;
  test) shift; setup_env; run_tests "$@" ;;
  run) [ $# -eq 0 ] || shift; setup_env; main_job "$@" ;;
  -h|--help|help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "local_run.sh: error: unknown command '$cmd' (try --help)" >&2; exit 2 ;;
esac
