# geocomply training + serving image for SageMaker (same image: `train` for jobs, `serve` for endpoints and
# Batch Transform). Default base: the AWS PyTorch training DLC for GPU (CUDA 12.9, torch 2.8, Python 3.12),
# which runs on the A10G (sm_86) of ml.g5.*; pulling it needs `aws ecr get-login-password` for account
# 763104351884 (container/build_and_push.sh does that). Where nothing can be pulled, build
# `container/offline_base.sh` first and pass --build-arg BASE_IMAGE=geocomply-base:offline
# --build-arg PIP_INSTALL_ARGS=--no-index (torch and all dependencies are already in that base).
ARG BASE_IMAGE=763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.8.0-gpu-py312-cu129-ubuntu22.04-sagemaker
FROM ${BASE_IMAGE}

ARG PIP_INSTALL_ARGS=""
# Caches in writable places (SageMaker may mount the root read-only in places; /tmp always works).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/tmp/hf \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRITON_CACHE_DIR=/tmp/triton \
    GEOCOMPLY_CACHE=/opt/geocomply/cache

# Tesseract for OCR of scanned PDF pages (geoprep extract --ocr auto, run by the main job's prep step). The
# offline base has it from debootstrap; the DLC base gets it from apt (~30 MB with English data).
RUN command -v tesseract >/dev/null || { apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*; }

WORKDIR /opt/geocomply/src
# Dependencies change less often than code: pyproject first, so a code edit reuses this layer.
# The constraints file pins the base's torch (and flash-attn, built against it): pip fails with a conflict
# rather than swap in another torch (container/base_constraints.py says why).
COPY pyproject.toml README.md container/base_constraints.py ./
RUN python3 base_constraints.py > /opt/geocomply/constraints.txt && cat /opt/geocomply/constraints.txt \
 && mkdir -p sft data_prep && touch sft/__init__.py data_prep/__init__.py \
 && python3 -m pip install --no-cache-dir ${PIP_INSTALL_ARGS} --no-build-isolation \
      -c /opt/geocomply/constraints.txt ".[train,qlora]" \
 && python3 -m pip uninstall -y geocomply && rm -rf build sft data_prep
COPY sft ./sft
COPY data_prep ./data_prep
RUN python3 -m pip install --no-cache-dir --no-deps --no-build-isolation -c /opt/geocomply/constraints.txt . \
 && rm -rf build \
 && mkdir -p "$GEOCOMPLY_CACHE" && chmod 1777 "$GEOCOMPLY_CACHE"
COPY container/ /opt/geocomply/bin/
# Ahead of anything the base ships under the same names (the DLC has its own `train`/`serve`).
ENV PATH=/opt/geocomply/bin:${PATH}
WORKDIR /opt/geocomply
# The DLC's ENTRYPOINT (bash start_with_right_hostname.sh) runs `train` as a child of bash, which does not
# forward SIGTERM; clear it so `train`/`serve` are PID 1. (Its hostname shim only matters for multi-node
# jobs whose libraries resolve the host name; this image trains on one instance.)
ENTRYPOINT []
# Exec form: `train` runs as PID 1 (no shell in between), so SIGTERM (spot interruption, StopTrainingJob)
# reaches Python, which checkpoints and exits. SageMaker training (and SDK v3 local mode) passes no command; hosting passes `serve`.
CMD ["train"]
