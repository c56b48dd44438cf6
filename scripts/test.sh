#!/usr/bin/env bash
# The test command (README, and CI through .ci/run): set up .venv, lint, then run every test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k conformance`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh

# Debian packages some tests use: Prometheus and promtool (a live scrape, the shipped rules),
# protoc (the API in other languages), headless Chromium and its driver (the web page), and
# Go with Debian's packaged gRPC (the Go client; there is no Go module proxy here), podman and
# debootstrap (the container image, built on a Debian base made here: no registry is reachable). Node.js and
# npm come with the machine; the Node client's test runs `npm ci` itself.
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v protoc-gen-go >/dev/null 2>&1 || need+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null 2>&1 || need+=(protoc-gen-go-grpc)
command -v podman >/dev/null 2>&1 || need+=(podman runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# (the CNI dnsname plugin gives compose networks their service-name DNS)
for lib in golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev \
           golang-github-containernetworking-plugin-dnsname; do
  dpkg -s "$lib" >/dev/null 2>&1 || need+=("$lib")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "test: missing ${need[*]}: their tests skip (CI=true fails them); apt-get install ${need[*]}"
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # strict on gateway/, settings in pyproject.toml
exec .venv/bin/python -m pytest "$@"
