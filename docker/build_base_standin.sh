#!/usr/bin/env bash
# Build a local stand-in for the Dockerfile's base image (python:3.11-slim) when it cannot be
# pulled (closed networks, registry outages). Debian bookworm's own Python is 3.11, so a
# debootstrapped bookworm with python3 + pip is a faithful stand-in for what the Dockerfile uses:
# `python`, `python -m pip`, ca-certificates and update-ca-certificates.
set -euo pipefail

TAG=${1:-python:3.11-slim}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}

command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "building base stand-in $TAG from Debian $SUITE ($MIRROR)" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >/dev/null
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
# python:3.11-slim lets pip install into the system interpreter; Debian marks it as
# externally managed. Inside an image that is exactly what we want, so lift the marker.
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "base stand-in $TAG ready" >&2
