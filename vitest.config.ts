import { defineConfig } from 'vitest/config';

// One fork: the native addon, the PJRT client and compiled programs are shared by every test
// file in the process, which keeps XLA compile time (the dominant cost on 2 cores) down.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // --expose-gc: tests that count live native objects collect first (helpers/live-objects.ts).
    poolOptions: { forks: { singleFork: true, execArgv: ['--expose-gc'] } },
    fileParallelism: false,
  },
});
