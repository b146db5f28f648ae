# The inference service. GPU image by default (onnxruntime-gpu with its CUDA and cuDNN pip
# extras, so the host needs only the NVIDIA driver and container toolkit); build with
# --build-arg RUNTIME=cpu for CPU hosts (plain onnxruntime, a much smaller image).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# gpu | cpu: which pyproject extra provides onnxruntime (exactly one per environment)
ARG RUNTIME=gpu
# PEM text of extra CA certificates, for networks whose TLS-intercepting proxy pip must trust
ARG EXTRA_CA_CERTS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# one file per certificate, as update-ca-certificates expects
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" | awk '/-----BEGIN CERTIFICATE-----/ {n++} n {print > ("/usr/local/share/ca-certificates/extra-" n ".crt")}' \
        && update-ca-certificates >/dev/null 2>&1; \
    fi
# pip trusts the system store (with any extra certificates) instead of its own bundle
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cxr_common ./cxr_common
COPY service ./service
RUN python -m pip install ".[${RUNTIME}]" && rm -rf build *.egg-info
COPY models ./models

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cxr
USER cxr

ENV CXR_HOST=0.0.0.0 \
    CXR_PORT=8000 \
    CXR_MODEL_PATH=/app/models/cxr-pneumonia.onnx \
    CXR_DEVICE=auto
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, sys, urllib.request; \
sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"CXR_PORT\"]}/health/ready', timeout=4).status != 200)"
CMD ["python", "-m", "service"]
