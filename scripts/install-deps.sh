#!/usr/bin/env bash
# Installs pdctl's build and test dependencies from Debian 12's archive. Idempotent and
# non-interactive: when everything is already installed it does nothing (and needs no
# network); otherwise it runs `apt-get update` once and installs what is missing.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config make git
  # libraries
  libuv1-dev node-llhttp libcli11-dev libtomlplusplus-dev doctest-dev
  libucx-dev ucx-utils nlohmann-json3-dev libspdlog-dev libfmt-dev
  libpcre2-dev libutf8proc-dev prometheus-cpp-dev
  # tests: integration tests are Python (standard library only); the OpenAI client
  # test uses the `openai` npm package; the router benchmark compares with nginx
  python3 nginx-light procps
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
# Node.js and npm: any installed version will do (a NodeSource build conflicts with
# Debian's npm package, so only install Debian's when there is none).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]} == 0)); then
  echo "deps: all installed"
  exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: run as root (or install sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
