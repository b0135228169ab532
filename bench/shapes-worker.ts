// Child process of bench/shapes.ts (a fresh process, so its peak resident memory is the engine's
// alone): loads one checkpoint, measures load / compile / decode / verify(K), prints one JSON line.
//   node dist/bench/shapes-worker.js DIR [DRAFTER_DIR] --cache DIR --ks 1,2,4,8,16,32 [--dtype D] [--quantized narrow|dequantize|auto]
//     [--prefill N]   also: a prompt of N tokens to its first token (prefill tokens/s, second run)
//     [--prefill-chunk N]  the engine's prefillChunk (prompt tokens per prefill call)
import * as fs from 'fs';

import { Engine } from '../lib/engine';
import { timeDraft, timeVerify } from '../lib/internal/probe';

function peak(): number {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  return Number(s.match(/VmHWM:\s+(\d+)/)![1]) * 1024;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string, d: string) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
  const [dir, drafterArg] = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
  const ks = opt('ks', '1,2,4,8,16,32').split(',').map(Number);
  const t0 = performance.now();
  let weightsDone = 0, compileSeconds = 0;
  const engine = await Engine.load({
    target: dir, drafter: drafterArg, maxSeqLen: 2048, maxSequences: 1, kvCacheMemory: Number(opt('kv', String(512e6))),
    cacheDir: opt('cache', ''), dtype: opt('dtype', 'auto') as 'auto', quantizedWeights: opt('quantized', 'auto') as 'auto',
    ...(opt('prefill-chunk', '') ? { prefillChunk: Number(opt('prefill-chunk', '')) } : {}),
    onProgress: (p) => {
      if (p.phase === 'weights' && p.tensors === p.totalTensors) weightsDone = performance.now();
      if (p.phase === 'program' && (p.kind === 'compile-done' || p.kind === 'cache-load')) compileSeconds += p.seconds;
    },
  });
  const loaded = performance.now();
  const peakLoad = peak();
  const st = engine.stats();
  // Decode: a plain generation, the median step after the first few.
  const steps: number[] = [];
  let last = 0;
  const s = engine.generate(Array.from({ length: 32 }, (_, i) => 1000 + i), { maxTokens: 24, speculative: false });
  s.on('token', () => { const now = performance.now(); if (last) steps.push(now - last); last = now; });
  await s.done();
  steps.sort((a, b) => a - b);
  const verify: Record<number, number> = {};
  for (const k of ks) verify[k] = await timeVerify(engine, k, 64, 5);
  let prefill: { tokens: number; seconds: number } | undefined;
  const prefillTokens = Number(opt('prefill', '0'));
  if (prefillTokens > 0) {
    // Twice: the first run compiles the prefill buckets it needs; the second is timed.
    const prompt = (salt: number) => Array.from({ length: prefillTokens }, (_, i) => (salt + i * 7) % engine.config.target.vocabSize);
    await engine.generate(prompt(1), { maxTokens: 1, speculative: false }).done();
    const t = performance.now();
    await engine.generate(prompt(2), { maxTokens: 1, speculative: false }).done();
    prefill = { tokens: prefillTokens, seconds: (performance.now() - t) / 1000 };
  }
  let draft: number | undefined, spec: { tokens: number; steps: number } | undefined;
  if (drafterArg) {
    draft = await timeDraft(engine, engine.config.drafter!.blockSize, 64, 5);
    const d = await engine.generate(Array.from({ length: 32 }, (_, i) => 2000 + i), { maxTokens: 16, speculative: { blockSize: engine.config.drafter!.blockSize } }).done();
    spec = { tokens: d.ids.length, steps: d.stats.steps };
  }
  console.log(JSON.stringify({
    dtype: st.dtype, reason: st.dtypeReason, weightBytes: st.weightBytes, kvBytes: st.kvCacheBytes, compiles: engine.stats().compiles,
    diskHits: engine.stats().diskCacheHits, loadSeconds: (weightsDone - t0) / 1000, startSeconds: (loaded - t0) / 1000, compileSeconds,
    peakLoad, peak: peak(), decodeMs: steps[Math.floor(steps.length / 2)], verify, draft, spec, prefill,
    recurrentState: st.recurrentState, slidingWindow: st.slidingWindow, pageBytes: st.pageBytes, pageSize: st.pageSize,
  }));
  await engine.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
