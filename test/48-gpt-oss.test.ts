// gpt-oss targets (transformers' GptOssForCausalLM): the config and checkpoint checks, speculative
// decoding with a DFlash drafter equal to plain greedy decoding and to transformers' greedy
// continuation (goldens: tools/oracle/make_goldens.py on the transformers-written fixture), tensor
// parallelism over 2 devices, and the MXFP4 experts as released: kept 4-bit on the device or
// expanded at load, both against transformers' own MXFP4 reader. The logits of every prompt
// position against transformers are in test/13 (page sizes 4 and 16). The drafter is random, so
// its drafts are rejected: what a verify of K tokens computes is the prefill's multi-token path,
// which test/13 checks against transformers position by position.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { targetConfigFromHF } from '../lib/config';
import { Engine } from '../lib/engine';
import { scoreLogits } from '../lib/internal/probe';
import { native } from '../lib/native';
import { readCheckpoint, writeSafetensors } from '../lib/safetensors';
import { draftsAgainstReference } from './helpers/drafter-reference';
import { steeredDraws, totalVariation } from './helpers/distributions';
import { tmpDir } from './helpers/tiny-model';
import { expectClose } from './helpers/oracle-close';

const FIX = path.join(__dirname, 'fixtures');
const MODELS = path.join(FIX, 'models');
const TARGET = path.join(MODELS, 'gpt-oss-f32'), DRAFTER = path.join(MODELS, 'gpt-oss-f32-dflash');
const CONFIG = JSON.parse(fs.readFileSync(path.join(TARGET, 'config.json'), 'utf8'));
const golden = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'gpt-oss-f32.json'), 'utf8')) as {
  cases: { prompt_ids: number[]; logits: number[]; greedy_ids: number[]; router_topk_margin: number }[];
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

describe('config.json', () => {
  it('reads sinks, sliding windows, YaRN, the experts and the clamped SwiGLU', () => {
    const c = targetConfigFromHF(CONFIG, undefined, { moe: true });
    expect(c.family).toBe('gpt_oss');
    expect([c.qkNorm, c.qkvBias, c.oBias, c.attentionSinks]).toEqual([false, true, true, true]);
    expect(c.layerWindows).toEqual([8, null, 8, null]);
    expect(c.ropeYarn).toEqual({ factor: 32, betaFast: 32, betaSlow: 1, originalMaxPositionEmbeddings: 32, truncate: false, attentionFactor: 0.1 * Math.log(32) + 1 });
    expect(c.ropeTheta).toBe(150000);
    expect(c.rmsNormEps).toBe(1e-5);
    expect(c.moe).toMatchObject({ numExperts: 8, numExpertsPerTok: 2, moeIntermediateSize: 32, sparseLayers: [true, true, true, true] });
    expect([c.swigluLimit, c.swigluAlpha]).toEqual([1.5, 1.702]);
  });

  it("takes GptOssConfig's defaults where a key is absent", () => {
    const { layer_types, sliding_window, rope_parameters, rms_norm_eps, ...rest } = CONFIG;
    void layer_types, void sliding_window, void rope_parameters, void rms_norm_eps;
    const c = targetConfigFromHF(rest, undefined, { moe: true });
    expect(c.layerWindows).toEqual([128, null, 128, null]);  // sliding on even layers, window 128
    expect(c.ropeYarn).toMatchObject({ factor: 32, originalMaxPositionEmbeddings: 4096, truncate: false });
    expect([c.ropeTheta, c.rmsNormEps]).toEqual([150000, 1e-5]);
  });

  it('refuses what it does not run, naming the key', () => {
    const bad = (patch: Record<string, unknown>) => () => targetConfigFromHF({ ...CONFIG, ...patch }, 'gpt-oss config.json', { moe: true });
    expect(bad({ layer_types: ['sliding_attention', 'full_attention', 'chunked_attention', 'full_attention'] }))
      .toThrow(/gpt-oss config.json: layer_types.*entry 2 is "chunked_attention"/);
    expect(bad({ layer_types: ['full_attention'] })).toThrow(/layer_types.*one type per layer \(4\)/);
    expect(bad({ attention_bias: false })).toThrow(/attention_bias.*false/);
    expect(bad({ rope_parameters: { ...CONFIG.rope_parameters, mscale: 1 } })).toThrow(/rope_parameters.mscale/);
    expect(bad({ rope_parameters: { rope_type: 'longrope', factor: 2 } })).toThrow(/rope_parameters.*"longrope"/);
  });

  it('a checkpoint whose experts do not match the config is refused naming the tensor', async () => {
    const dir = tmpDir('gpt-oss-mismatch');
    for (const f of fs.readdirSync(TARGET)) fs.copyFileSync(path.join(TARGET, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...CONFIG, intermediate_size: 48 }));
    await expect(Engine.load({ target: dir, cacheDir: false })).rejects.toThrow(/intermediate_size \* 2 96.*model\.layers\.0\.mlp\.experts\.gate_up_proj is \[8, 64, 64\]/);
  });
});

describe('speculative decoding with a DFlash drafter', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await load({ target: TARGET, drafter: DRAFTER, pageSize: 4, maxSeqLen: 160, maxSequences: 4, dtype: 'f32' });
  });

  it('the drafter (attention biases, as the published gpt-oss drafters) drafts as the numpy reference', async () => {
    expect(engine.config.drafter!.attentionBias).toBe(true);
    for (const { n, last, draft, ref } of await draftsAgainstReference(engine, 'drafter_ref.py', DRAFTER, TARGET, 8))
      expect(draft, `context ${n}`).toEqual([last, ...ref.argmax.slice(1)]);
  });

  it('routes with clear margins (the goldens would otherwise not pin the experts)', () => {
    for (const c of golden.cases) expect(c.router_topk_margin).toBeGreaterThan(1e-3);
  });

  it("equals transformers' greedy continuation", async () => {
    for (const c of golden.cases) {
      const done = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length }).done();
      expect(done.ids, `prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
    }
  });

  it('equals plain greedy decoding over prompts that leave the window, run concurrently', async () => {
    const prompts = Array.from({ length: 6 }, (_, p) => Array.from({ length: 3 + p * 9 }, (_, i) => (p * 37 + i * 11 + 3) % 256));
    const plain = await Promise.all(prompts.map((pr) => engine.generate(pr, { maxTokens: 30, speculative: false }).done()));
    const spec = await Promise.all(prompts.map((pr, i) => engine.generate(pr, { maxTokens: 30, speculative: { blockSize: i % 2 ? 4 : 8 } }).done()));
    spec.forEach((s, i) => expect(s.ids, `prompt ${i}`).toEqual(plain[i].ids));
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});

describe('sliding-window rings: the sliding layers keep a fixed ring of pages per sequence', () => {
  // pageSize 4 and prefillChunk 16 (steps of at most 16 tokens, the drafter's block 8 + 1 within
  // it): each ring holds ceil((8 + 16 - 1) / 4) + 1 = 7 pages, 28 positions, so the goldens'
  // sequences (up to 64 positions) wrap it twice.
  const ringed = { target: TARGET, pageSize: 4, prefillChunk: 16, maxSeqLen: 128, maxSequences: 3, dtype: 'f32' as const };
  // Per position of a layer: K and V, 2 KV heads of 16, f32.
  const perLayer = 2 * 2 * 16 * 4;

  it("reports the ring, keeps only full layers in the pages, and decodes transformers' greedy continuation across wraps", async () => {
    const engine = await load({ ...ringed, drafter: DRAFTER });
    const st = engine.stats();
    expect(st.slidingWindow).toEqual({ layers: 2, window: 8, ringPages: 7, bytesPerSequence: 2 * 7 * 4 * perLayer });
    // A page: the target's 2 full layers and the drafter's 2 context layers (not the 4 target layers).
    expect(st.pageBytes).toBe(4 * (2 + 2) * perLayer);
    // A probe has the trash ring only: a sequence longer than one step of this engine is refused.
    await expect(scoreLogits(engine, [Int32Array.from({ length: 24 }, (_, i) => i)])).rejects.toThrow(/24 tokens is longer than one step of this engine \(its sliding-window ring holds 16\)/);
    // Plain decoding here; speculative decoding across wraps is the next test's.
    const runs = await Promise.all(golden.cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: false }).done()));
    runs.forEach((r, i) => expect(r.ids, `prompt of ${golden.cases[i].prompt_ids.length}`).toEqual(golden.cases[i].greedy_ids));
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });

  it('accepted drafts across wraps: speculative = transformers\' greedy with the steered drafter', async () => {
    const engine = await load({ ...ringed, drafter: steeredDrafter(243), adaptive: false });
    const runs = await Promise.all(golden.cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: { blockSize: 8 } }).done()));
    let accepted = 0;
    runs.forEach((r, i) => {
      expect(r.ids, `prompt of ${golden.cases[i].prompt_ids.length}`).toEqual(golden.cases[i].greedy_ids);
      accepted += r.ids.length - r.stats.steps;
    });
    expect(accepted).toBeGreaterThanOrEqual(4);
  });

  it('a prefix-cache hit restores the ring from its snapshot: the output of a full prefill', async () => {
    const cached = await load({ ...ringed, drafter: DRAFTER, maxSeqLen: 160 });
    const full = await load({ ...ringed, drafter: DRAFTER, maxSeqLen: 160, prefixCaching: false });
    const prompt = Array.from({ length: 100 }, (_, i) => (i * 29 + 7) % 256);
    const want = await full.generate(prompt, { maxTokens: 24, speculative: false }).done();
    // (Speculative first: the pages it leaves carry the drafter's context too, which a speculative hit needs.)
    const first = await cached.generate(prompt, { maxTokens: 24, speculative: { blockSize: 8 } }).done();
    const again = await cached.generate(prompt, { maxTokens: 24, speculative: false }).done();
    expect(first.ids).toEqual(want.ids);
    expect(again.ids).toEqual(want.ids);
    expect(again.stats.cachedTokens).toBe(64);  // the snapshot at 64 (whole pages and 64-token chunks)
    // The next turn extends the sequence past its snapshot: resumed at 64, same tokens.
    const turn = [...prompt, ...want.ids, 5, 6, 7];
    const wantTurn = await full.generate(turn, { maxTokens: 16, speculative: false }).done();
    const gotTurn = await cached.generate(turn, { maxTokens: 16, speculative: { blockSize: 8 } }).done();
    expect(gotTurn.ids).toEqual(wantTurn.ids);
    expect(gotTurn.stats.cachedTokens).toBeGreaterThanOrEqual(64);
  });
});

// A drafter that always drafts one token: every weight zero but the norms (one) and the last
// layer's o_proj bias, which adds 20x that token's LM-head row to every block row, so the LM head
// picks it. The targets' greedy continuations repeat 243 in runs of six, so these drafts are
// accepted there and rejected elsewhere: accepted blocks across the sliding window, with sinks, in
// the same program as rejected ones.
function steeredDrafter(token: number): string {
  const dir = tmpDir('gpt-oss-steered');
  fs.copyFileSync(path.join(DRAFTER, 'config.json'), path.join(dir, 'config.json'));
  const H = CONFIG.hidden_size;
  const head = readCheckpoint(TARGET).find((t) => t.name === 'lm_head.weight')!;  // f32 (V, H), untied
  const row = Buffer.alloc(4 * H);
  const fd = fs.openSync(head.file, 'r');
  fs.readSync(fd, row, 0, row.length, head.offset + 4 * H * token);
  fs.closeSync(fd);
  const e = new Float32Array(row.buffer, row.byteOffset, H);
  const last = `layers.${JSON.parse(fs.readFileSync(path.join(DRAFTER, 'config.json'), 'utf8')).num_hidden_layers - 1}.self_attn.o_proj.bias`;
  writeSafetensors(path.join(dir, 'model.safetensors'), readCheckpoint(DRAFTER).map((t) => {
    const data = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
    if (t.name.endsWith('norm.weight')) data.fill(1);
    if (t.name === last) e.forEach((x, i) => { data[i] = 20 * x; });
    return { name: t.name, dtype: 'F32' as const, shape: t.shape, data };
  }));
  return dir;
}

describe('a drafter steered to one token: accepted and rejected drafts', () => {
  // (MXFP4 experts narrow: the path with the most parts; the f32 experts share its attention.)
  it.each([['MXFP4 experts, narrow', path.join(MODELS, 'gpt-oss-mxfp4'), 'gpt-oss-mxfp4']])(
    '%s: speculative = transformers\' greedy, with drafts accepted', async (_, target, name) => {
      const g = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${name}.json`), 'utf8')) as typeof golden;
      const engine = await load({ target, drafter: steeredDrafter(243), pageSize: 4, maxSeqLen: 128, maxSequences: 4, dtype: 'f32', quantizedWeights: 'narrow', adaptive: false });
      const runs = await Promise.all(g.cases.map((c) => engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: { blockSize: 8 } }).done()));
      let accepted = 0;
      runs.forEach((r, i) => {
        expect(r.ids, `prompt of ${g.cases[i].prompt_ids.length}`).toEqual(g.cases[i].greedy_ids);
        accepted += r.ids.length - r.stats.steps;  // each step commits one token plus its accepted drafts
      });
      expect(accepted).toBeGreaterThanOrEqual(4);
      expect(engine.stats().freePages).toBe(engine.stats().totalPages);
    });
});

describe('speculative sampling', () => {
  it("keeps gpt-oss's distribution over two tokens, with the steered drafter's drafts accepted and rejected", async () => {
    // After the 40-token prompt and its first ten greedy tokens comes a run of seven 243s: the
    // target's likeliest next tokens are 243, which the drafter proposes. A sequence's first step is
    // plain (t1); the second verifies [t1, 243, ...], so t2 is an accepted draft or a draw from the
    // residual.
    const engine = await load({ target: TARGET, drafter: steeredDrafter(243), pageSize: 8, maxSeqLen: 128, maxSequences: 2, dtype: 'f32', adaptive: false });
    const c = golden.cases[3], prompt = [...c.prompt_ids, ...c.greedy_ids.slice(0, 10)];
    const N = 400;
    const { first, second, accepted, p1, p2, acceptRate } = await steeredDraws(engine, prompt, 243, N, 1.5, 6);
    expect(p1.get(243)).toBeGreaterThan(0.2);
    expect(acceptRate).toBeGreaterThan(0.05);  // the drafter proposes 243 (q = 1): accepted with probability p(243 | prompt, t1)
    expect(Math.abs(accepted / N - acceptRate)).toBeLessThan(0.05);  // binomial sd ~0.015 here
    expect(totalVariation(first, N, p1)).toBeLessThan(0.12);
    expect(totalVariation(second, N, p2)).toBeLessThan(0.12);
  });
});

// Without batch-invariant numerics a prefill of T tokens with T * k >= E runs every expert on
// every token (the dense kernels) instead of gathering the selected ones.
describe('the dense expert kernels (batchInvariant: false)', () => {
  it.each([['f32 experts', TARGET, 'gpt-oss-f32'], ['MXFP4 experts, narrow', path.join(MODELS, 'gpt-oss-mxfp4'), 'gpt-oss-mxfp4']])(
    "%s: transformers' logits", async (_, target, name) => {
      const g = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${name}.json`), 'utf8')) as typeof golden;
      const engine = await load({ target, pageSize: 8, maxSeqLen: 128, maxSequences: 1, dtype: 'f32', quantizedWeights: 'narrow', batchInvariant: false, warmup: false });
      for (const c of g.cases.slice(2)) {  // 17 and 40 tokens: 34 and 80 expert slots >= 8 experts
        const r = await scoreLogits(engine, [Int32Array.from(c.prompt_ids)]);
        expectClose(r.logits[0], c.logits, `prompt of ${c.prompt_ids.length}`);
      }
    });
});

describe('over 2 devices (tensor parallelism)', () => {
  it('scores within f32 tolerance of transformers, decodes its greedy tokens, speculative == plain', async () => {
    const engine = await load({ target: TARGET, drafter: DRAFTER, tensorParallel: 2, pageSize: 8, maxSeqLen: 128, maxSequences: 2, dtype: 'f32', warmup: false });
    for (const c of golden.cases) {
      const r = await scoreLogits(engine, [Int32Array.from(c.prompt_ids)]);
      expectClose(r.logits[0], c.logits, `prompt of ${c.prompt_ids.length}`);
      const plain = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: false }).done();
      expect(plain.ids).toEqual(c.greedy_ids);
      const spec = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length }).done();
      expect(spec.ids).toEqual(c.greedy_ids);
    }
    // sinks and the experts' columns are split with their heads / intermediate columns
    const per = engine.stats().mesh.replicas[0].devices.map((d) => d.weightBytes);
    expect(new Set(per).size).toBe(1);
  });
});

describe('MXFP4 experts (gpt-oss as released)', () => {
  const MX = path.join(MODELS, 'gpt-oss-mxfp4');
  const mxGolden = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', 'gpt-oss-mxfp4.json'), 'utf8')) as typeof golden;
  const logits: Record<string, Float32Array[]> = {};

  it.each(['narrow', 'dequantize'] as const)("%s: transformers' MXFP4 logits and greedy tokens", async (mode) => {
    const engine = await load({ target: MX, drafter: DRAFTER, pageSize: 4, maxSeqLen: 128, maxSequences: 2, dtype: 'f32', quantizedWeights: mode });
    expect(engine.stats().dtypeReason).toMatch(mode === 'narrow' ? /kept narrow on the device \(mxfp4 g32\)/ : /\(mxfp4 g32\) expanded at load/);
    logits[mode] = [];
    for (const c of mxGolden.cases) {
      const r = await scoreLogits(engine, [Int32Array.from(c.prompt_ids)]);
      expectClose(r.logits[0], c.logits, `prompt of ${c.prompt_ids.length}`);
      logits[mode].push(r.logits[0]);
      const plain = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length, speculative: false }).done();
      expect(plain.ids, `prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
      const spec = await engine.generate(c.prompt_ids, { maxTokens: c.greedy_ids.length }).done();
      expect(spec.ids, `speculative, prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
    }
    if (mode === 'narrow') {
      // The device holds the checkpoint's bytes as they are: e2m1 pairs and E8M0 exponents for
      // the experts (0.53 byte per weight), f32 for the rest (PJRT's buffer sizes).
      const file = path.join(MX, 'model.safetensors');
      const fd = fs.openSync(file, 'r'), head = Buffer.alloc(8);
      fs.readSync(fd, head, 0, 8, 0);
      fs.closeSync(fd);
      const engineTarget = engine.stats().mesh.replicas[0].devices[0].weightBytes - drafterBytes();
      expect(engineTarget).toBe(fs.statSync(file).size - 8 - Number(head.readBigUInt64LE(0)));
      const E = CONFIG.num_local_experts, H = CONFIG.hidden_size, I = CONFIG.intermediate_size;
      const expertBytes = E * (2 * I * H + H * I) * (0.5 + 1 / 32);
      expect(expertBytes / (E * 3 * I * H)).toBeCloseTo(0.53125, 5);
    }
  });

  it('the in-program expansion and the one at load give bit-identical logits', () => {
    expect(logits.narrow).toHaveLength(mxGolden.cases.length);
    logits.narrow.forEach((l, i) => expect(Buffer.from(l.buffer).equals(Buffer.from(logits.dequantize[i].buffer)), `prompt ${i}`).toBe(true));
  });

  it('doctor counts the bytes the engine would hold: MXFP4 narrow, or expanded on the CPU (quantizedWeights auto)', () => {
    const cfg = targetConfigFromHF(JSON.parse(fs.readFileSync(path.join(MX, 'config.json'), 'utf8')), undefined, { moe: true }) as unknown as Record<string, unknown>;
    const E = CONFIG.num_local_experts, H = CONFIG.hidden_size, I = CONFIG.intermediate_size;
    const narrow = native().meshLayout(cfg, undefined, 1, 'cpu', 'f32', 'narrow').weightBytes;
    const auto = native().meshLayout(cfg, undefined, 1, 'cpu', 'f32').weightBytes;
    expect(auto - narrow).toBe(CONFIG.num_hidden_layers * E * 3 * I * H * (4 - 0.5 - 1 / 32));
    expect(native().meshLayout(cfg, undefined, 1, 'cuda', 'f32').weightBytes).toBe(narrow);  // auto keeps it narrow off the CPU
    expect(() => native().meshLayout(cfg, undefined, 2, 'cuda', 'f32')).toThrow(/not whole mxfp4 g32 scale blocks of 32/);
    expect(native().meshLayout(cfg, undefined, 2, 'cpu', 'f32').weightBytes).toBeGreaterThan(0);  // expanded at load: any split
  });

  it('refuses a mesh that would cut a 32-value block, and experts that are not MXFP4, naming them', async () => {
    await expect(Engine.load({ target: MX, tensorParallel: 2, dtype: 'f32', quantizedWeights: 'narrow', cacheDir: false }))
      .rejects.toThrow(/down_proj .*split over 2 devices gives each 16 columns, not whole mxfp4 g32 scale blocks of 32/);
    const dir = tmpDir('gpt-oss-not-mx');
    for (const f of fs.readdirSync(TARGET)) fs.copyFileSync(path.join(TARGET, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...CONFIG, quantization_config: { quant_method: 'mxfp4' } }));
    await expect(Engine.load({ target: dir, cacheDir: false })).rejects.toThrow(/quantization_config says mxfp4 but model\.layers\.0\.mlp\.experts\.down_proj is F32/);
  });
});

// The drafter's weights (f32), which share the device with the target's.
function drafterBytes(): number {
  const file = path.join(DRAFTER, 'model.safetensors');
  const fd = fs.openSync(file, 'r'), head = Buffer.alloc(8);
  fs.readSync(fd, head, 0, 8, 0);
  fs.closeSync(fd);
  return fs.statSync(file).size - 8 - Number(head.readBigUInt64LE(0));
}
