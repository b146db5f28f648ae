# cxr-gateway: the DICOM gateway between a PACS and the service (no model, no onnxruntime).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# PEM text of extra CA certificates, for networks whose TLS-intercepting proxy pip must trust
ARG EXTRA_CA_CERTS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# as in the service's Dockerfile: one file per certificate, as update-ca-certificates expects
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" | awk '/-----BEGIN CERTIFICATE-----/ {n++} n {print > ("/usr/local/share/ca-certificates/extra-" n ".crt")}' \
        && update-ca-certificates >/dev/null 2>&1; \
    fi
# pip trusts the system store (with any extra certificates) instead of its own bundle
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cxr_common ./cxr_common
COPY cxr_client ./cxr_client
COPY gateway ./gateway
RUN python -m pip install ".[gateway]" && rm -rf build *.egg-info

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cxr \
    && mkdir -p /var/lib/cxr-gateway && chown cxr /var/lib/cxr-gateway
USER cxr

# every option as a CXR_GATEWAY_* variable (see docs/gateway.md)
ENV CXR_GATEWAY_LISTEN=0.0.0.0:11112 \
    CXR_GATEWAY_METRICS=0.0.0.0:9110 \
    CXR_GATEWAY_STATE=/var/lib/cxr-gateway
VOLUME /var/lib/cxr-gateway
EXPOSE 11112 9110
CMD ["cxr-gateway"]
