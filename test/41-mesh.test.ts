// Every device of the host: tensor parallelism (XLA's SPMD partitioner splits every program over a
// mesh, models/parallel.h) and data-parallel replicas, on the CPU plugin's virtual devices
// (cpu_device_count). Against the transformers goldens and the one-device engine: logits within f32
// tolerance, greedy tokens identical but at near-ties (counted), speculative == plain on the same
// mesh (lossless), batch invariance and seeded sampling on the same mesh, Llama and Qwen3-MoE
// targets, 2 / 4 / 8 devices (8 with a model of 8 heads and 2 KV heads: each KV head repeated 4x).
// Each device holds its part of every split weight (from the PJRT buffers' sizes). Replicas take
// requests by load; streams, cancellation and stats work across them.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { scoreLogits } from '../lib/internal/probe';
import { makeDrafter, makeTarget, tmpDir } from './helpers/tiny-model';

const FIX = path.join(__dirname, 'fixtures');
const MODELS = path.join(FIX, 'models');
const golden = (name: string) => JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${name}.json`), 'utf8')) as {
  vocab_size: number;
  cases: { prompt_ids: number[]; logits: number[]; greedy_ids: number[] }[];
};

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});
async function load(opts: Parameters<typeof Engine.load>[0]): Promise<Engine> {
  const e = await Engine.load({ cacheDir: false, ...opts });
  engines.push(e);
  return e;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// The top-2 margin of the last position's logits.
function margin(logits: Float32Array, vocab: number): number {
  const row = logits.subarray(logits.length - vocab);
  let a = -Infinity, b = -Infinity;
  for (const x of row) {
    if (x > a) [a, b] = [x, a];
    else if (x > b) b = x;
  }
  return a - b;
}

// Greedy tokens of `engine` vs `want`: identical, or diverging at a near-tie — where the top-2
// margin is within what f32 summation order moves (the mesh engine's logits agree with the
// oracle's within 2e-4, so a margin beyond 1e-3 would have been the oracle's choice too).
// Returns 1 for a near-tie divergence, 0 for identical; fails otherwise.
async function compareGreedy(engine: Engine, prompt: number[], want: number[], vocab: number, what: string): Promise<number> {
  const got = (await engine.generate(prompt, { maxTokens: want.length, speculative: false }).done()).ids;
  const first = got.findIndex((t, i) => t !== want[i]);
  if (first < 0) {
    expect(got, what).toEqual(want);
    return 0;
  }
  const r = await scoreLogits(engine, [Int32Array.from([...prompt, ...want.slice(0, first)])]);
  expect(margin(r.logits[0], vocab), `${what}: diverged at step ${first} where the top-2 margin is clear`).toBeLessThan(1e-3);
  return 1;
}

describe.each([
  ['qwen3-f32', 2],
  ['qwen3-f32', 4],  // 2 KV heads over 4 devices: each repeated twice
  ['llama-f32', 2],
  ['qwen3-moe-f32', 2],  // every expert split by its intermediate columns
  ['qwen2-f32', 2],  // q/k/v biases split with their heads
])('%s over %i devices', (name, devices) => {
  const g = golden(name);
  let engine: Engine;
  beforeAll(async () => {
    engine = await load({ target: path.join(MODELS, name), tensorParallel: devices, pageSize: 8, maxSeqLen: 128, maxSequences: 2, dtype: 'f32', warmup: false });
  });

  it('scores every prompt position within f32 tolerance of transformers', async () => {
    for (const c of g.cases) {
      const r = await scoreLogits(engine, [Int32Array.from(c.prompt_ids)]);
      expect(maxDiff(r.logits[0], c.logits), `prompt of ${c.prompt_ids.length}`).toBeLessThan(2e-4);
    }
  });

  it('decodes the greedy continuation of transformers, but at counted near-ties', async () => {
    let ties = 0;
    for (const c of g.cases) ties += await compareGreedy(engine, c.prompt_ids, c.greedy_ids, g.vocab_size, `prompt of ${c.prompt_ids.length}`);
    expect(ties).toBeLessThanOrEqual(1);
  });

  it('splits every weight over the devices as the layout says (PJRT buffer sizes)', () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(MODELS, name, 'config.json'), 'utf8'));
    const mesh = engine.stats().mesh;
    expect(mesh.tensorParallel).toBe(devices);
    expect(mesh.replicas).toHaveLength(1);
    const per = mesh.replicas[0].devices.map((d) => d.weightBytes);
    expect(per).toHaveLength(devices);
    expect(new Set(per).size).toBe(1);  // every device the same share
    // Independently of the engine: the checkpoint's bytes, split tensors counted 1/N.
    const H = cfg.hidden_size, V = cfg.vocab_size, L = cfg.num_hidden_layers, hd = cfg.head_dim ?? H / cfg.num_attention_heads;
    const q = cfg.num_attention_heads * hd, kv = cfg.num_key_value_heads * hd;
    const kvSplit = cfg.num_key_value_heads % devices === 0;
    let split = V * H * (cfg.tie_word_embeddings ? 1 : 2), whole = H;  // embed (+ lm_head); final norm
    for (let l = 0; l < L; l++) {
      split += q * H + q * H;                                   // q_proj, o_proj
      const kvPart = kvSplit ? (x: number) => { split += x; } : (x: number) => { whole += x; };
      kvPart(2 * kv * H);                                       // k/v_proj
      if (cfg.model_type === 'qwen2' || cfg.attention_bias) split += q, kvPart(2 * kv);  // q/k/v biases, with their heads
      if (cfg.attention_bias && cfg.model_type !== 'qwen2') whole += H;  // o_proj's bias, added once after the sum
      whole += 2 * H + (cfg.model_type === 'llama' || cfg.model_type === 'qwen2' ? 0 : 2 * hd);  // layer norms, q_norm / k_norm
      const experts = cfg.num_experts ?? cfg.num_local_experts;
      if (experts) split += experts * 3 * cfg.moe_intermediate_size * H, whole += experts * H;  // experts; router
      else split += 3 * cfg.intermediate_size * H;              // gate_up, down
    }
    expect(per[0]).toBe(4 * (split / devices + whole));
    // The KV pool: every device holds its KV heads of every page.
    const s = engine.stats();
    expect(mesh.replicas[0].devices[0].kvCacheBytes * devices).toBe(s.kvCacheBytes);
  });
});

describe('qwen3-f32 with its drafter over 2 and 4 devices', () => {
  const target = path.join(MODELS, 'qwen3-f32'), drafter = path.join(MODELS, 'qwen3-f32-dflash');
  const prompts = Array.from({ length: 5 }, (_, p) => Array.from({ length: 3 + ((p * 11) % 30) }, (_, i) => (p * 67 + i * 31 + 7) % 256));

  it.each([2, 4])('speculative == plain, batch invariance and seeded sampling on %i devices', async (devices) => {
    const engine = await load({ target, drafter, tensorParallel: devices, pageSize: 8, maxSeqLen: 160, maxSequences: 4, adaptive: false });
    const plain: number[][] = [];
    for (const [p, prompt] of prompts.entries()) {
      plain.push((await engine.generate(prompt, { maxTokens: 24, speculative: false }).done()).ids);
      const spec = await engine.generate(prompt, { maxTokens: 24, speculative: { blockSize: p % 2 ? 4 : 8 } }).done();
      expect(spec.ids, `prompt ${p}`).toEqual(plain[p]);
    }
    // Four streams at once (one batched verify / draft per iteration): each its solo tokens.
    const together = await Promise.all(prompts.slice(0, 4).map((prompt) => engine.generate(prompt, { maxTokens: 24 }).done()));
    together.forEach((d, p) => expect(d.ids, `stream ${p} in a batch`).toEqual(plain[p]));
    // The same seed, the same tokens: alone, and beside other streams.
    const sample = { maxTokens: 20, temperature: 0.9, topK: 40, seed: 17 };
    const a = await engine.generate(prompts[1], sample).done();
    const [b] = await Promise.all([engine.generate(prompts[1], sample).done(), engine.generate(prompts[2], { ...sample, seed: 3 }).done()]);
    expect(b.ids).toEqual(a.ids);
    // Structured output on the mesh (token masks replicated, logits split over the vocabulary):
    // speculative = plain, and the grammar holds.
    const grammar = { regex: '[a-z]{2,6}( [a-z]{2,6}){0,4}' };
    const gPlain = await engine.generate(prompts[0], { maxTokens: 30, grammar, speculative: false }).done();
    expect((await engine.generate(prompts[0], { maxTokens: 30, grammar }).done()).ids).toEqual(gPlain.ids);
    if (gPlain.reason === 'eos') expect(gPlain.text).toMatch(/^[a-z]{2,6}( [a-z]{2,6}){0,4}$/);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
    expect(engine.stats().cacheCopies).toBe(0);  // the split caches are donated in place too
  });
});

describe('the drafter kept whole on every device (drafterSharding: replicated)', () => {
  it('is lossless on the mesh and holds the whole drafter per device', async () => {
    const target = path.join(MODELS, 'qwen3-f32'), drafter = path.join(MODELS, 'qwen3-f32-dflash');
    const opts = { target, drafter, tensorParallel: 2, pageSize: 8, maxSeqLen: 128, maxSequences: 2, adaptive: false, warmup: false };
    const split = await load(opts);
    const whole = await load({ ...opts, drafterSharding: 'replicated' });
    const prompt = [11, 22, 33, 44, 55, 66, 77];
    const plain = (await whole.generate(prompt, { maxTokens: 24, speculative: false }).done()).ids;
    expect((await whole.generate(prompt, { maxTokens: 24, speculative: { blockSize: 8 } }).done()).ids).toEqual(plain);
    await split.generate(prompt, { maxTokens: 2 }).done();
    const device = (e: Engine) => e.stats().mesh.replicas[0].devices[0];
    const perPage = (e: Engine) => device(e).kvCacheBytes / e.stats().totalPages;
    // The drafter's weights and context cache are whole on each device: more per device than split.
    expect(device(whole).weightBytes).toBeGreaterThan(device(split).weightBytes);
    expect(perPage(whole)).toBeGreaterThan(perPage(split));
  });
});

describe('8 devices: 8 heads, 2 KV heads (each repeated 4x), against one device', () => {
  let dir: string;
  beforeAll(() => {
    dir = tmpDir();
    const t = makeTarget(path.join(dir, 'target'), { vocab: 256, hidden: 64, heads: 8, kvHeads: 2, headDim: 8, intermediate: 96, layers: 2, seed: 41 });
    makeDrafter(path.join(dir, 'drafter'), t, { heads: 8, kvHeads: 2, headDim: 8, intermediate: 64, layers: 1, blockSize: 4, seed: 42 });
  });

  it('logits within f32 tolerance, the same greedy tokens, speculative == plain', async () => {
    const opts = { target: path.join(dir, 'target'), drafter: path.join(dir, 'drafter'), pageSize: 8, maxSeqLen: 96, maxSequences: 2, adaptive: false };
    const one = await load(opts);
    const eight = await load({ ...opts, tensorParallel: 8 });
    expect(eight.stats().mesh.replicas[0].devices.map((d) => d.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
    const [a, b] = await Promise.all([scoreLogits(one, [Int32Array.from(prompt)]), scoreLogits(eight, [Int32Array.from(prompt)])]);
    expect(maxDiff(a.logits[0], b.logits[0])).toBeLessThan(2e-4);
    const want = (await one.generate(prompt, { maxTokens: 24, speculative: false }).done()).ids;
    expect(await compareGreedy(eight, prompt, want, 256, '8 devices')).toBe(0);
    expect((await eight.generate(prompt, { maxTokens: 24 }).done()).ids).toEqual((await eight.generate(prompt, { maxTokens: 24, speculative: false }).done()).ids);
  });
});

describe('data parallelism: replicas of 1 and 2 devices', () => {
  const target = path.join(MODELS, 'qwen3-f32'), drafter = path.join(MODELS, 'qwen3-f32-dflash');
  const prompts = Array.from({ length: 6 }, (_, p) => Array.from({ length: 4 + p * 3 }, (_, i) => (p * 41 + i * 13 + 1) % 256));
  let solo: number[][];
  beforeAll(async () => {
    const one = await load({ target, drafter, pageSize: 8, maxSeqLen: 128, maxSequences: 4 });
    solo = [];
    for (const p of prompts) solo.push((await one.generate(p, { maxTokens: 20 }).done()).ids);
  });

  it.each([[1, 2], [2, 2]])('tensorParallel %i x dataParallel %i: requests spread over the replicas, outputs as one engine', async (tp, dp) => {
    const engine = await load({ target, drafter, tensorParallel: tp, dataParallel: dp, pageSize: 8, maxSeqLen: 128, maxSequences: 2 });
    const mesh = engine.stats().mesh;
    expect(mesh.replicas.map((r) => r.devices.map((d) => d.id))).toEqual(tp === 1 ? [[0], [1]] : [[0, 1], [2, 3]]);
    // Four streams at once: two per replica (each goes to the least loaded).
    const streams = prompts.slice(0, 4).map((p) => engine.generate(p, { maxTokens: 20 }));
    await new Promise((resolve) => setImmediate(resolve));  // generate() submits on the next tick
    expect(engine.stats().mesh.replicas.map((r) => r.submitted)).toEqual([2, 2]);
    const done = await Promise.all(streams.map((s) => s.done()));
    done.forEach((d, i) => expect(d.ids, `stream ${i}`).toEqual(solo[i]));
    // Cancellation reaches the replica that runs the stream; the others finish.
    const ac = new AbortController();
    const cancelled = engine.generate(prompts[4], { maxTokens: 100, signal: ac.signal });
    const other = engine.generate(prompts[5], { maxTokens: 20 });
    await new Promise<void>((resolve) => cancelled.once('token', () => resolve()));
    ac.abort();
    const stopped = await cancelled.done();
    expect(stopped.reason).toBe('abort');
    expect(stopped.ids.length).toBeLessThan(100);
    expect((await other.done()).ids).toEqual(solo[5]);
    const s = engine.stats();
    expect(s.runningSequences).toBe(0);
    expect(s.freePages).toBe(s.totalPages);  // summed over the replicas
    expect(s.totalPages).toBe(s.mesh.replicas.reduce((n, r) => n + r.totalPages, 0));
    expect(s.tokens).toBeGreaterThanOrEqual(4 * 20 + 20);
  });
});

describe('meshes that cannot be made', () => {
  it('names the numbers', async () => {
    const target = path.join(MODELS, 'qwen3-f32');
    await expect(Engine.load({ target, tensorParallel: 3, cacheDir: false })).rejects.toThrow(
      "tensorParallel 3 does not divide the target's 4 attention heads (num_attention_heads)");
    await expect(Engine.load({ target, tensorParallel: 2, devices: [0, 5], cacheDir: false })).rejects.toThrow(
      /device 5 is not one of the cpu plugin's devices \(ids 0, 1[,)]/);
    await expect(Engine.load({ target, tensorParallel: 2, devices: [0], cacheDir: false })).rejects.toThrow(
      "tensorParallel 2 x dataParallel 1 needs 2 devices; 'devices' lists 1 (0)");
    await expect(Engine.load({ target, devices: [0, 0], cacheDir: false } as never)).rejects.toThrow(/lists device 0 twice/);
    await expect(Engine.load({ target, tensorParallel: 0, cacheDir: false })).rejects.toThrow(/tensorParallel/);
  });
});
