#!/usr/bin/env bash
# Companion of run.sh, run on a machine that has Node and this checkout's npm install: packs what
# a GPU host without Node and without network needs into bench/device/carry/ (git-ignored; the
# device tool takes it along when its `carry` list names bench/device/carry):
#   node.xz          this machine's Node binary (official build, self-contained), stripped, xz
#   runtime.tar.xz   dist/ (the compiled TypeScript: lib, bench, test helpers) and the node_modules
#                    the package needs at run time, plus the N-API headers to build the addon there
#   prebuilt.tar.xz  the addon (and pjrt_run) built here: run.sh's fallback if the CMake build on
#                    the device fails (same x86-64 Linux; used only if built from the same sources)
#   googletest.tar.xz  GoogleTest's sources, so the C++ unit tests build where it is not installed
#   manifest.env     versions and source hashes (run.sh refuses a carry older than the sources)
# It downloads nothing. Prints every file's size, the carry's total and the whole transfer
# (tracked + untracked-not-ignored files + carry) against the device tool's 64 MiB.
#   bash bench/device/pack-node.sh [--fast] [--no-build] [--carry DIR]
#     --fast      xz -0 instead of -9e (seconds instead of a minute; CI, where size does not matter)
#     --no-build  use dist/ and build/ as they are (else tsc and an incremental cmake-js build first)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

CARRY="$ROOT/bench/device/carry"
FAST=0
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) FAST=1 ;;
    --no-build) BUILD=0 ;;
    --carry) CARRY=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) devkit_die "pack-node.sh: unknown option $1 (see --help)" ;;
  esac
  shift
done
cd "$ROOT"
mkdir -p "$CARRY"
XZ_LEVEL=9e; [ "$FAST" = 1 ] && XZ_LEVEL=0
[ -d node_modules ] || devkit_die "no node_modules: run npm install first"

# --- 1. the Node binary -------------------------------------------------------------------------
NODE_BIN=${DEVKIT_NODE:-$(node -p process.execPath)}
NODE_VERSION=$("$NODE_BIN" -p process.version)
[ "$("$NODE_BIN" -p process.release.name)" = node ] || devkit_die "$NODE_BIN is not Node.js"
[ "$("$NODE_BIN" -p 'process.versions.node.split(".")[0] >= 20')" = true ] || devkit_die "Node >= 20 needed, $NODE_BIN is $NODE_VERSION"
[ "$("$NODE_BIN" -p process.arch)" = x64 ] || devkit_die "the GPU hosts are x86-64; $NODE_BIN is $("$NODE_BIN" -p process.arch)"
# A distro build that links libnode.so would not run on its own elsewhere: official builds do.
if ldd "$NODE_BIN" 2>/dev/null | grep -q 'libnode\.so'; then
  devkit_die "$NODE_BIN links libnode.so (a distribution build); point DEVKIT_NODE at an official Node binary"
fi
NODE_ID="$NODE_BIN:$(stat -c %s:%Y "$NODE_BIN"):$XZ_LEVEL"
OLD_NODE_ID=$( [ -f "$CARRY/manifest.env" ] && (source "$CARRY/manifest.env"; echo "${DEVKIT_NODE_ID:-}") || true)
if [ -f "$CARRY/node.xz" ] && [ "$OLD_NODE_ID" = "$NODE_ID" ]; then
  devkit_log "node.xz: up to date ($NODE_VERSION)"
else
  devkit_log "node.xz: compressing $NODE_BIN ($NODE_VERSION, $(devkit_mib "$(stat -c %s "$NODE_BIN")"))"
  TMP_NODE=$(mktemp)
  trap 'rm -f "$TMP_NODE"' EXIT
  cp "$NODE_BIN" "$TMP_NODE" && chmod 755 "$TMP_NODE"
  # Debug symbols are ~13 MB of the binary; the stripped copy must still run.
  if command -v strip >/dev/null && strip --strip-all "$TMP_NODE" && "$TMP_NODE" -e 0; then :; else cp "$NODE_BIN" "$TMP_NODE"; fi
  # x86: the branch-call-jump filter, ~4% smaller executables.
  devkit_xz "$XZ_LEVEL" x86 < "$TMP_NODE" > "$CARRY/node.xz.part"
  mv "$CARRY/node.xz.part" "$CARRY/node.xz"
fi

# --- 2. dist/ and the runtime node_modules ---------------------------------------------------
if [ "$BUILD" = 1 ]; then
  devkit_log "tsc -p tsconfig.json"
  node node_modules/typescript/bin/tsc -p tsconfig.json
fi
[ -f dist/lib/cli.js ] && [ -f dist/bench/kernels.js ] && [ -f dist/bench/device/roofline.js ] ||
  devkit_die "dist/ is incomplete: run npx tsc -p tsconfig.json (or drop --no-build)"
# tsc rewrites every output, so a source newer than dist/lib/cli.js was not compiled into dist/.
NEWER=$(find lib bench test/helpers tools -type f -name '*.ts' -newer dist/lib/cli.js -print -quit 2>/dev/null)
[ -z "$NEWER" ] || devkit_die "dist/ is older than $NEWER: run npx tsc -p tsconfig.json (or drop --no-build)"
TS_HASH=$(devkit_ts_hash "$ROOT")
# run.sh hashes the sources it finds; git-ignored ones stay behind, so they would read as stale.
IGNORED_TS=$(git ls-files --others --ignored --exclude-standard -- lib bench test/helpers tools 2>/dev/null | grep '\.ts$' | head -3 || true)
[ -z "$IGNORED_TS" ] || devkit_log "WARNING: git-ignored TypeScript files do not travel, so run.sh will call this carry stale: $IGNORED_TS"
mapfile -t DEPS < <(node "$HERE/runtime-deps.js" "$ROOT" cmake-js)
DIST=(dist/lib dist/bench dist/test)
[ -d dist/tools ] && DIST+=(dist/tools)
# Only what runs: no sources maps, declarations, docs or package test suites.
tar --create --sort=name --owner=0 --group=0 --numeric-owner \
  --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' --exclude='*.md' \
  --exclude='*.ts' --exclude='node_modules/*/test' --exclude='node_modules/*/docs' \
  --exclude='node_modules/*/benchmark' --exclude='node_modules/*/examples' \
  "${DIST[@]}" "${DEPS[@]}" node_modules/node-api-headers/include node_modules/node-addon-api \
  | devkit_xz "$XZ_LEVEL" > "$CARRY/runtime.tar.xz"
devkit_log "runtime.tar.xz: dist/ and ${#DEPS[@]} runtime packages"

# --- 3. the addon and pjrt_run built here (run.sh's fallback) ---------------------------------
if [ "$BUILD" = 1 ]; then
  devkit_log "cmake-js build --out build (incremental)"
  node node_modules/cmake-js/bin/cmake-js build --out build >/dev/null
  for d in build build-tests; do  # pjrt_run: where `npm test` built it (build/, or build-tests/ before)
    if [ -f $d/build.ninja ] && ninja -C $d -t targets all 2>/dev/null | grep -q '^pjrt_run:'; then ninja -C $d pjrt_run >/dev/null; break; fi
  done
fi
NATIVE_HASH=$(devkit_native_hash "$ROOT")
PREBUILT=()
fresh() {  # $1 built by target $3 of the ninja build in $2, with nothing left to rebuild
  [ -f "$1" ] && [ -f "$2/build.ninja" ] && ninja -C "$2" -n "$3" 2>/dev/null | grep -q 'no work to do'
}
fresh build/Release/dflash.node build dflash && PREBUILT+=(build/Release/dflash.node)
for d in build build-tests; do
  fresh $d/native/tests/pjrt_run $d pjrt_run && PREBUILT+=($d/native/tests/pjrt_run) && break
done
rm -f "$CARRY/prebuilt.tar.xz"
if [ ${#PREBUILT[@]} -gt 0 ]; then
  tar --create --owner=0 --group=0 --numeric-owner --transform='s|.*/|prebuilt/|' "${PREBUILT[@]}" |
    devkit_xz "$XZ_LEVEL" > "$CARRY/prebuilt.tar.xz"
  devkit_log "prebuilt.tar.xz: ${PREBUILT[*]}"
else
  devkit_log "prebuilt.tar.xz: skipped (no addon built from the current native sources)"
fi

# --- 4. GoogleTest sources ------------------------------------------------------------------
GTEST_SRC=${GTEST_SOURCE_DIR:-/usr/src/googletest/googletest}
rm -f "$CARRY/googletest.tar.xz"
if [ -f "$GTEST_SRC/CMakeLists.txt" ] && [ -d "$GTEST_SRC/src" ]; then
  tar --create --sort=name --owner=0 --group=0 --numeric-owner -C "$GTEST_SRC" \
    --transform='s|^|googletest/|' CMakeLists.txt cmake include src | devkit_xz 9 > "$CARRY/googletest.tar.xz"
  devkit_log "googletest.tar.xz: from $GTEST_SRC"
else
  devkit_log "googletest.tar.xz: skipped (no GoogleTest sources at $GTEST_SRC; set GTEST_SOURCE_DIR)"
fi

# --- 5. manifest ------------------------------------------------------------------------------
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo yes || echo no)
{
  printf 'DEVKIT_PACKED_AT=%q\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf 'DEVKIT_GIT_COMMIT=%q\nDEVKIT_GIT_DIRTY=%q\n' "$COMMIT" "$DIRTY"
  printf 'DEVKIT_NODE_VERSION=%q\nDEVKIT_NODE_ID=%q\n' "$NODE_VERSION" "$NODE_ID"
  printf 'DEVKIT_NODE_SHA=%q\n' "$(sha256sum "$CARRY/node.xz" | cut -c1-16)"
  printf 'DEVKIT_RUNTIME_SHA=%q\n' "$(sha256sum "$CARRY/runtime.tar.xz" | cut -c1-16)"
  printf 'DEVKIT_TS_HASH=%q\nDEVKIT_NATIVE_HASH=%q\n' "$TS_HASH" "$NATIVE_HASH"
} > "$CARRY/manifest.env"

# --- 6. sizes against the device tool's limit -------------------------------------------------
carry_bytes() { cat "$CARRY"/* | wc -c; }
# (--fast packs are for trying the kit here, not for sending: they are only measured.)
if git rev-parse --git-dir >/dev/null 2>&1; then
  TRACKED=$(git ls-files -z --cached | devkit_sum_sizes)
  UNTRACKED=$(git ls-files -z --others --exclude-standard | devkit_sum_sizes)
  # Over the limit, drop what run.sh can do without: the fallback addon, then GoogleTest.
  for optional in prebuilt.tar.xz googletest.tar.xz; do
    [ "$FAST" = 1 ] || [ $((TRACKED + UNTRACKED + $(carry_bytes))) -le "$DEVKIT_TREE_LIMIT" ] && break
    if [ -f "$CARRY/$optional" ]; then
      devkit_log "WARNING: dropping $optional: the transfer would exceed $(devkit_mib "$DEVKIT_TREE_LIMIT")"
      rm -f "$CARRY/$optional"
    fi
  done
fi
for f in "$CARRY"/*; do printf '  %-20s %10s\n' "$(basename "$f")" "$(devkit_mib "$(stat -c %s "$f")")" >&2; done
CARRY_BYTES=$(carry_bytes)
devkit_log "carry total: $(devkit_mib "$CARRY_BYTES") in ${CARRY#"$ROOT"/}"
if [ -n "${TRACKED:-}" ]; then
  TOTAL=$((TRACKED + UNTRACKED + CARRY_BYTES))
  devkit_log "device transfer: tracked $(devkit_mib "$TRACKED") + untracked $(devkit_mib "$UNTRACKED") + carry $(devkit_mib "$CARRY_BYTES") = $(devkit_mib "$TOTAL") of $(devkit_mib "$DEVKIT_TREE_LIMIT") (margin $(devkit_mib $((DEVKIT_TREE_LIMIT - TOTAL))))$([ "$FAST" = 1 ] && echo '; a --fast pack is for trying the kit here, not for sending')"
  [ "$TOTAL" -le "$DEVKIT_TREE_LIMIT" ] || [ "$FAST" = 1 ] ||
    devkit_die "over the device tool's limit by $(devkit_mib $((TOTAL - DEVKIT_TREE_LIMIT))): run bash bench/device/travel-light.sh (the tracked files the kit never reads stop travelling; --restore after the device calls), remove untracked files"
fi
devkit_log "done. The device tool sends the checkout its session started in: pack there, and name ${CARRY#"$ROOT"/} in its carry list."
