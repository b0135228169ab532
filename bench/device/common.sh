# Shared by pack-node.sh and run.sh (sourced, not run): logging, and the hashes that tie what the
# carry holds to the sources of the working tree it travels with. Both scripts compute the hashes
# the same way from file contents, so they agree on a copy of the tree that has no .git.

# The 64 MiB the device tool moves per call: tracked + untracked-not-ignored files + carried paths.
DEVKIT_TREE_LIMIT=$((64 * 1024 * 1024))

devkit_log() { printf '[devkit %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
devkit_die() { printf '[devkit %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# sha256 of a list of files (names and contents), read NUL-separated from stdin.
devkit_hash_files() {
  LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-16
}

# What the carried dist/ was compiled from: every TypeScript source tsc can reach, and its settings.
devkit_ts_hash() {
  (cd "$1" && { find lib bench test/helpers tools -type f -name '*.ts' -print0 2>/dev/null
    printf '%s\0' tsconfig.json package.json; } | devkit_hash_files)
}

# What a native build is compiled from.
devkit_native_hash() {
  (cd "$1" && { find native -type f \( -name '*.cc' -o -name '*.h' -o -name '*.cmake' -o -name CMakeLists.txt \) -print0
    printf '%s\0' CMakeLists.txt; } | devkit_hash_files)
}

# Bytes of the files named NUL-separated on stdin (missing ones count 0).
devkit_sum_sizes() {
  xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

devkit_mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

# xz-compresses stdin to stdout at level $1 ("0" .. "9", "9e"), through the x86 branch filter when
# $2 is x86 (executables); Python's lzma where xz-utils is not installed.
devkit_xz() {
  if command -v xz >/dev/null; then
    if [ "${2:-}" = x86 ]; then xz --x86 --lzma2=preset="$1" -T0 -c; else xz "-$1" -T0 -c; fi
  else
    python3 -c '
import lzma, shutil, sys
level, x86 = sys.argv[1], sys.argv[2] == "x86"
preset = int(level[0]) | (lzma.PRESET_EXTREME if level.endswith("e") else 0)
filters = ([{"id": lzma.FILTER_X86}] if x86 else []) + [{"id": lzma.FILTER_LZMA2, "preset": preset}]
with lzma.open(sys.stdout.buffer, "w", format=lzma.FORMAT_XZ, filters=filters) as out:
    shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)' "$1" "${2:-}"
  fi
}

# Decompresses the .xz file $1 to stdout (xz, or Python's lzma).
devkit_unxz() {
  if command -v xz >/dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer, 1 << 20)' "$1"; fi
}
