#!/usr/bin/env bash
# `make run`: the project's main job on its embedded default (config.example.toml).
# Until `pdctl up` lands (issue 9) this shows the furthest-along pieces: the binary,
# its CUDA status and the effective configuration of each role of the example deployment.
set -euo pipefail
pdctl=${1:-build/pdctl}
cd "$(dirname "$0")/.."

"$pdctl" --version
for role in router prefill decode; do
  echo
  echo "# effective configuration of \`pdctl $role -c config.example.toml\`:"
  "$pdctl" -c config.example.toml "$role" --print-config | head -n 12
  echo "# ..."
done
echo
echo "make run: the full demo (router + prefill + decode + a short benchmark) comes with \`pdctl up\`."
