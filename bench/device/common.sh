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
