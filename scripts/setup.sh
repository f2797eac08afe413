#!/usr/bin/env bash
# Installs what running the pipeline and the default test tiers need on a bare Debian
# machine (what `make setup` and CI run): minutes, not the ~22 min the Go-built tools take.
# Those tools (helm, etcd, kube-apiserver, ...) are built by the test tiers that need them on
# first use, or all at once by `make tools` (docs/tools.md). Idempotent: a warm machine
# passes through in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
step() { printf '\n==> %s\n' "$*" >&2; }
started=$(date +%s)

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# The live page's browser test drives Debian's headless Chromium through its driver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  step "installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: need root (or sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  step "installing uv $UV_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

step "creating .venv from uv.lock"
uv sync --frozen

step "fetching the Kafka broker jars (cached under \${STARLING_CACHE:-~/.cache/starling})"
uv run --frozen starling dev fetch

printf '\n==> setup done in %ss (the Go-built tools are not built here: `make tools`, or\n    the test tiers build what they need on first use)\n' "$(($(date +%s) - started))" >&2
