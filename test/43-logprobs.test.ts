// Log-probabilities from the target's own distribution (log_softmax of its logits): of every
// prompt token (computed by the prefill) against transformers' logits (goldens); of every
// generated token, speculative equal to plain decoding within 1e-5 (the verify pass that accepted
// a token scores its position as plain decoding does) and to the score program's logits; the top
// alternatives sorted, the greedy token first; still one host transfer per step.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { scoreLogits } from '../lib/internal/probe';

const FIX = path.join(__dirname, 'fixtures');
const golden = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'qwen3-f32.json'), 'utf8')) as {
  vocab_size: number;
  cases: { prompt_ids: number[]; logits: number[] }[];
};
const V = golden.vocab_size;

function logSoftmax(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  const l = Math.log(s) + m;
  return Float64Array.from(row as ArrayLike<number>, (x) => x - l);
}

let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({
    target: path.join(FIX, 'models', 'qwen3-f32'), drafter: path.join(FIX, 'models', 'qwen3-f32-dflash'), pageSize: 8, maxSeqLen: 256,
    maxSequences: 4, cacheDir: false, adaptive: false,
  });
});
afterAll(() => engine?.close());

describe('logprobs', () => {
  it('prompt log-probabilities equal log_softmax of transformers\' logits', async () => {
    for (const c of golden.cases.filter((x) => x.prompt_ids.length > 1)) {
      const d = await engine.generate(c.prompt_ids, { maxTokens: 1, promptLogprobs: 3 }).done();
      const lp = d.promptLogprobs!;
      expect(lp).toHaveLength(c.prompt_ids.length);
      expect(lp[0]).toBeNull();
      expect(d.stats.cachedTokens).toBe(0);  // computed whole, even when its pages are cached
      for (let i = 1; i < c.prompt_ids.length; i++) {
        const want = logSoftmax(c.logits.slice((i - 1) * V, i * V));
        expect(lp[i]!.id).toBe(c.prompt_ids[i]);
        expect(Math.abs(lp[i]!.logprob - want[c.prompt_ids[i]]), `prompt position ${i}`).toBeLessThan(2e-4);
        const order = Array.from(want.keys()).sort((a, b) => want[b] - want[a]);
        expect(lp[i]!.top.map((t) => t.id)).toEqual(order.slice(0, 3));
      }
    }
  });

  it('speculative log-probabilities equal plain decoding\'s and the score program\'s, one transfer per step', async () => {
    for (const [p, prompt] of [[1, 2, 3], [9, 100, 31, 7, 200, 45, 6], Array.from({ length: 30 }, (_, i) => (i * 29 + 4) % 256)].entries()) {
      const before = engine.stats().hostTransfers;
      const spec = await engine.generate(prompt, { maxTokens: 20, logprobs: 5 }).done();
      expect(engine.stats().hostTransfers - before, `prompt ${p}`).toBe(spec.stats.steps);
      const plain = await engine.generate(prompt, { maxTokens: 20, logprobs: 5, speculative: false }).done();
      expect(spec.ids).toEqual(plain.ids);
      expect(spec.logprobs).toHaveLength(20);
      const r = await scoreLogits(engine, [Int32Array.from([...prompt, ...spec.ids])]);
      spec.logprobs!.forEach((l, i) => {
        expect(Math.abs(l.logprob - plain.logprobs![i].logprob), `prompt ${p}, token ${i}`).toBeLessThan(1e-5);
        const pos = prompt.length - 1 + i;
        const want = logSoftmax(r.logits[0].subarray(pos * V, (pos + 1) * V));
        expect(Math.abs(l.logprob - want[spec.ids[i]])).toBeLessThan(1e-5);
        // Greedy: the token is the most likely one; alternatives sorted.
        expect(l.top[0].id).toBe(spec.ids[i]);
        expect(l.top).toHaveLength(5);
        for (let t = 1; t < 5; t++) expect(l.top[t].logprob).toBeLessThanOrEqual(l.top[t - 1].logprob);
      });
    }
  });

  it('a sampled token\'s log-probability is the target\'s (temperature not applied), streamed with its token', async () => {
    const prompt = [44, 45, 46, 47];
    const stream = engine.generate(prompt, { maxTokens: 16, temperature: 1.3, topK: 40, seed: 5, logprobs: 0 });
    const seen: number[] = [];
    stream.on('token', (t) => { if (t.id >= 0) { expect(t.topLogprobs).toEqual([]); seen.push(t.logprob!); } });
    const d = await stream.done();
    expect(seen).toEqual(d.logprobs!.map((l) => l.logprob));
    const r = await scoreLogits(engine, [Int32Array.from([...prompt, ...d.ids])]);
    d.ids.forEach((id, i) => {
      const pos = prompt.length - 1 + i;
      expect(Math.abs(d.logprobs![i].logprob - logSoftmax(r.logits[0].subarray(pos * V, (pos + 1) * V))[id])).toBeLessThan(1e-5);
    });
    // Requests without logprobs carry none.
    const none = await engine.generate(prompt, { maxTokens: 4 }).done();
    expect(none.logprobs).toBeUndefined();
    expect(none.promptLogprobs).toBeUndefined();
    expect(() => engine.generate(prompt, { logprobs: 21 })).toThrow(/logprobs/);
  });
});
