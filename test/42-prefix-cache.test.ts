// Automatic prefix caching: full KV pages are indexed by a hash chained over their tokens and
// shared by later sequences that start with the same tokens. Output with a cache hit equals output
// without (greedy and seeded sampling, plain and speculative: the engine with prefixCaching off is
// the oracle), a multi-turn chat reuses its whole history (generated tokens included), n choices
// of one prompt prefill it once (the others wait for its pages), unused cached pages are evicted
// least recently used when the pool needs them, and the counters say what was reused.
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';

const MODELS = path.join(__dirname, 'fixtures', 'models');
const PAGE = 8;

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});
async function load(o: Partial<Parameters<typeof Engine.load>[0]> = {}): Promise<Engine> {
  const e = await Engine.load({
    target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), pageSize: PAGE, maxSeqLen: 256,
    maxSequences: 4, cacheDir: false, adaptive: false, ...o,
  });
  engines.push(e);
  return e;
}

const system = Array.from({ length: 45 }, (_, i) => (i * 37 + 11) % 256);
const turns = [[1, 2, 3], [40, 41], [7, 7, 7, 7, 7]];

describe('prefix caching', () => {
  let on: Engine, off: Engine;
  beforeAll(async () => {
    [on, off] = [await load(), await load({ prefixCaching: false })];
  });

  it('a hit changes nothing in the output: greedy and sampled, plain and speculative', async () => {
    const cases = [
      { maxTokens: 24 },
      { maxTokens: 24, speculative: false as const },
      { maxTokens: 24, temperature: 0.9, topK: 50, seed: 7 },
      { maxTokens: 24, temperature: 0.9, seed: 8, speculative: false as const },
    ];
    for (const [c, o] of cases.entries()) {
      for (const tail of [[5], [6, 6, 6], [5]]) {
        const prompt = [...system, ...tail];
        const [x, y] = [await on.generate(prompt, o).done(), await off.generate(prompt, o).done()];
        expect(x.ids, `case ${c}, tail ${tail}`).toEqual(y.ids);
        expect(y.stats.cachedTokens).toBe(0);
      }
    }
    // The shared system prompt was prefilled once: every later request found its 5 full pages.
    const r = await on.generate([...system, 9], { maxTokens: 2 }).done();
    expect(r.stats.cachedTokens).toBe(5 * PAGE);
    const s = on.stats();
    expect(s.prefixCacheHits).toBeGreaterThan(0);
    expect(s.prefixCacheQueries).toBeGreaterThan(s.prefixCacheHits);
    expect(s.cachedPages).toBeGreaterThan(0);
    expect(s.freePages).toBe(s.totalPages);  // cached pages nobody uses are free to take
    expect(off.stats().cachedPages).toBe(0);
  });

  it('a multi-turn chat reuses its whole history, generated tokens included', async () => {
    let history = [...system];
    for (const [t, turn] of turns.entries()) {
      const prompt = [...history, ...turn];
      const [x, y] = [await on.generate(prompt, { maxTokens: 16 }).done(), await off.generate(prompt, { maxTokens: 16 }).done()];
      expect(x.ids, `turn ${t}`).toEqual(y.ids);
      if (t > 0) {
        // Everything before this turn's new tokens but the last partial page was cached.
        expect(x.stats.cachedTokens, `turn ${t}`).toBe(Math.floor((history.length - 1) / PAGE) * PAGE);
      }
      history = [...prompt, ...x.ids];
    }
  });

  it('n choices of a new prompt prefill it once: the first computes, the others share its pages', async () => {
    const prompt = Array.from({ length: 38 }, (_, i) => (i * 53 + 200) % 256);
    const choices = await Promise.all([0, 1, 2, 3].map((i) => on.generate(prompt, { maxTokens: 12, temperature: 0.8, seed: 100 + i }).done()));
    const cached = choices.map((d) => d.stats.cachedTokens).sort((a, b) => a - b);
    expect(cached).toEqual([0, 32, 32, 32]);
    for (const [i, d] of choices.entries()) {
      const alone = await off.generate(prompt, { maxTokens: 12, temperature: 0.8, seed: 100 + i }).done();
      expect(d.ids, `choice ${i}`).toEqual(alone.ids);
    }
  });

  it('evicts unused cached pages least recently used when the pool needs them', async () => {
    // A pool of 24 pages (+ the trash page): a 56-token request holds 7 of them; 12 distinct
    // prompts cycle the cache.
    const small = await load({ kvCacheMemory: 25 * on.stats().pageBytes, maxSequences: 2 });
    const prompts = Array.from({ length: 12 }, (_, p) => Array.from({ length: 48 }, (_, i) => (p * 97 + i * 13) % 256));
    for (const p of prompts) expect((await small.generate(p, { maxTokens: 8 }).done()).ids).toHaveLength(8);
    const s = small.stats();
    expect(s.totalPages).toBe(24);
    expect(s.cachedPages).toBeGreaterThan(0);
    expect(s.cachedPages).toBeLessThanOrEqual(s.totalPages);
    expect(s.freePages).toBe(s.totalPages);
    // The latest prompts are still cached; the first ones were evicted.
    expect((await small.generate(prompts[11], { maxTokens: 2 }).done()).stats.cachedTokens).toBe(40);
    expect((await small.generate(prompts[0], { maxTokens: 2 }).done()).stats.cachedTokens).toBe(0);
  });
});
