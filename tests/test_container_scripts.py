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


def test_constraints_keep_the_base_images_torch(tmp_path):
    """The image installs with the base's torch pinned: pip refuses another torch instead of replacing it."""
    import sys
    from importlib import metadata

    res = subprocess.run([sys.executable, str(REPO / "container" / "base_constraints.py")], capture_output=True,
                         text=True, timeout=60, check=True)
    pins = [line for line in res.stdout.splitlines() if not line.startswith("#")]
    assert f"torch=={metadata.version('torch')}" in pins
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(res.stdout)
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", "-c", str(constraints)]
    ok = subprocess.run([*pip, "torch"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr  # the installed torch satisfies its pin
    other = subprocess.run([*pip, "torch==2.4.0"], capture_output=True, text=True, timeout=120)
    said = other.stdout + other.stderr
    # A different torch is a conflict with our pin, not a swap.
    assert other.returncode != 0 and "(constraint)" in said and f"=={metadata.version('torch')}" in said, said
    assert "-c /opt/geocomply/constraints.txt" in (REPO / "Dockerfile").read_text()


def test_version_floors_cover_what_the_code_uses():
    """Floors a fresh install can resolve to must run the code: FusedCausalLMOutput is TRL >= 1.15; the
    decoder passes `cache=` and reads `.cache`, which transformers names so from 5.24 (checked against the
    5.23 / 5.24 wheels); the installed versions meet the floors."""
    import re
    import tomllib
    from importlib import metadata

    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    floors = {m[1]: tuple(int(x) for x in m[2].split(".")) for r in train if (m := re.match(r"([a-z]+)>=([\d.]+)", r))}
    assert floors["trl"] >= (1, 15) and floors["transformers"] >= (5, 24)
    for name in ("trl", "transformers"):
        installed = tuple(int(x) for x in re.findall(r"\d+", metadata.version(name))[:2])
        assert installed >= floors[name][:2], name
    decoding = (REPO / "sft" / "inference" / "decoding.py").read_text()
    assert "cache=cache" in decoding and "out.cache" in decoding  # why the transformers floor is 5.24
