// Speculative decoding is lossless: greedy DFlash output is token-for-token plain greedy output
// of the same engine and of transformers (goldens), at both extremes of acceptance — a random
// drafter (almost everything rejected) and a fully predictable pair (everything accepted) — and
// one device-to-host transfer per step.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { makeDrafter, makeTarget, tmpDir } from './helpers/tiny-model';

const MODELS = path.join(__dirname, 'fixtures', 'models');
const golden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'qwen3-f32.json'), 'utf8'));

describe('random drafter (low acceptance)', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), pageSize: 8, maxSeqLen: 160, maxSequences: 2 });
  });
  afterAll(() => engine?.dispose());

  it('equals the transformers greedy continuation', async () => {
    for (const c of golden.cases) {
      const done = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length }).done();
      expect(done.ids, `prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
    }
  });

  it('equals plain greedy decoding over many prompts, lengths and block sizes', async () => {
    let accepted = 0;
    for (let p = 0; p < 10; p++) {
      const len = 1 + ((p * 13) % 50);
      const prompt = Array.from({ length: len }, (_, i) => (p * 101 + i * 29 + 5) % 256);
      const maxTokens = 20 + ((p * 7) % 25);
      const plain = await engine.generate(prompt, { maxTokens, speculative: false }).done();
      for (const blockSize of p % 2 === 0 ? [8] : [4, 2]) {
        const spec = await engine.generate(prompt, { maxTokens, speculative: { blockSize } }).done();
        expect(spec.ids, `prompt ${p}, block ${blockSize}`).toEqual(plain.ids);
        expect(spec.reason).toBe('maxTokens');
        accepted += spec.stats.acceptanceRate;
      }
    }
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
    expect(accepted).toBeLessThan(1);  // random drafts are almost never right
  });

  it('copies exactly one buffer to the host per step', async () => {
    const before = engine.stats().hostTransfers;
    const done = await engine.generate([1, 2, 3, 4, 5, 6, 7], { maxTokens: 30 }).done();
    const after = engine.stats().hostTransfers;
    // Prefill copies nothing back; every step (the first, plain one included) one packed accept vector.
    expect(after - before).toBe(done.stats.steps);
    expect(done.stats.steps).toBeGreaterThan(3);
    // The KV cache was donated to every execution (updated in place, never copied).
    expect(engine.stats().cacheCopies).toBe(0);
  });
});

describe('fully predictable pair (full acceptance)', () => {
  let engine: Engine;
  beforeAll(async () => {
    // Zero final norms: every logit is 0 for target and drafter alike, so both always pick
    // token 0 and every draft is accepted.
    const dir = tmpDir();
    const t = makeTarget(path.join(dir, 'target'), { vocab: 256, constant: true, seed: 5 });
    makeDrafter(path.join(dir, 'drafter'), t, { constant: true, blockSize: 8, seed: 6 });
    engine = await Engine.load({ target: path.join(dir, 'target'), drafter: path.join(dir, 'drafter'), maxSeqLen: 128, maxSequences: 1, adaptive: false });
  });
  afterAll(() => engine?.dispose());

  it('accepts every draft: tau = block size, and the output is still plain greedy', async () => {
    const prompt = [9, 8, 7, 6, 5];
    const plain = await engine.generate(prompt, { maxTokens: 41, speculative: false }).done();
    const spec = await engine.generate(prompt, { maxTokens: 41 }).done();
    expect(spec.ids).toEqual(plain.ids);
    expect(spec.stats.acceptanceRate).toBe(1);
    // The first step is a plain one (it starts the drafter's context), then 40 tokens in 5 blocks.
    expect(spec.stats.steps).toBe(6);
    expect(spec.stats.meanAcceptanceLength).toBe(41 / 6);
    expect(spec.stats.perPositionAcceptance).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});

describe('Qwen3-MoE target with its DFlash drafter', () => {
  it('speculative output equals plain decoding, token for token (and transformers\' greedy continuation)', async () => {
    const moeGolden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'qwen3-moe-f32.json'), 'utf8'));
    const engine = await Engine.load({
      target: path.join(MODELS, 'qwen3-moe-f32'), drafter: path.join(MODELS, 'qwen3-moe-f32-dflash'), maxSeqLen: 128, maxSequences: 4,
      adaptive: false,
    });
    try {
      for (const c of moeGolden.cases) {
        const spec = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length }).done();
        expect(spec.ids, `prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
        expect(spec.stats.steps).toBeGreaterThan(1);
      }
      const prompts = [[3, 1, 4, 1, 5], [9, 2, 6], [200, 100, 50, 25, 12, 6]];
      const plain = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 30, speculative: false }).done()));
      const spec = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 30 }).done()));
      spec.forEach((s, i) => expect(s.ids, `prompt ${i}`).toEqual(plain[i].ids));
      expect(engine.stats().freePages).toBe(engine.stats().totalPages);
    } finally {
      await engine.close();
    }
  });
});
