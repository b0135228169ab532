# The stages of run.sh (sourced by it; uses its variables: ROOT, KIT, CARRY, NODE, PLUGIN, SLUG,
# RESULTS, COPY_TO, QUICK, SHAPE, KS, ALLOW_STALE and the carry's DEVKIT_* manifest). Each stage
# returns non-zero after saying what failed; `note` adds to its line in the summary table.

declare -A STAGE_RESULT STAGE_SECONDS STAGE_NOTE
STAGE_ORDER=()
RESULT_FILES=()
NOTE=''
PJRT_RUN=''

note() { NOTE+="${NOTE:+; }$*"; }

# step "what" command...: runs and times one command, and says which one failed and how.
step() {
  local what=$1 t0=$SECONDS rc
  shift
  devkit_log "-- $what: $*"
  "$@"
  rc=$?
  if [ $rc -ne 0 ]; then
    devkit_log "FAILED: $what (exit $rc after $((SECONDS - t0)) s)"
    return $rc
  fi
  devkit_log "-- $what: ok ($((SECONDS - t0)) s)"
}

run_stage() {
  local name=$1 t0=$SECONDS rc
  NOTE=''
  devkit_log "===== stage $name ====="
  "stage_$name"
  rc=$?
  [[ " ${STAGE_ORDER[*]} " == *" $name "* ]] || STAGE_ORDER+=("$name")
  STAGE_RESULT[$name]=$([ $rc = 0 ] && echo ok || echo FAILED)
  STAGE_SECONDS[$name]=$((SECONDS - t0))
  STAGE_NOTE[$name]=$NOTE
  [ $rc = 0 ] || FAILED=1
  devkit_log "===== stage $name: ${STAGE_RESULT[$name]} in ${STAGE_SECONDS[$name]} s${NOTE:+ ($NOTE)}"
  write_summary
  copy_results
}

# --- build ----------------------------------------------------------------------------------
# One CMake build from this tree gives the addon (into $KIT/build/Release, where the compiled
# package loads it from), pjrt_run and the C++ unit tests. cmake-js is not needed: on Linux an
# N-API addon needs only the N-API and node-addon-api headers, which the carry brings.
stage_build() {
  local build="$KIT/cmake-build" hash gen=() gtest=() targets=(dflash pjrt_run)
  hash=$(devkit_native_hash "$ROOT")
  rm -f "$KIT/.build-stamp" "$KIT/build/Release/dflash.node"
  command -v ninja >/dev/null && gen=(-G Ninja)
  # GoogleTest: the system's, else the carried sources (GPU hosts have none and no network).
  if [ ! -f /usr/include/gtest/gtest.h ] && [ -f "$CARRY/googletest.tar.xz" ]; then
    [ -d "$KIT/googletest" ] || devkit_unxz "$CARRY/googletest.tar.xz" | tar -x -C "$KIT"
    [ -f "$KIT/googletest/CMakeLists.txt" ] && gtest=("-DDFLASH_GTEST_SOURCE_DIR=$KIT/googletest")
  fi
  if ! command -v cmake >/dev/null; then
    devkit_log "cmake not found"
  elif step "configure (CMake)" cmake -S "$ROOT" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDFLASH_TESTS=ON \
      -DCMAKE_JS_VERSION=devkit "-DCMAKE_JS_INC=$KIT/node_modules/node-api-headers/include;$KIT/node_modules/node-addon-api" \
      "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$KIT/build/Release" "${gtest[@]}"; then
    if [ "$QUICK" = 0 ]; then
      if grep -q '/dflash_native_tests\.dir' "$build/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then targets+=(dflash_native_tests)
      else note "no GoogleTest: C++ unit tests not built"; fi
    fi
    if step "compile ${targets[*]}" cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}" &&
       [ -f "$KIT/build/Release/dflash.node" ]; then
      PJRT_RUN="$build/native/tests/pjrt_run"
      echo "$hash" > "$KIT/.build-stamp"
      note "built ${targets[*]}"
      return 0
    fi
  fi
  fallback_addon "$hash"
  return 1
}

# The addon pack-node.sh built where the carry was made: same x86-64 Linux; used only when it was
# built from the same native sources (or with --allow-stale).
fallback_addon() {
  local hash=$1
  if [ ! -f "$CARRY/prebuilt.tar.xz" ]; then
    devkit_log "no prebuilt addon in the carry to fall back on"
    return 1
  fi
  if [ "$DEVKIT_NATIVE_HASH" != "$hash" ] && [ "$ALLOW_STALE" = 0 ]; then
    devkit_log "the carried prebuilt addon was built from other native sources: not used (--allow-stale uses it)"
    return 1
  fi
  rm -rf "$KIT/prebuilt"
  devkit_unxz "$CARRY/prebuilt.tar.xz" | tar -x -C "$KIT" || return 1
  [ -f "$KIT/prebuilt/dflash.node" ] || { devkit_log "the carried prebuilt has no addon"; return 1; }
  mkdir -p "$KIT/build/Release"
  cp "$KIT/prebuilt/dflash.node" "$KIT/build/Release/dflash.node"
  [ -x "$KIT/prebuilt/pjrt_run" ] && PJRT_RUN="$KIT/prebuilt/pjrt_run"
  echo "$hash" > "$KIT/.build-stamp"
  note "FALLBACK: using the addon built where the carry was packed"
  devkit_log "WARNING: the build failed; using the carried prebuilt addon"
}

addon_ready() {
  [ -f "$KIT/build/Release/dflash.node" ] && [ "$(cat "$KIT/.build-stamp" 2>/dev/null)" = "$(devkit_native_hash "$ROOT")" ]
}

# Every stage after build needs the addon: build first if this tree's is not there yet.
ensure_built() {
  if ! addon_ready; then
    local saved=$NOTE
    devkit_log "no addon built from this tree in $KIT yet: running the build stage first"
    run_stage build
    NOTE=$saved
  fi
  addon_ready || { devkit_log "no usable addon (the build failed, see above)"; return 1; }
  if [ -z "$PJRT_RUN" ]; then
    for p in "$KIT/cmake-build/native/tests/pjrt_run" "$KIT/prebuilt/pjrt_run"; do [ -x "$p" ] && PJRT_RUN=$p && break; done
  fi
  return 0
}

# --- check ----------------------------------------------------------------------------------
stage_check() {
  ensure_built || return 1
  local rc=0 tests="$KIT/cmake-build/native/tests/dflash_native_tests"
  if [ -n "$PJRT_RUN" ]; then
    step "pjrt_run (plugin check without Node)" "$PJRT_RUN" "$PLUGIN" || { rc=1; note "pjrt_run FAILED"; }
  else
    rc=1; note "pjrt_run was not built"
  fi
  # A build made with --quick has no test binary yet: add it when GoogleTest was found.
  if [ "$QUICK" = 0 ] && [ ! -x "$tests" ] && grep -q '/dflash_native_tests\.dir' "$KIT/cmake-build/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then
    step "compile dflash_native_tests" cmake --build "$KIT/cmake-build" --parallel "$(nproc)" --target dflash_native_tests || rc=1
  fi
  if [ "$QUICK" = 1 ]; then
    note "C++ unit tests skipped (--quick: npm test runs them)"
  elif [ -x "$tests" ]; then
    rm -f "$KIT/gtest.xml"
    step "C++ unit tests" "$tests" "--gtest_output=xml:$KIT/gtest.xml" || rc=1
    local counts
    counts=$(sed -n 's/.*<testsuites tests="\([0-9]*\)" failures="\([0-9]*\)" disabled="[0-9]*" errors="\([0-9]*\)".*/\1 \2 \3/p' "$KIT/gtest.xml" 2>/dev/null | head -1)
    if [ -n "$counts" ]; then
      read -r total failures errors <<< "$counts"
      note "C++ unit tests: $((total - failures - errors)) passed, $((failures + errors)) failed"
    else
      note "C++ unit tests: no report (crashed?)"
    fi
  else
    note "C++ unit tests not built (no GoogleTest)"
  fi
  step "dflash doctor" "$NODE" "$KIT/dist/lib/cli.js" doctor --plugin "$PLUGIN" || rc=1
  smoke || rc=1
  return $rc
}

# The shipped pair through the CLI, plain then speculative: both must produce tokens, and greedy
# outputs should match (on GPUs numerics may differ between block sizes: then a warning).
smoke() {
  local cli="$KIT/dist/lib/cli.js" prompt='def fibonacci(n):' verdict
  local pair=(--target models/code-pair/target --drafter models/code-pair/drafter --plugin "$PLUGIN" --max-tokens 48 --json)
  step "smoke: plain generation" "$NODE" "$cli" generate "${pair[@]}" --no-speculative "$prompt" > "$KIT/smoke-plain.jsonl" ||
    { note "smoke FAILED: plain generation"; return 1; }
  step "smoke: speculative generation" "$NODE" "$cli" generate "${pair[@]}" "$prompt" > "$KIT/smoke-spec.jsonl" ||
    { note "smoke FAILED: speculative generation"; return 1; }
  verdict=$("$NODE" -e '
    const fs = require("fs");
    const read = (f) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const [plain, spec] = process.argv.slice(1).map(read);
    const text = (ev) => ev.filter((e) => e.event === "token").map((e) => e.text).join("");
    const done = (ev) => ev.find((e) => e.event === "done") || { stats: {} };
    const p = done(plain).stats, s = done(spec).stats;
    if (!(p.tokens > 0 && s.tokens > 0)) { console.log("no tokens generated"); process.exit(1); }
    const same = text(plain) === text(spec);
    console.log(`${same ? "identical" : "DIFFERENT"} outputs; ${s.tokens} tokens, tau ${s.meanAcceptanceLength.toFixed(2)}, ` +
      `${p.tokensPerSecond.toFixed(1)} tok/s plain, ${s.tokensPerSecond.toFixed(1)} tok/s speculative`);
  ' "$KIT/smoke-plain.jsonl" "$KIT/smoke-spec.jsonl") || { devkit_log "FAILED: smoke: $verdict"; note "smoke FAILED: $verdict"; return 1; }
  devkit_log "smoke: $verdict"
  note "smoke: $verdict"
  [[ "$verdict" == identical* ]] || devkit_log "WARNING: plain and speculative greedy outputs differ"
  return 0
}

# --- kernels and speculative ----------------------------------------------------------------
# bench "what" FILE script args...: a benchmark script writing its table to $RESULTS/FILE.
bench() {
  local what=$1 file=$2
  shift 2
  if step "$what" "$NODE" "$@" --out "$RESULTS/$file" && [ -s "$RESULTS/$file" ]; then
    RESULT_FILES+=("$file")
    return 0
  fi
  note "$what FAILED"
  return 1
}

find_python() {  # a Python with numpy, for tools/shapes/make_random.py
  local py
  for py in ${DEVKIT_PYTHON:-} "$ROOT/.venv/bin/python" python3; do
    command -v "$py" >/dev/null 2>&1 && "$py" -c 'import numpy' 2>/dev/null && { echo "$py"; return 0; }
  done
  return 1
}

# A random checkpoint of the shape and its DFlash drafter, made once per kit directory.
make_shape() {
  local shape=$1 dir="$KIT/models/$1" py
  if [ -f "$dir/.complete" ] && [ -f "$dir-dflash/config.json" ]; then
    devkit_log "random $shape checkpoint: reusing $dir"
    return 0
  fi
  py=$(find_python) || { devkit_log "no Python with numpy (set DEVKIT_PYTHON)"; note "no $shape checkpoint: no numpy"; return 1; }
  rm -rf "$dir" "$dir-dflash"
  step "random $shape checkpoint" "$py" "$ROOT/tools/shapes/make_random.py" --shape "$shape" --out "$dir" --drafter "$dir-dflash" &&
    touch "$dir/.complete"
}

# Block sizes to time the drafter at: 4, 8, ... up to the drafter's own block size (the engine
# drafts no wider); with --quick the largest two.
draft_blocks() {
  "$NODE" -e '
    const cfg = require(require("path").resolve(process.argv[1], "config.json"));
    const max = cfg.block_size ?? cfg.dflash_config?.block_size ?? 16;
    const blocks = [];
    for (let b = 4; b <= max; b *= 2) blocks.push(b);
    console.log((process.argv[2] === "1" ? blocks.slice(-2) : blocks).join(","));
  ' "$1" "$QUICK"
}

stage_kernels() {
  ensure_built || return 1
  local rc=0 shape ks pair=(--target models/code-pair/target --drafter models/code-pair/drafter)
  local quick=() kernels_extra=() roofline_extra=()
  shape=${SHAPE:-$([ "$QUICK" = 1 ] && echo mini || { [ "$CPU" = 1 ] && echo qwen3-0.6b || echo qwen3-4b; })}
  ks=${KS:-$([ "$QUICK" = 1 ] && echo 1,16,64 || echo 1,2,4,8,16,32,64,128,256,512,1024)}
  [ "$QUICK" = 1 ] && quick=(--reps 3 --context 64)
  read -r -a user_kernels <<< "${DEVKIT_KERNELS_ARGS:-}"
  read -r -a user_roofline <<< "${DEVKIT_ROOFLINE_ARGS:-}"
  kernels_extra+=("${user_kernels[@]}")
  roofline_extra+=("${user_roofline[@]}")
  bench "kernels: shipped pair" "kernels-$SLUG.md" "$KIT/dist/bench/kernels.js" "${pair[@]}" --ks "$ks" \
    --blocks "$(draft_blocks models/code-pair/drafter)" "${quick[@]}" "${kernels_extra[@]}" || rc=1
  make_shape "$shape" || return 1
  local shaped=(--target "$KIT/models/$shape" --drafter "$KIT/models/$shape-dflash")
  bench "kernels: $shape (random bf16)" "kernels-$shape-$SLUG.md" "$KIT/dist/bench/kernels.js" "${shaped[@]}" --ks "$ks" \
    --blocks "$(draft_blocks "$KIT/models/$shape-dflash")" "${quick[@]}" "${kernels_extra[@]}" || rc=1
  [ -n "${GPU_NAME:-}" ] && roofline_extra=(--device "$GPU_NAME" "${roofline_extra[@]}")
  bench "roofline: $shape (random bf16)" "roofline-$shape-$SLUG.md" "$KIT/dist/bench/device/roofline.js" "${shaped[@]}" \
    --ks "$ks" "${quick[@]}" "${roofline_extra[@]}" || rc=1
  return $rc
}

stage_speculative() {
  ensure_built || return 1
  local extra=()
  [ "$QUICK" = 1 ] && extra=(--limit 2 --max-tokens 24 --blocks 4,8)
  read -r -a user <<< "${DEVKIT_SPECULATIVE_ARGS:-}"
  bench "speculative: shipped pair" "speculative-$SLUG.md" "$KIT/dist/bench/speculative.js" \
    --target models/code-pair/target --drafter models/code-pair/drafter "${extra[@]}" "${user[@]}"
}

# --- quantized: int8 / int4 / fp8 weights narrow on the device against expanded at load --------
# bench/quantized on a random checkpoint of the shape (written in f32, quantized by
# tools/quant/quantize.py): device bytes, decode ms/token and verify(16) for each; bf16
# activations on a GPU, f32 on the CPU plugin.
stage_quantized() {
  ensure_built || return 1
  local shape py dtype
  shape=${SHAPE:-$([ "$QUICK" = 1 ] && echo mini || { [ "$CPU" = 1 ] && echo qwen3-0.6b || echo qwen3-4b; })}
  dtype=$([ "$CPU" = 1 ] && echo f32 || echo bf16)
  py=$(find_python) || { note "no Python with numpy (set DEVKIT_PYTHON)"; return 1; }
  # The f32 source checkpoint, written here (the compiled bench cannot see tools/ from the kit).
  local src="$KIT/models/quantized-$shape/f32"
  [ -f "$src/model.safetensors" ] ||
    step "random $shape f32 checkpoint" "$py" "$ROOT/tools/shapes/make_random.py" --shape "$shape" --out "$src" --dtype f32 || return 1
  DFLASH_PYTHON=$py bench "quantized: $shape (random, narrow vs expanded at load)" "quantized-$shape-$SLUG.md" \
    "$KIT/dist/bench/quantized.js" --shape "$shape" --dtype "$dtype" --dir "$KIT/models/quantized-$shape"
}

# --- gpt-oss: MXFP4 experts narrow on the device against expanded at load ---------------------
# bench/gpt-oss on a random checkpoint at gpt-oss-20b's layer widths (tools/shapes/make_gpt_oss.py:
# 4 layers of 32 experts on a GPU; with --quick a narrow one, width 256): device bytes, decode
# ms/token and verify(16), bf16 activations on a GPU, f32 on the CPU plugin.
stage_gpt-oss() {
  ensure_built || return 1
  local py dims dtype name
  dtype=$([ "$CPU" = 1 ] && echo f32 || echo bf16)
  py=$(find_python) || { note "no Python with numpy (set DEVKIT_PYTHON)"; return 1; }
  if [ "$QUICK" = 1 ]; then dims=(--layers 2 --experts 4 --vocab 2048 --width 256 --heads 4 --kv-heads 2); name=quick
  elif [ "$CPU" = 1 ]; then dims=(--layers 2 --experts 8); name=2x8
  else dims=(--layers 4 --experts 32); name=4x32; fi
  local dir="$KIT/models/gpt-oss-$name"
  [ -f "$dir/model.safetensors" ] ||
    step "random gpt-oss $name checkpoint (MXFP4 experts)" "$py" "$ROOT/tools/shapes/make_gpt_oss.py" --out "$dir" "${dims[@]}" || return 1
  bench "gpt-oss: MXFP4 experts $name (random, narrow vs expanded at load)" "gpt-oss-mxfp4-$name-$SLUG.md" \
    "$KIT/dist/bench/gpt-oss.js" --dir "$dir" --dtypes "$dtype"
}

# --- hybrid: a Qwen3.5 target (Gated DeltaNet + gated attention) beside a Qwen3 of similar size --
# Random checkpoints (tools/shapes/make_qwen3_5.py): state bytes, decode, verify(1) / verify(16),
# prefill tokens/s, side by side (bench/qwen3-5.ts).
stage_hybrid() {
  ensure_built || return 1
  local py dims dtype name prefill=512 shape=() m
  dtype=$([ "$CPU" = 1 ] && echo f32 || echo bf16)
  py=$(find_python) || { note "no Python with numpy (set DEVKIT_PYTHON)"; return 1; }
  if [ "$QUICK" = 1 ]; then dims=(--layers 4 --vocab 2048); shape=(--mini); name=mini; prefill=64
  elif [ "$CPU" = 1 ]; then dims=(--layers 8); name=8L
  else dims=(--layers 24); name=24L; prefill=2048; fi
  local dir="$KIT/models/hybrid-$name"
  for m in qwen3_5 qwen3; do
    [ -f "$dir/$m/model.safetensors" ] ||
      step "random $m $name checkpoint" "$py" "$ROOT/tools/shapes/make_qwen3_5.py" --out "$dir/$m" --dtype "$dtype" "${dims[@]}" "${shape[@]}" \
        $([ "$m" = qwen3 ] && echo --qwen3) || return 1
  done
  bench "hybrid: Qwen3.5 vs Qwen3 kernels $name (random)" "qwen3_5-vs-qwen3-$name-$dtype-$SLUG.md" \
    "$KIT/dist/bench/qwen3-5.js" --dir "$dir" --dtype "$dtype" --prefill "$prefill" "${dims[@]}" "${shape[@]}"
}

# --- mesh: tensor and data parallelism over every device of the machine ----------------------
# Devices: the GPUs nvidia-smi lists; with --cpu, DEVKIT_CPU_DEVICES (default 2) virtual devices
# of the CPU plugin (they share the cores: plumbing, not speed).
device_count() {
  if [ "$CPU" = 1 ]; then echo "${DEVKIT_CPU_DEVICES:-2}"; return; fi
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -c .
}

# For every tensor-parallel size N in 2, 4, 8 that the devices allow: bench/kernels --tp N (verify
# per device, the all-reduce share of each verify) on the shipped pair and the random shape, and
# bench/serving on the mesh N x (devices / N) that fills the machine.
stage_mesh() {
  ensure_built || return 1
  local n tp dp rc=0 shape ks quick=() serving_quick=()
  local pair=(--target models/code-pair/target --drafter models/code-pair/drafter)
  n=$(device_count)
  if [ "${n:-0}" -lt 2 ]; then
    note "$n device(s): no mesh to run"
    return 0
  fi
  shape=${SHAPE:-$([ "$QUICK" = 1 ] && echo mini || { [ "$CPU" = 1 ] && echo qwen3-0.6b || echo qwen3-4b; })}
  ks=${KS:-$([ "$QUICK" = 1 ] && echo 1,16 || echo 1,4,16,64,256)}
  [ "$QUICK" = 1 ] && quick=(--reps 3 --context 64 --contexts 64) && serving_quick=(--concurrency 1,2 --requests 4 --max-tokens 8)
  [ "$QUICK" = 1 ] || make_shape "$shape" || return 1
  local shaped=(--target "$KIT/models/$shape" --drafter "$KIT/models/$shape-dflash")
  for tp in 2 4 8; do
    [ "$tp" -le "$n" ] && [ $((n % tp)) -eq 0 ] || continue
    dp=$((n / tp))
    bench "kernels: shipped pair over $tp devices" "kernels-$SLUG-tp$tp.md" "$KIT/dist/bench/kernels.js" "${pair[@]}" --tp "$tp" \
      --ks "$ks" --blocks "$(draft_blocks models/code-pair/drafter)" "${quick[@]}" || rc=1
    # --quick proves the plumbing with the pair alone; the shape's numbers are for real devices.
    [ "$QUICK" = 1 ] || bench "kernels: $shape over $tp devices" "kernels-$shape-$SLUG-tp$tp.md" "$KIT/dist/bench/kernels.js" "${shaped[@]}" --tp "$tp" \
      --ks "$ks" --blocks "$(draft_blocks "$KIT/models/$shape-dflash")" "${quick[@]}" || rc=1
    bench "serving: shipped pair, $tp x $dp devices" "serving-$SLUG-tp$tp$([ "$dp" -gt 1 ] && echo "-dp$dp").md" \
      "$KIT/dist/bench/serving.js" "${pair[@]}" --tp "$tp" --dp "$dp" "${serving_quick[@]}" || rc=1
  done
  return $rc
}

# --- the summary and the copies -------------------------------------------------------------
write_summary() {
  local s
  {
    echo "# Device kit run: $DEVICE_DESC"
    echo
    echo "- $(date -u +%Y-%m-%dT%H:%MZ): bench/device/run.sh $ARGS"
    echo "- host: $(uname -srm); $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "- plugin: $PLUGIN"
    echo "- node $DEVKIT_NODE_VERSION (carried); carry packed $DEVKIT_PACKED_AT from commit $DEVKIT_GIT_COMMIT (uncommitted changes: $DEVKIT_GIT_DIRTY)"
    echo
    echo "| stage | result | seconds | notes |"
    echo "|---|---|---|---|"
    for s in "${STAGE_ORDER[@]}"; do echo "| $s | ${STAGE_RESULT[$s]} | ${STAGE_SECONDS[$s]} | ${STAGE_NOTE[$s]} |"; done
    echo
    echo "Tables: ${RESULT_FILES[*]:-none}. Output of the run: devkit-$SLUG.log (with --copy-to)."
  } > "$RESULTS/devkit-$SLUG.md"
}

copy_results() {
  [ -n "$COPY_TO" ] || return 0
  local f
  for f in "${RESULT_FILES[@]}" "devkit-$SLUG.md"; do
    [ -f "$RESULTS/$f" ] && cp "$RESULTS/$f" "$COPY_TO/"
  done
  [ -f "$LOG" ] && cp "$LOG" "$COPY_TO/"
  return 0
}
