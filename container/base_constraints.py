#!/usr/bin/env python3
"""Print a pip constraints file that keeps the base image's torch stack as it is.

    python3 container/base_constraints.py > /opt/geocomply/constraints.txt
    pip install -c /opt/geocomply/constraints.txt ".[train,qlora]"

The AWS PyTorch DLC ships torch 2.8 (CUDA 12.9) with a flash-attn wheel compiled against exactly that torch:
a dependency that lets pip pull another torch (any `torch>=X` floor above the base's, or a resolver backtrack)
would replace a 2.5 GB CUDA build and leave flash-attn failing to import (undefined symbols). Pinning every
installed package of the stack to its exact version (local label included, e.g. 2.8.0+cu129) makes pip fail
with a conflict instead. Packages the base does not have are not mentioned (pip may install them).
"""

from __future__ import annotations

import sys
from importlib import metadata

# The packages built against one torch ABI, or tied to its CUDA build.
STACK = ("torch", "torchvision", "torchaudio", "triton", "flash_attn", "flash-attn", "xformers")


def constraints() -> list[str]:
    seen: dict[str, str] = {}
    for name in STACK:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[dist.metadata["Name"].lower().replace("_", "-")] = dist.version
    return [f"{name}=={version}" for name, version in sorted(seen.items())]


def main() -> int:
    lines = constraints()
    if not any(line.startswith("torch==") for line in lines):
        print("base_constraints.py: error: no torch installed in this interpreter; the base image must provide it",
              file=sys.stderr)
        return 1
    print("# The base image's torch stack, kept as is (container/base_constraints.py).")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
