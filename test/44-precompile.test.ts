// Ready means fast: engine.precompile() compiles every program the scheduler asks for with up to
// maxSequences streams of up to `context` tokens — prefill chunks, plain decode, full blocks and
// their drafts, greedy and sampled — so a burst of such requests compiles nothing more; a second
// engine on the same disk cache loads them all instead of compiling. Structured-output rows share
// the same verifies (every verify takes a token mask: all ones for free rows).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { native } from '../lib/native';

const MODELS = path.join(__dirname, 'fixtures', 'models');
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-precompile-'));
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

const opts = {
  target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), pageSize: 8, maxSeqLen: 128,
  maxSequences: 4, adaptive: false, warmup: false, cacheDir,
};

describe('precompile', () => {
  it('after it, mixed greedy and sampled bursts of up to maxSequences streams compile nothing', async () => {
    const engine = await Engine.load(opts);
    try {
      const seen: number[] = [];
      const r = await engine.precompile({ context: 64, onProgress: (p) => seen.push(p.done) });
      expect(r.programs).toBeGreaterThan(10);
      expect(seen[seen.length - 1]).toBe(r.programs);
      // The device-free plan `dflash doctor` prints is the set the engine compiled.
      const plan = native().servingPlan({ maxSequences: opts.maxSequences, maxSeqLen: opts.maxSeqLen }, opts.maxSeqLen, engine.config.drafter!.blockSize, 64);
      expect(plan).toHaveLength(r.programs);
      expect(engine.stats().programs.servingSet).toBe(native().servingPlan({ maxSequences: 4 }, opts.maxSeqLen, engine.config.drafter!.blockSize, opts.maxSeqLen).length);
      const compiled = engine.stats().compiles;
      expect(compiled).toBe(r.programs);
      const prompts = [[1, 2, 3], Array.from({ length: 30 }, (_, i) => i + 5), [7, 8], Array.from({ length: 17 }, (_, i) => 200 - i)];
      for (const n of [1, 2, 3, 4])
        await Promise.all(prompts.slice(0, n).map((p, i) =>
          engine.generate(p, i % 2 ? { maxTokens: 24, temperature: 0.8, seed: i } : { maxTokens: 24 }).done()));
      await engine.generate([9, 9, 9], { maxTokens: 20, speculative: false }).done();
      expect(engine.stats().compiles).toBe(compiled);
    } finally {
      await engine.close();
    }
  });

  it('batches mixing structured-output rows run the same programs: nothing more compiles', async () => {
    const engine = await Engine.load({ ...opts, cacheDir: false });
    try {
      const r = await engine.precompile({ context: 64 });
      const compiled = engine.stats().compiles;
      expect(compiled).toBe(r.programs);
      const grammar = { regex: '(.|\\n){0,200}' };
      for (const n of [1, 3])
        await Promise.all(Array.from({ length: n }, (_, i) =>
          engine.generate([3 + i, 4, 5], i === 0 ? { maxTokens: 20, grammar } : i === 1 ? { maxTokens: 20, temperature: 0.8, seed: 1, grammar } : { maxTokens: 20 }).done()));
      expect(engine.stats().grammarRows).toBeGreaterThan(0);
      expect(engine.stats().compiles).toBe(compiled);
      // Free batches send all-ones masks: one per (rows, block) bucket they ran, kept, not re-sent.
      await engine.generate([3, 4, 5], { maxTokens: 20 }).done();
      const masks = engine.stats().programs.maskBuffers;
      expect(masks).toBeGreaterThan(0);
      expect(masks).toBeLessThanOrEqual(r.programs);
      await engine.generate([3, 4, 5], { maxTokens: 20 }).done();
      expect(engine.stats().programs.maskBuffers).toBe(masks);
    } finally {
      await engine.close();
    }
  });

  it('a second start loads every program from the disk cache', async () => {
    const engine = await Engine.load(opts);
    try {
      const r = await engine.precompile({ context: 64 });
      const s = engine.stats();
      expect(s.compiles).toBe(0);
      expect(s.diskCacheHits).toBe(r.programs);
      // What the loaded executables cost in memory maps (XLA:CPU maps each one's code and data).
      if (s.programs.mapLimit > 0) expect(s.programs.programMaps).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });

  it('maxLoadedPrograms bounds the loaded programs: the least recently used come back from the disk cache, the output unchanged', async () => {
    const prompts = [[1, 2, 3], Array.from({ length: 30 }, (_, i) => i + 5), [7, 8]];
    const burst = (e: Engine) => Promise.all(prompts.map((p, i) =>
      e.generate(p, i % 2 ? { maxTokens: 24, temperature: 0.8, seed: i } : { maxTokens: 24 }).done().then((d) => d.ids)));
    const free = await Engine.load(opts);
    let want: number[][];
    try {
      want = await burst(free);
    } finally {
      await free.close();
    }
    const bounded = await Engine.load({ ...opts, maxLoadedPrograms: 3 });
    try {
      expect(await burst(bounded)).toEqual(want);
      const s = bounded.stats();
      expect(s.programs.loaded).toBeLessThanOrEqual(3);  // at rest no step holds one
      expect(s.programs.unloaded).toBeGreaterThan(0);
      expect(s.compiles).toBe(0);  // every reload came from the disk cache
      expect(s.diskCacheHits).toBe(s.programs.loaded + s.programs.unloaded);
    } finally {
      await bounded.close();
    }
  });
});
