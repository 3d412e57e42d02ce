"""container/build_and_push.sh --dry-run: what it would run against ECR, without Docker or AWS."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def dry_run(*args: str) -> tuple[str, str]:
    res = subprocess.run([str(REPO / "container" / "build_and_push.sh"), "--dry-run", *args],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.strip(), res.stderr


def test_dry_run_builds_amd64_tags_sha_and_latest_and_logs_in_to_both_registries():
    uri, commands = dry_run()
    sha = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], text=True).strip()
    registry = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    assert uri.startswith(f"{registry}/geocomply:{sha}")
    lines = commands.splitlines()
    build = next(line for line in lines if line.startswith("+ docker build"))
    assert "--platform linux/amd64" in build
    assert f"-t {uri}" in build and f"-t {registry}/geocomply:latest" in build
    assert "BASE_IMAGE=763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:" in build
    logins = [line for line in lines if "docker login" in line]
    assert any("763104351884.dkr.ecr.us-west-2.amazonaws.com" in line for line in logins)  # the DLC registry
    assert any(line.endswith(registry) for line in logins)
    assert any("create-repository" in line for line in lines)
    assert lines[-2:] == [f"+ docker push {uri}", f"+ docker push {registry}/geocomply:latest"]


def test_region_and_custom_base():
    uri, commands = dry_run("--region", "eu-central-1", "--repo", "geo-sft", "--base", "my/base:1")
    assert uri.startswith("123456789012.dkr.ecr.eu-central-1.amazonaws.com/geo-sft:")
    assert "BASE_IMAGE=my/base:1" in commands
    assert "763104351884" not in commands  # no DLC login when the base is not a DLC
