#!/usr/bin/env bash
# Build the geocomply image for linux/amd64 and push it to ECR (tags: the git sha and `latest`).
#
#   container/build_and_push.sh [--dry-run] [--region us-west-2] [--repo geocomply] [--base IMAGE]
#
# Creates the ECR repository when missing, logs Docker in to it, and — when the base is an AWS Deep
# Learning Container (account 763104351884) — to the DLC registry too. Prints the pushed image URI last;
# pass it to `geosft launch --image` and `geosft deploy --image`. --dry-run prints the commands instead.
# Needs: docker (with buildx for cross-building on arm64 hosts), aws CLI v2, git.
set -euo pipefail
cd "$(dirname "$0")/.."
REGION=${AWS_REGION:-us-west-2}
REPO=geocomply
BASE=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --region) REGION=$2; shift ;;
    --repo) REPO=$2; shift ;;
    --base) BASE=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_and_push.sh: error: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$BASE" ] || BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
# The DLC lives in the same region as the job; rewrite the default's region.
BASE=${BASE/.us-west-2./.$REGION.}

run() {  # print, and run unless --dry-run
  printf '+ %s\n' "$*" >&2
  [ "$DRY" = 1 ] || "$@"
}
login() {  # docker login to an ECR registry host
  printf '+ aws ecr get-login-password --region %s | docker login --username AWS --password-stdin %s\n' "$REGION" "$1" >&2
  [ "$DRY" = 1 ] || aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$1"
}

if [ "$DRY" = 1 ]; then
  ACCOUNT=${AWS_ACCOUNT_ID:-123456789012}
else
  ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
fi
REGISTRY=$ACCOUNT.dkr.ecr.$REGION.amazonaws.com
SHA=$(git rev-parse --short=12 HEAD 2>/dev/null || echo nogit)
git diff --quiet HEAD 2>/dev/null || SHA=$SHA-dirty

if [ "$DRY" = 1 ]; then
  printf '+ aws ecr describe-repositories --region %s --repository-names %s || aws ecr create-repository ...\n' "$REGION" "$REPO" >&2
elif ! aws ecr describe-repositories --region "$REGION" --repository-names "$REPO" >/dev/null 2>&1; then
  run aws ecr create-repository --region "$REGION" --repository-name "$REPO" \
    --image-scanning-configuration scanOnPush=true >/dev/null
fi
case "$BASE" in
  763104351884.dkr.ecr.*) login "${BASE%%/*}" ;;
esac
login "$REGISTRY"
run docker build --platform linux/amd64 --build-arg "BASE_IMAGE=$BASE" \
  -t "$REGISTRY/$REPO:$SHA" -t "$REGISTRY/$REPO:latest" .
run docker push "$REGISTRY/$REPO:$SHA"
run docker push "$REGISTRY/$REPO:latest"
echo "$REGISTRY/$REPO:$SHA"
