# syntax=docker/dockerfile:1
# Vigil: `vigil serve` on CPU. Build from the repository root:  docker build -t vigil:0.1.0 .
# Configuration only through VIGIL_* environment variables (service/config.py); state under /data.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- build: a venv in /opt/vigil
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH
# The README's install path: PyTorch's CPU build first, pinned, from PyTorch's CPU wheel index (never
# the multi-gigabyte CUDA build), then the project, which resolves against the torch already there.
# The constraint keeps any later resolution from swapping torch for another build.
RUN echo "torch==2.13.0" > /opt/vigil/constraints.txt \
 && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY models ./models
COPY clients ./clients
RUN pip install --constraint /opt/vigil/constraints.txt . \
 && python -c "import torch; assert not torch.version.cuda, torch.version.cuda" \
 && vigil --help > /dev/null

# ---------------------------------------------------------------------------- runtime: slim, non-root
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Streaming ECG/EEG inference with clinical alerts (CPU)"
ENV PATH=/opt/vigil/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /home/vigil --create-home vigil \
 && mkdir -p /data && chown vigil:vigil /data
COPY --from=build /opt/vigil /opt/vigil
USER 10001:10001
WORKDIR /home/vigil
VOLUME ["/data"]
EXPOSE 8000
# Ready = models loaded, Redis and the history store reachable (GET /readyz answers 200).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]
# SIGTERM: the server stops taking sessions, snapshots them to Redis and closes clients with 1012;
# they resume on another replica.
STOPSIGNAL SIGTERM
ENTRYPOINT ["vigil", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
