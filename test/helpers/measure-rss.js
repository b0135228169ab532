// Child process of test/40-real-scale: loads a model through the built package and reports its
// peak resident memory (VmHWM) at each stage as one JSON line. Run as
//   node test/helpers/measure-rss.js baseline DIR          tokenizer + PJRT client, no model
//   node test/helpers/measure-rss.js engine DIR CACHE_DIR  Engine.load + a short generation
//   node test/helpers/measure-rss.js mesh DIR N            Engine.load over N devices (tensorParallel), no generation
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', '..');
const lib = require(path.join(root, 'dist', 'lib', 'index.js'));
const { loadTokenizer } = require(path.join(root, 'dist', 'lib', 'tokenizer.js'));

function mem() {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(s.match(new RegExp(`${k}:\\s+(\\d+)`))[1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

async function main() {
  const [mode, dir, cacheDir] = process.argv.slice(2);
  if (mode === 'baseline') {
    await loadTokenizer(dir);
    const c = await lib.Client.open();
    console.log(JSON.stringify({ baseline: mem() }));
    c.dispose();
    return;
  }
  if (mode === 'mesh') {
    const engine = await lib.Engine.load({
      target: dir, maxSeqLen: 512, maxSequences: 2, kvCacheMemory: 128e6, cacheDir: false, warmup: false, tensorParallel: Number(cacheDir),
    });
    const st = engine.stats();
    console.log(JSON.stringify({ loaded: mem(), weightBytes: st.weightBytes, kvCacheBytes: st.kvCacheBytes, devices: st.mesh.replicas[0].devices }));
    await engine.close();
    return;
  }
  const t0 = performance.now();
  let weightsAt = 0;
  const engine = await lib.Engine.load({
    target: dir, maxSeqLen: 512, maxSequences: 2, kvCacheMemory: 128e6, cacheDir, warmup: false,
    onProgress: (p) => { if (p.phase === 'weights' && p.tensors === p.totalTensors) weightsAt = performance.now(); },
  });
  const loaded = mem();
  const loadSeconds = (weightsAt - t0) / 1000;
  const t1 = performance.now();
  const done = await engine.generate(Array.from({ length: 12 }, (_, i) => 300 + i), { maxTokens: 8 }).done();
  const st = engine.stats();
  console.log(JSON.stringify({
    loaded, generated: mem(), loadSeconds, firstGenerationSeconds: (performance.now() - t1) / 1000, tokens: done.ids.length,
    tpot: done.stats.tpot, dtype: st.dtype, weightBytes: st.weightBytes, kvCacheBytes: st.kvCacheBytes, compiles: st.compiles,
    diskCacheHits: st.diskCacheHits,
  }));
  await engine.close();
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
