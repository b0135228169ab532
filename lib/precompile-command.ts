// `dflash precompile`: fills the disk cache with every program `dflash serve` runs for the same
// options (e.g. in a container build), so a server started on that cache compiles nothing and is
// ready in the time it takes to load the weights and the executables.
import { loadWithProgress, precompileWithProgress } from './cli-progress';
import { serveEngineOptions } from './server/serve-command';

export async function precompileCommand(v: Parameters<typeof serveEngineOptions>[0] & { 'cache-dir'?: string }): Promise<void> {
  if (!v.target) throw new Error('precompile needs --target DIR');
  const { precompileContext, ...loadOptions } = serveEngineOptions(v);
  const cacheDir = v['cache-dir'];
  if (cacheDir !== undefined && cacheDir.trim() === '') throw new Error('--cache-dir must name a directory');
  const t0 = performance.now();
  const engine = await loadWithProgress({ ...loadOptions, ...(cacheDir ? { cacheDir } : {}) }, true);
  try {
    const before = engine.stats();
    const { programs } = await precompileWithProgress(engine, precompileContext, true);
    const st = engine.stats();
    process.stderr.write(`dflash precompile: ${programs} programs for ${precompileContext}-token sequences ` +
      `(${st.compiles - before.compiles} compiled now, ${st.diskCacheHits} loaded from the cache) in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  } finally {
    await engine.close();
  }
}
