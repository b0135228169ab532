// Qwen3.5 targets (hybrid: Gated DeltaNet + gated attention; issue 23): the config as released
// (the text model under text_config, the vision tower and MTP head left out), the recurrent state
// each sequence keeps beside its KV pages, and speculative decoding equal to plain decoding and to
// transformers' greedy continuation (goldens: tools/oracle/make_goldens.py on the fixture written
// by transformers' Qwen3_5ForConditionalGeneration). The logits of every prompt position against
// transformers are in test/13. A steered drafter gets drafts accepted, so the verify's commit of
// an accepted prefix (a masked second pass of the recurrence) is exercised, not only rejections.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { targetConfigFromHF } from '../lib/config';
import { Engine } from '../lib/engine';
import { scoreLogits } from '../lib/internal/probe';
import { readCheckpoint, writeSafetensors } from '../lib/safetensors';
import { steeredDraws, totalVariation } from './helpers/distributions';
import { tmpDir } from './helpers/tiny-model';
import { expectClose } from './helpers/oracle-close';

const FIX = path.join(__dirname, 'fixtures');
const MODELS = path.join(FIX, 'models');
const TARGET = path.join(MODELS, 'qwen3_5-f32'), DRAFTER = path.join(MODELS, 'qwen3_5-f32-dflash');
const MOE = path.join(MODELS, 'qwen3_5-moe-f32');  // the same text model, every MLP routed experts + a shared expert
const CONFIG = JSON.parse(fs.readFileSync(path.join(TARGET, 'config.json'), 'utf8'));
const golden = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'qwen3_5-f32.json'), 'utf8')) as {
  cases: { prompt_ids: number[]; logits: number[]; greedy_ids: number[] }[];
};

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});
async function load(opts: Parameters<typeof Engine.load>[0]): Promise<Engine> {
  const e = await Engine.load({ cacheDir: false, warmup: false, ...opts });
  engines.push(e);
  return e;
}

describe('config.json', () => {
  it('reads the text model under text_config: layer types, DeltaNet sizes, partial RoPE, tied head', () => {
    const c = targetConfigFromHF(CONFIG);
    expect(c.family).toBe('qwen3_5');
    expect([c.numLayers, c.hiddenSize, c.headDim, c.rotaryDim, c.tieWordEmbeddings, c.qkNorm]).toEqual([4, 64, 32, 8, true, true]);
    expect(c.linearAttention).toEqual({ layers: [true, true, true, false], numKeyHeads: 2, numValueHeads: 4, keyHeadDim: 16, valueHeadDim: 16, convKernel: 4 });
  });

  it("takes Qwen3_5TextConfig's defaults and reads the text-only layout", () => {
    const { layer_types, head_dim, rope_parameters, ...text } = CONFIG.text_config;
    void layer_types, void head_dim, void rope_parameters;
    const c = targetConfigFromHF({ ...text, num_hidden_layers: 8, architectures: ['Qwen3_5ForCausalLM'] });
    expect(c.linearAttention!.layers).toEqual([true, true, true, false, true, true, true, false]);  // full every 4th
    expect([c.headDim, c.rotaryDim]).toEqual([256, 64]);
  });

  it('refuses what it does not run, naming the key', () => {
    const text = (patch: object) => ({ ...CONFIG, text_config: { ...CONFIG.text_config, ...patch } });
    expect(() => targetConfigFromHF(text({ layer_types: ['linear_attention', 'sliding_attention', 'linear_attention', 'full_attention'] })))
      .toThrow(/text_config\.layer_types entry 1 is "sliding_attention"/);
    expect(() => targetConfigFromHF(text({ linear_num_value_heads: 3 }))).toThrow(/text_config\.linear_num_value_heads 3 must be a multiple of linear_num_key_heads 2/);
    expect(() => targetConfigFromHF(text({ attention_bias: true }))).toThrow(/text_config\.attention_bias true is not supported for Qwen3\.5/);
    expect(() => targetConfigFromHF(text({ rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.1 } })))
      .toThrow(/partial_rotary_factor 0\.1 gives 3 rotary dims/);
  });

  it('reads Qwen3.5-MoE: every layer sparse, top k renormalised, the shared expert', () => {
    const c = targetConfigFromHF(JSON.parse(fs.readFileSync(path.join(MOE, 'config.json'), 'utf8')), undefined, { moe: true });
    expect(c.family).toBe('qwen3_5');
    expect(c.moe).toMatchObject({ numExperts: 8, numExpertsPerTok: 2, moeIntermediateSize: 32, normTopkProb: true, sharedExpertIntermediateSize: 48,
      sparseLayers: [true, true, true, true] });
    expect(() => targetConfigFromHF(JSON.parse(fs.readFileSync(path.join(MOE, 'config.json'), 'utf8'))))
      .toThrow(/MoE targets are read .* but this engine does not run them yet/);
  });
});

describe('the engine', () => {
  it('loads the text model only (no warning for the vision tower) and keeps a recurrent state per sequence', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const engine = await load({ target: TARGET, pageSize: 8, maxSeqLen: 128, maxSequences: 3, dtype: 'f32' });
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(warnings.filter((w) => /does not use/.test(w))).toEqual([]);
    const st = engine.stats();
    // 3 DeltaNet layers x (conv window 3 x 128 channels f32 + 4 heads x 16 x 16 f32 state) per slot
    expect(st.recurrentState).toEqual({ layers: 3, bytesPerSequence: 3 * (3 * 128 * 4 + 4 * 16 * 16 * 4), slots: 4 });
    expect(st.prefixCaching).toBe(true);
    expect(st.skippedTensors).toEqual({ 'model.visual': 21 });  // the fixture's one-block vision tower
  });

  it('refuses packed experts, naming the tensor', async () => {
    const dir = tmpDir('qwen3_5-packed');
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(MOE, f), path.join(dir, f));
    writeSafetensors(path.join(dir, 'model.safetensors'), readCheckpoint(MOE).filter((t) => !/experts\.\d+\./.test(t.name)).map((t) => ({
      name: t.name, dtype: 'F32' as const, shape: t.shape, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)),
    })).concat([{ name: 'model.language_model.layers.0.mlp.experts.gate_up_proj', dtype: 'F32' as const, shape: [8, 64, 64], data: new Float32Array(8 * 64 * 64) }]));
    await expect(Engine.load({ target: dir, cacheDir: false })).rejects.toThrow(/packs layer 0's experts \(model\.layers\.0\.mlp\.experts\.gate_up_proj\)/);
  });

  it('refuses a config that does not describe its checkpoint, naming the layer', async () => {
    const dir = tmpDir('qwen3_5-mismatch');
    for (const f of fs.readdirSync(TARGET)) fs.copyFileSync(path.join(TARGET, f), path.join(dir, f));
    const cfg = JSON.parse(JSON.stringify(CONFIG));
    cfg.text_config.layer_types = ['linear_attention', 'linear_attention', 'full_attention', 'linear_attention'];
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expect(Engine.load({ target: dir, cacheDir: false })).rejects.toThrow(/layer 2 is "full_attention" but the checkpoint has no model\.layers\.2\.self_attn\.q_proj\.weight/);
    cfg.text_config.layer_types = CONFIG.text_config.layer_types;
    cfg.text_config.linear_num_value_heads = 8;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expect(Engine.load({ target: dir, cacheDir: false })).rejects.toThrow(/linear_num_value_heads \* linear_value_head_dim 192 does not match the checkpoint: model\.layers\.0\.linear_attn\.in_proj_qkv\.weight is \[128, 64\]/);
  });

  it('runs data-parallel replicas, each with its own states', async () => {
    const engine = await load({ target: TARGET, dataParallel: 2, pageSize: 8, maxSeqLen: 128, maxSequences: 2, dtype: 'f32' });
    const runs = await Promise.all(golden.cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: false }).done()));
    runs.forEach((r, i) => expect(r.ids, `prompt ${i}`).toEqual(golden.cases[i].greedy_ids));
    const submitted = engine.stats().mesh.replicas.map((r) => r.submitted);
    expect(submitted.reduce((a, b) => a + b, 0)).toBe(golden.cases.length);
    expect(Math.min(...submitted)).toBeGreaterThan(0);
  });

  it('decodes concurrent sequences (their states in separate slots) as it decodes each alone, and after preemption', async () => {
    // The states of 4 slots, then 20 pages of 4 positions (K and V of the one attention layer: 2 KV
    // heads of 32, f32): too few for three of these sequences at once.
    const states = 4 * 3 * (3 * 128 * 4 + 4 * 16 * 16 * 4), page = 2 * 4 * 2 * 32 * 4;
    // (Prefix caching off: its state snapshots would take memory too, and a preempted sequence
    // would resume from one, which the prefix-caching test below covers.)
    const engine = await load({ target: TARGET, pageSize: 4, maxSeqLen: 128, maxSequences: 3, dtype: 'f32', kvCacheMemory: states + 20 * page, prefixCaching: false });
    const cases = golden.cases.slice(0, 4);  // prompts of 1 to 40 tokens (the 100-token one would not fit 19 pages)
    const alone = [];
    for (const c of cases) alone.push((await engine.generate(c.prompt_ids, { maxTokens: 24, speculative: false }).done()).ids);
    alone.forEach((ids, i) => expect(ids, `prompt ${i}`).toEqual(cases[i].greedy_ids));
    // (The scheduler publishes its page counts once it has run an iteration.)
    expect(engine.stats().totalPages).toBe(19);  // the 20th is the trash page of padding rows
    expect(engine.stats().pageBytes).toBe(page);
    const together = await Promise.all(cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: 24, speculative: false }).done()));
    together.forEach((d, i) => expect(d.ids, `prompt ${i}`).toEqual(alone[i]));
    expect(engine.stats().preemptions).toBeGreaterThan(0);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});

// A drafter that always drafts one token: every weight zero but the norms (one), and an o_proj
// bias on its last layer (the fixture drafter has none: this copy declares attention_bias, with
// zero q/k/v biases) of 20x that token's embedding row, which the tied LM head then picks. The
// target's greedy continuations repeat 244 in runs of three, so these drafts are accepted there
// and rejected elsewhere.
function steeredDrafter(token: number): string {
  const dir = tmpDir('qwen3_5-steered');
  const cfg = JSON.parse(fs.readFileSync(path.join(DRAFTER, 'config.json'), 'utf8'));
  cfg.attention_bias = true;  // q/k/v/o biases (zero but o_proj's)
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const H = CONFIG.text_config.hidden_size;
  const embed = readCheckpoint(TARGET).find((t) => t.name === 'model.language_model.embed_tokens.weight')!;  // f32 (V, H), tied
  const row = Buffer.alloc(4 * H);
  const fd = fs.openSync(embed.file, 'r');
  fs.readSync(fd, row, 0, row.length, embed.offset + 4 * H * token);
  fs.closeSync(fd);
  const e = new Float32Array(row.buffer, row.byteOffset, H);
  const L = cfg.num_hidden_layers, hd = cfg.head_dim, heads = cfg.num_attention_heads, kvh = cfg.num_key_value_heads;
  const biases = [['q_proj', heads * hd], ['k_proj', kvh * hd], ['v_proj', kvh * hd], ['o_proj', H]] as const;
  const tensors = readCheckpoint(DRAFTER).map((t) => {
    const data = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
    if (t.name.endsWith('norm.weight')) data.fill(1);
    return { name: t.name, dtype: 'F32' as const, shape: t.shape, data };
  });
  for (let l = 0; l < L; l++)
    for (const [proj, n] of biases) {
      const data = new Float32Array(n);
      if (l === L - 1 && proj === 'o_proj') e.forEach((x, i) => { data[i] = 20 * x; });
      tensors.push({ name: `layers.${l}.self_attn.${proj}.bias`, dtype: 'F32' as const, shape: [n], data });
    }
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

describe('speculative decoding', () => {
  // (Qwen3.5-MoE: speculative = plain over 2 devices, below.)
  it('with a random drafter (drafts rejected) equals plain greedy decoding, run concurrently', async () => {
    const engine = await load({ target: TARGET, drafter: DRAFTER, pageSize: 8, maxSeqLen: 128, maxSequences: 4, dtype: 'f32' });
    const prompts = Array.from({ length: 4 }, (_, p) => Array.from({ length: 3 + p * 13 }, (_, i) => (p * 37 + i * 11 + 3) % 256));
    const plain = await Promise.all(prompts.map((pr) => engine.generate(pr, { maxTokens: 24, speculative: false }).done()));
    const spec = await Promise.all(prompts.map((pr, i) => engine.generate(pr, { maxTokens: 24, speculative: { blockSize: i % 2 ? 4 : 8 } }).done()));
    spec.forEach((s, i) => expect(s.ids, `prompt ${i}`).toEqual(plain[i].ids));
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });

  it("with drafts accepted equals transformers' greedy continuation (the state commits the accepted prefix only)", async () => {
    const engine = await load({ target: TARGET, drafter: steeredDrafter(244), pageSize: 4, maxSeqLen: 128, maxSequences: 4, dtype: 'f32' });
    const runs = await Promise.all(golden.cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: { blockSize: 8 } }).done()));
    let accepted = 0, rejectedAfterAccepted = 0;
    runs.forEach((r, i) => {
      expect(r.ids, `prompt of ${golden.cases[i].prompt_ids.length}`).toEqual(golden.cases[i].greedy_ids);
      accepted += r.ids.length - r.stats.steps;  // each step commits one token plus its accepted drafts
      rejectedAfterAccepted += r.stats.steps;
    });
    expect(accepted).toBeGreaterThanOrEqual(4);
    expect(rejectedAfterAccepted).toBeGreaterThan(0);
  });
});

describe('speculative sampling', () => {
  it("keeps the target's distribution over two tokens, with drafts accepted and rejected", async () => {
    // After the 40-token prompt and its first greedy token the target's likeliest next tokens are
    // 244 (which the steered drafter proposes) and others. A sequence's first step is plain (t1);
    // the second verifies [t1, 244, ...], so t2 is an accepted draft or a draw from the residual.
    const engine = await load({ target: TARGET, drafter: steeredDrafter(244), pageSize: 8, maxSeqLen: 128, maxSequences: 4, dtype: 'f32' });
    const c = golden.cases[3], prompt = [...c.prompt_ids, c.greedy_ids[0]];
    const N = 400;
    const { first, second, accepted, p1, p2 } = await steeredDraws(engine, prompt, 244, N, 1.5, 6);
    expect(p1.get(244)).toBeGreaterThan(0.2);
    expect(accepted).toBeGreaterThan(N / 10);
    expect(totalVariation(first, N, p1)).toBeLessThan(0.12);
    expect(totalVariation(second, N, p2)).toBeLessThan(0.12);
  });
});

// Over 2 devices every layer splits by heads: the DeltaNet's [q | k | v] rows regrouped device-major
// at load, its states by value heads, the gated attention's [q | gate] rows kept together.
describe('tensor parallelism over 2 devices', () => {
  it.each([['dense', TARGET, golden], ['MoE', MOE, JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'qwen3_5-moe-f32.json'), 'utf8')) as typeof golden]])(
    "%s: transformers' logits and greedy tokens, speculative = plain, half the weights per device", async (_, target, g) => {
      const engine = await load({ target, drafter: DRAFTER, tensorParallel: 2, pageSize: 8, maxSeqLen: 128, maxSequences: 2, dtype: 'f32' });
      const devices = engine.stats().mesh.replicas[0].devices.map((d) => d.weightBytes);
      expect(devices[0]).toBe(devices[1]);
      expect(devices[0]).toBeLessThan(0.6 * engine.stats().weightBytes);  // split but for the norms and the DeltaNet's small vectors
      const cases = g.cases.slice(3);  // 40 and 100 tokens: past a page, past transformers' chunk of 64
      for (const c of cases) {
        const r = await scoreLogits(engine, [Int32Array.from(c.prompt_ids)]);
        expectClose(r.logits[0], c.logits, `prompt of ${c.prompt_ids.length}`);
      }
      const plain = await Promise.all(cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: 24, speculative: false }).done()));
      plain.forEach((d, i) => expect(d.ids, `prompt ${i}`).toEqual(cases[i].greedy_ids));
      const spec = await Promise.all(cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: 24, speculative: { blockSize: 8 } }).done()));
      spec.forEach((d, i) => expect(d.ids, `prompt ${i}`).toEqual(plain[i].ids));
    });

  it('refuses a mesh the DeltaNet heads do not split over, naming them', async () => {
    await expect(Engine.load({ target: TARGET, tensorParallel: 4, cacheDir: false, maxSeqLen: 64 }))
      .rejects.toThrow(/linear attention key heads \(linear_num_key_heads\)/);
  });
});

// Prefix caching of a hybrid target: a cached prefix is usable only where a snapshot of the state
// after it exists (every 64 tokens, when a step ends there; prefill chunks are cut at those points).
describe('prefill in the chunked form', () => {
  // 200 tokens: three whole chunks of 64 in the chunked form, then 7 positions token by token.
  const prompt = Array.from({ length: 200 }, (_, i) => (i * 37 + 11) % 256);
  const run = async (opts: { prefillChunk?: number; prefillBudget?: number }) => {
    const engine = await load({ target: TARGET, maxSeqLen: 256, maxSequences: 1, dtype: 'f32', prefixCaching: false, ...opts });
    const d = await engine.generate(prompt, { maxTokens: 8, promptLogprobs: 1, speculative: false }).done();
    return { ids: d.ids, lp: d.promptLogprobs!.slice(1).map((t) => t!.logprob) };
  };

  it('gives the log-probabilities of token-by-token prefill within f32 tolerance; splits at multiples of 64 change no bit', async () => {
    const chunked = await run({});                       // one call of 199 positions (K = 256)
    const stepwise = await run({ prefillChunk: 32 });   // calls of 32: no whole chunk, token by token
    const split = await run({ prefillBudget: 64 });     // four calls, each starting on a chunk boundary
    expect(chunked.lp).toHaveLength(199);
    let worst = 0;
    for (let i = 0; i < 199; i++) worst = Math.max(worst, Math.abs(chunked.lp[i] - stepwise.lp[i]));
    expect(worst).toBeLessThan(2e-4);
    expect(worst).toBeGreaterThan(0);  // a different computation, not the token-by-token one
    expect(split.lp).toEqual(chunked.lp);
    expect(split.ids).toEqual(chunked.ids);
  });
});

describe('prefix caching with recurrent states', () => {
  it('resumes a repeated or extended prompt from a state snapshot, with the output of a full prefill', async () => {
    const cached = await load({ target: TARGET, drafter: DRAFTER, pageSize: 8, maxSeqLen: 256, maxSequences: 2, dtype: 'f32' });
    const plainEngine = await load({ target: TARGET, drafter: DRAFTER, pageSize: 8, maxSeqLen: 256, maxSequences: 2, dtype: 'f32', prefixCaching: false });
    const c = golden.cases[4];  // 100 tokens: a snapshot after 64
    for (const speculative of [false, { blockSize: 8 }] as const) {
      const first = await cached.generate(c.prompt_ids, { maxTokens: 24, speculative }).done();
      const again = await cached.generate(c.prompt_ids, { maxTokens: 24, speculative }).done();
      expect(first.ids).toEqual(c.greedy_ids);
      expect(again.ids).toEqual(c.greedy_ids);
      expect(again.stats.cachedTokens).toBe(64);
    }
    // The next turn: the prompt, its answer and more tokens; and a prompt that shares only 30 tokens
    // (no snapshot covers it: computed from the start).
    const turn = [...c.prompt_ids, ...c.greedy_ids, ...Array.from({ length: 10 }, (_, i) => (i * 31) % 256)];
    const other = [...c.prompt_ids.slice(0, 30), ...Array.from({ length: 50 }, (_, i) => (i * 17 + 5) % 256)];
    for (const prompt of [turn, other]) {
      const want = await plainEngine.generate(prompt, { maxTokens: 16, speculative: false }).done();
      const got = await cached.generate(prompt, { maxTokens: 16, speculative: { blockSize: 8 } }).done();
      expect(got.ids).toEqual(want.ids);
      expect(got.stats.cachedTokens).toBe(prompt === turn ? 64 : 0);
    }
    expect(cached.stats().prefixCacheHits).toBeGreaterThanOrEqual(3 * 64);
  });
});
