#!/usr/bin/env bash
# The device kit: runs the project's checks and benchmarks from this working tree on a host that
# has a PJRT plugin, CMake and a C++ compiler but no Node and no network (a lent GPU machine), or
# here on the CPU plugin (--cpu). What it needs beyond the tree comes from the carry that
# pack-node.sh made on a machine with Node (bench/device/carry/). See bench/device/README.md.
#   bash bench/device/run.sh [--cpu] [--quick] [--stage all|build,check,kernels,speculative,quantized,gpt-oss,hybrid,mesh]
#        [--shape qwen3-4b|qwen3-0.6b|mini] [--ks 1,2,4,...] [--results DIR] [--copy-to DIR]
#        [--carry DIR] [--kit-dir DIR] [--plugin PATH] [--allow-stale]
# Stages (each builds first when the addon is missing, so each can run alone on a fresh machine):
#   build        CMake build of the addon, pjrt_run and the C++ unit tests, from this tree
#   check        pjrt_run (Node-free plugin check), the C++ unit tests (not with --quick),
#                `dflash doctor`, and a smoke generation plain vs speculative through the CLI
#   kernels      bench/kernels on the shipped pair and on a random checkpoint of --shape made
#                here, and bench/device/roofline (verify K = 1..1024 against the HBM roofline)
#   speculative  bench/speculative on the shipped pair
#   mesh         with 2+ devices: bench/kernels --tp N (all-reduce share) and bench/serving --tp N --dp M
#                for every tensor-parallel size 2, 4, 8 the devices allow (--cpu: DEVKIT_CPU_DEVICES
#                virtual devices, default 2)
# Tables go to --results (default bench/results on a GPU, .devkit/results with --cpu) named
# <bench>-<device>.md (device e.g. cuda-h100), with devkit-<device>.md summing up the run and
# devkit-<device>.log holding its output; --copy-to also copies them there after every stage
# (the device tool brings back only what is written under $OUT).
#   --quick        small shapes and few repetitions (CI: minutes on a CPU)
#   --allow-stale  run even if the carried dist/ was compiled from other TypeScript sources
# Environment: DEVKIT_KERNELS_ARGS / DEVKIT_SPECULATIVE_ARGS / DEVKIT_ROOFLINE_ARGS are appended to
# those benchmarks' command lines; DEVKIT_PYTHON is the Python with numpy for the random checkpoint.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=stages.sh
source "$HERE/stages.sh"
ARGS="$*"

CPU=0 QUICK=0 ALLOW_STALE=0
STAGES=all SHAPE='' KS='' RESULTS='' COPY_TO='' PLUGIN=${DFLASH_PJRT_PLUGIN:-}
CARRY="$ROOT/bench/device/carry"
KIT="$ROOT/.devkit"
abspath() { mkdir -p "$1" && (cd "$1" && pwd); }
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --quick) QUICK=1 ;;
    --allow-stale) ALLOW_STALE=1 ;;
    --stage|--stages) STAGES=$2; shift ;;
    --shape) SHAPE=$2; shift ;;
    --ks) KS=$2; shift ;;
    --results) RESULTS=$(abspath "$2"); shift ;;
    --copy-to) COPY_TO=$(abspath "$2"); shift ;;
    --carry) CARRY=$(cd "$2" && pwd) || devkit_die "no carry directory $2"; shift ;;
    --kit-dir) KIT=$(abspath "$2"); shift ;;
    --plugin) PLUGIN=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) devkit_die "run.sh: unknown option $1 (see --help)" ;;
  esac
  shift
done
[ "$STAGES" = all ] && STAGES=build,check,kernels,speculative,quantized,gpt-oss,hybrid,mesh
IFS=, read -r -a STAGE_LIST <<< "$STAGES"
for s in "${STAGE_LIST[@]}"; do
  case "$s" in build|check|kernels|speculative|quantized|gpt-oss|hybrid|mesh) ;; *) devkit_die "unknown stage '$s' (build, check, kernels, speculative, quantized, gpt-oss, hybrid, mesh, all)" ;; esac
done
mkdir -p "$KIT"
cd "$ROOT"

# --- the device and its name in file names ---------------------------------------------------
if [ "$CPU" = 1 ]; then
  SLUG=cpu
  DEVICE_DESC="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc) cores"
else
  GPU_LINE=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$GPU_LINE" ] || devkit_die "nvidia-smi reports no GPU: on a machine without one, use --cpu"
  GPU_NAME=${GPU_LINE%%,*}
  MODEL=$(grep -oE '\b[A-Z]{0,2}[0-9]{1,4}[A-Za-z]?\b' <<< "$GPU_NAME" | head -1 | tr '[:upper:]' '[:lower:]')
  SLUG="cuda${MODEL:+-$MODEL}"
  DEVICE_DESC="GPU: $GPU_LINE (name, memory, driver)"
fi
RESULTS=${RESULTS:-$([ "$CPU" = 1 ] && echo "$KIT/results" || echo "$ROOT/bench/results")}
mkdir -p "$RESULTS"
LOG="$KIT/devkit-$SLUG.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
finish() {  # on every exit, errors included: close the log (tee), then copy what there is
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  copy_results
}
trap finish EXIT
devkit_log "run.sh $ARGS"
devkit_log "device: $DEVICE_DESC; results -> $RESULTS; kit -> $KIT"

# --- the carry: Node, dist/, node_modules ---------------------------------------------------
[ -f "$CARRY/manifest.env" ] && [ -f "$CARRY/node.xz" ] && [ -f "$CARRY/runtime.tar.xz" ] ||
  devkit_die "no carry in $CARRY: run bench/device/pack-node.sh on a machine with Node (bench/device/README.md)"
# shellcheck source=/dev/null
source "$CARRY/manifest.env"
devkit_log "carry: packed $DEVKIT_PACKED_AT from commit $DEVKIT_GIT_COMMIT (uncommitted changes: $DEVKIT_GIT_DIRTY); node $DEVKIT_NODE_VERSION"
if [ "$(cat "$KIT/.node-stamp" 2>/dev/null)" != "$DEVKIT_NODE_SHA" ]; then
  mkdir -p "$KIT/bin"
  devkit_unxz "$CARRY/node.xz" > "$KIT/bin/node.part" && chmod 755 "$KIT/bin/node.part" && mv "$KIT/bin/node.part" "$KIT/bin/node" ||
    devkit_die "could not unpack $CARRY/node.xz"
  echo "$DEVKIT_NODE_SHA" > "$KIT/.node-stamp"
fi
NODE="$KIT/bin/node"
[ "$("$NODE" -p process.version 2>&1)" = "$DEVKIT_NODE_VERSION" ] ||
  devkit_die "the carried Node does not run here: $("$NODE" -p process.version 2>&1 | head -3)"
if [ "$(cat "$KIT/.runtime-stamp" 2>/dev/null)" != "$DEVKIT_RUNTIME_SHA" ]; then
  rm -rf "$KIT/dist" "$KIT/node_modules"
  devkit_unxz "$CARRY/runtime.tar.xz" | tar -x -C "$KIT" || devkit_die "could not unpack $CARRY/runtime.tar.xz"
  echo "$DEVKIT_RUNTIME_SHA" > "$KIT/.runtime-stamp"
fi
# The kit directory is the package root the compiled code finds (package.json) and loads the
# addon from (build/Release/dflash.node); models, prompts and results are read from this tree.
cp package.json "$KIT/package.json"
export PATH="$KIT/bin:$PATH" DFLASH_CACHE_DIR="$KIT/cache"
if [ "$(devkit_ts_hash "$ROOT")" != "$DEVKIT_TS_HASH" ]; then
  msg="the carried dist/ was compiled from other TypeScript sources than this tree's: re-run bench/device/pack-node.sh"
  [ "$ALLOW_STALE" = 1 ] && devkit_log "WARNING: $msg (--allow-stale)" || devkit_die "$msg (or pass --allow-stale)"
fi
devkit_log "node $("$NODE" -p process.version) at $NODE"

# --- the PJRT plugin --------------------------------------------------------------------------
py_module_dir() {  # where Python would import package $1 from, without importing it
  python3 -c 'import importlib.util as u, sys; s = u.find_spec(sys.argv[1]); print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")' "$1" 2>/dev/null
}
if [ -z "$PLUGIN" ] && [ "$CPU" = 1 ]; then
  for p in "$ROOT"/.venv/lib/python3*/site-packages/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so \
           "$(py_module_dir lammps_jax_pjrt_cpu)/pjrt_c_api_cpu_plugin.so"; do
    [ -f "$p" ] && PLUGIN=$p && break
  done
elif [ -z "$PLUGIN" ]; then
  for m in jax_plugins.xla_cuda13 jax_plugins.xla_cuda12; do
    p="$(py_module_dir "$m")/xla_cuda_plugin.so"
    [ -f "$p" ] && PLUGIN=$p && break
  done
fi
[ -n "$PLUGIN" ] && [ -f "$PLUGIN" ] ||
  devkit_die "no PJRT plugin found ($([ "$CPU" = 1 ] && echo 'lammps-jax-pjrt-cpu in ./.venv or python3' || echo 'jax-cuda13-pjrt for python3')); pass --plugin PATH"
PLUGIN=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")
if [ "$CPU" = 0 ]; then
  # The CUDA plugin finds the nvidia.* wheels' libraries through its RPATH; JAX also preloads them.
  # Without JAX, put them and ptxas (XLA compiles PTX with it) on the search paths as well.
  SITE=$(dirname "$(dirname "$(dirname "$PLUGIN")")")
  for d in "$SITE"/nvidia/*/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
  for d in /usr/local/cuda/bin "$SITE"/nvidia/cuda_nvcc/bin "$SITE"/nvidia/cu13/bin; do [ -d "$d" ] && PATH="$d:$PATH"; done
  export LD_LIBRARY_PATH PATH
fi
export DFLASH_PJRT_PLUGIN="$PLUGIN"
devkit_log "plugin: $PLUGIN"

# --- run the stages ---------------------------------------------------------------------------
FAILED=0
for s in "${STAGE_LIST[@]}"; do run_stage "$s"; done
devkit_log "done: $([ "$FAILED" = 0 ] && echo 'every stage passed' || echo 'SOME STAGES FAILED (see the table above)')"
exit "$FAILED"
