# voxgate images. Two targets:
#   docker build --target gateway -t voxgate:gateway .
#   docker build --target worker  -t voxgate:worker .     (CUDA, for GPU hosts)
# The gateway image runs the embedded engine out of the box; engine workers and
# Celery job workers use the same code with a different command.

# ---- gateway: CPU only, everything from wheels --------------------------------
FROM python:3.11-slim AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VOXGATE_HOST=0.0.0.0 VOXGATE_DATA_DIR=/data VOXGATE_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 voxgate
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .
USER voxgate
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
# Binding 0.0.0.0 requires authentication (VOXGATE_ADMIN_TOKEN, API keys or
# JWT); see docs/auth.md. voxgate refuses to start open on a network address.
CMD ["voxgate", "serve"]

# ---- worker: a GPU host running CosyVoice -------------------------------------
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS worker
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 VOXGATE_DATA_DIR=/data VOXGATE_LOG_FORMAT=json
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip git sox libsox-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[cosyvoice]'
# CosyVoice's code is not on PyPI: mount or clone it, and mount the weights:
#   -v /srv/CosyVoice:/opt/CosyVoice -v /srv/models:/models
RUN useradd --create-home --uid 10001 voxgate
USER voxgate
VOLUME ["/data"]
EXPOSE 9000
CMD ["voxgate", "worker", "--engine", "cosyvoice", "--host", "0.0.0.0", "--port", "9000"]
