// The target model against an independent oracle: Hugging Face transformers (goldens made by
// tools/oracle/make_goldens.py on the checkpoints in test/fixtures/models). Qwen3 f32, Qwen3 bf16
// with tied embeddings + MQA + head_dim != hidden/heads in two shards, Llama with llama3 RoPE
// scaling; page sizes 4 and 16 so prompts cross page boundaries; a batch of unequal lengths.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';

const FIX = path.join(__dirname, 'fixtures');

interface Golden {
  vocab_size: number;
  hidden_size: number;
  cases: { prompt_ids: number[]; logits: number[]; greedy_ids: number[]; hidden_after_layer: number[][] }[];
}

const golden = (name: string): Golden => JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${name}.json`), 'utf8'));

function expectClose(got: Float32Array, want: number[], what: string, atol = 2e-4, rtol = 2e-4): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]);
    if (err > worst) { worst = err; at = i; }
  }
  expect(worst, `${what}: worst |dflash - transformers| beyond tolerance at ${at} (${got[at]} vs ${want[at]})`).toBeLessThanOrEqual(atol);
}

const engines: Engine[] = [];
afterAll(() => engines.forEach((e) => e.dispose()));

describe.each([
  ['qwen3-f32', 16],
  ['qwen3-f32', 4],
  ['qwen3-bf16-tied', 16],
  ['llama-f32', 8],
])('%s, page size %i', (name, pageSize) => {
  const g = golden(name);
  let engine: Engine;

  it('loads', async () => {
    engine = await Engine.load({ target: path.join(FIX, 'models', name), pageSize, maxSeqLen: 128, maxSequences: 2 });
    engines.push(engine);
    expect(engine.config.target.vocabSize).toBe(g.vocab_size);
  });

  it('logits and hidden states of every prompt position match transformers', async () => {
    for (const c of g.cases) {
      const layers = c.hidden_after_layer.map((_, i) => i);
      const r = await engine.nativeEngine.scoreLogits([Int32Array.from(c.prompt_ids)], { hiddenLayers: layers });
      expectClose(r.logits[0], c.logits, `logits, prompt of ${c.prompt_ids.length}`);
      // hidden: (T, n_layers * H), layer-major within a row
      const T = c.prompt_ids.length, H = g.hidden_size, n = layers.length;
      const h = r.hidden![0];
      for (let l = 0; l < n; l++) {
        const mine = new Float32Array(T * H);
        for (let t = 0; t < T; t++) mine.set(h.subarray(t * n * H + l * H, t * n * H + (l + 1) * H), t * H);
        expectClose(mine, c.hidden_after_layer[l], `hidden after layer ${l}, prompt of ${T}`, 1e-3, 1e-3);
      }
    }
  });

  it('a batch of unequal lengths in one call gives each sequence its own logits', async () => {
    const [a, b] = [g.cases[3], g.cases[1]];
    const r = await engine.nativeEngine.scoreLogits([Int32Array.from(a.prompt_ids), Int32Array.from(b.prompt_ids)]);
    expectClose(r.logits[0], a.logits, 'batch row 0');
    expectClose(r.logits[1], b.logits, 'batch row 1');
  });

  it('greedy generation is token-for-token the transformers greedy continuation', async () => {
    for (const c of g.cases) {
      const done = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: false }).done();
      expect(done.ids, `prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
      expect(done.reason).toBe('maxTokens');
    }
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});
