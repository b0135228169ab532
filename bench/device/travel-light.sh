#!/usr/bin/env bash
# The device tool sends every tracked file (64 MiB in all, carry included), and the tracked tree
# (test fixtures and goldens, the SmolLM2 drafter) has outgrown that with the carry beside it.
# This takes what the kit never reads out of the index and into .git/info/exclude, so it stays on
# disk but does not travel; --restore puts the index back. Nothing is deleted. While light, `git
# status` shows the paths as deleted: restore before committing.
#   bash bench/device/travel-light.sh            before pack-node.sh and the device calls
#   bash bench/device/travel-light.sh --restore  after them
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# The kit reads models/code-pair, native/, tools/shapes, bench/device and (hashed for the carry's
# staleness check) lib, bench, test/helpers and tools' TypeScript: none of these.
LIGHT=(models/smollm2-drafter test/fixtures tools/train/data bench/results)
EXCLUDE=$(git rev-parse --git-path info/exclude)
BEGIN='# dflash travel-light: bench/device/travel-light.sh --restore removes this block'
END='# end dflash travel-light'

drop_block() {
  [ -f "$EXCLUDE" ] || return 0
  awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1} !skip {print} $0 == e {skip = 0}' "$EXCLUDE" > "$EXCLUDE.tmp" && mv "$EXCLUDE.tmp" "$EXCLUDE"
}

case "${1:-}" in
  --restore)
    git reset -q -- "${LIGHT[@]}"
    drop_block
    echo "travel-light: restored ${LIGHT[*]} to the index"
    ;;
  '')
    if grep -qxF "$BEGIN" "$EXCLUDE" 2>/dev/null; then echo "travel-light: already light (--restore to undo)"; exit 0; fi
    before=$(git ls-files -z | xargs -0 cat | wc -c)
    git rm -r -q --cached -- "${LIGHT[@]}"
    mkdir -p "$(dirname "$EXCLUDE")"
    { echo "$BEGIN"; for p in "${LIGHT[@]}"; do echo "/$p/"; done; echo "$END"; } >> "$EXCLUDE"
    after=$(git ls-files -z | xargs -0 cat | wc -c)
    echo "travel-light: tracked $((before / 1048576)) MiB -> $((after / 1048576)) MiB (${LIGHT[*]} stay on disk, untracked and excluded); --restore before committing"
    ;;
  *) echo "usage: travel-light.sh [--restore]" >&2; exit 2 ;;
esac
