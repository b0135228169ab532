import { defineConfig } from 'vitest/config';

// XLA compiles are most of the suite's time on 2 cores. The tests check what the programs
// compute, not how fast, so they compile the same StableHLO with LLVM at -O0 and without its
// expensive passes: about a third less time per file (test/20: 75 s -> 47 s). Benchmarks, the
// demo and the npm-path check (scripts/ci-npm-path.sh) keep XLA's defaults. The flags are part of
// the disk cache's entry header (native/engine/program_cache.cc), so these programs never serve a
// later run without them. DFLASH_TEST_XLA_FLAGS='' tests at the defaults.
const TEST_XLA_FLAGS = process.env.DFLASH_TEST_XLA_FLAGS ?? '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true';
const xlaFlags = [process.env.XLA_FLAGS, TEST_XLA_FLAGS].filter(Boolean).join(' ');

// Two files at a time, each in its own process: most of a file's time is single-threaded (HLO
// passes, numpy and transformers references, JS), so two share the 2 cores well. Measured on
// this machine from an empty program cache: 1,614 s one file at a time, 1,081 s two at a time
// (each file ~1.5x slower, the whole a third shorter). Files share nothing but the read-only
// fixtures and the program cache (made for concurrent processes: test/24).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // --expose-gc: tests that count live native objects collect first (helpers/live-objects.ts).
    poolOptions: { forks: { singleFork: false, minForks: 1, maxForks: 2, execArgv: ['--expose-gc'] } },
    fileParallelism: true,
    // Set in the worker's process.env, so the processes the tests spawn (CLI, server) inherit it.
    env: xlaFlags ? { XLA_FLAGS: xlaFlags } : {},
  },
});
