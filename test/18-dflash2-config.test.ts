// DFlash2 configs and checkpoints (docs/DRAFTERS.md §5), and the numpy reference against z-lab's
// own code: lib/config.ts reads a config with the published DFlash2 drafter's keys into
// DrafterConfig.dflash2, refuses what z-lab's DFlash2DraftModel would read differently, and checks
// the convolution and selector tensors against the config before anything is allocated;
// tools/oracle/drafter2_ref.py (the oracle of the engine's DFlash2 graph in 19-dflash2) reproduces
// the committed logits, greedy walks and sampled q rows of z-lab's DFlash2DraftModel
// (tools/oracle/check_dflash2.py).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { drafterConfigFromHF, targetConfigFromHF } from '../lib/config';
import { checkDrafterTensors } from '../lib/config-checkpoint';
import { readCheckpoint } from '../lib/safetensors';

type Json = Record<string, unknown>;
const ROOT = path.join(__dirname, '..');
const MODELS = path.join(__dirname, 'fixtures', 'models');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;
const readJson = (...p: string[]): Json => JSON.parse(fs.readFileSync(path.join(...p), 'utf8'));
const ENGINE = { slidingWindows: true };

// The keys of z-lab's published DFlash2 drafter config (z-lab/dflash tests/fixtures/dflash2-config.json).
const PUBLISHED: Json = {
  architectures: ['DFlash2DraftModel'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 200000, is_causal: false,
  dflash_config: {
    block_size: 16, conv_group_size: 16, conv_kernel_size: 2, final_logit_softcapping: 20.0, mask_token_id: 201818,
    output_multiplier: 0.19611613513818404, selector_rank: 256, selector_top_k: 16, target_layer_ids: [1, 13, 25, 37, 49],
  },
  dtype: 'bfloat16', eos_token_id: 200001, head_dim: 128, hidden_act: 'silu', hidden_size: 6656, initializer_range: 0.02,
  intermediate_size: 19968, layer_types: new Array(5).fill('sliding_attention'), max_position_embeddings: 131072,
  max_window_layers: 5, model_type: 'qwen3', num_attention_heads: 32, num_hidden_layers: 5, num_key_value_heads: 8,
  num_target_layers: 52, pad_token_id: 200018, rms_norm_eps: 1e-5, rope_parameters: { rope_theta: 500000.0, rope_type: 'default' },
  sliding_window: 2048, tie_word_embeddings: false, use_cache: false, use_sliding_window: true, vocab_size: 202048,
};
// A target of the sizes that drafter implies (hidden 6656, 52 layers, vocabulary 202048).
const TARGET = targetConfigFromHF({
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 6656, intermediate_size: 17920, num_hidden_layers: 52,
  num_attention_heads: 52, num_key_value_heads: 4, head_dim: 128, vocab_size: 202048,
});
const dc = PUBLISHED.dflash_config as Json;
const parse = (cfg: Json) => drafterConfigFromHF(cfg, TARGET, undefined, ENGINE);

describe('DFlash2 configs', () => {
  it('maps the published DFlash2 drafter', () => {
    const d = parse(PUBLISHED);
    expect(d.dflash2).toEqual({
      convKernelSize: 2, convGroupSize: 16, selectorRank: 256, selectorTopK: 16,
      outputMultiplier: 0.19611613513818404, finalLogitSoftcapping: 20, vocabSize: 202048,
    });
    expect(d).toMatchObject({ blockSize: 16, maskTokenId: 201818, targetLayerIds: [1, 13, 25, 37, 49], numLayers: 5, ropeTheta: 500000 });
    expect(d.slidingWindows).toEqual(new Array(5).fill(2048));
  });

  it("reads each key from dflash_config, else from the top level (z-lab's _draft_value)", () => {
    const top = { ...PUBLISHED, conv_kernel_size: 3, selector_top_k: 8, dflash_config: { ...dc, conv_kernel_size: undefined, selector_top_k: undefined } };
    expect(parse(top).dflash2).toMatchObject({ convKernelSize: 3, selectorTopK: 8, selectorRank: 256 });
    const plain = parse({ ...PUBLISHED, dflash_config: { ...dc, output_multiplier: undefined, final_logit_softcapping: null } });
    expect(plain.dflash2).toMatchObject({ outputMultiplier: 1, finalLogitSoftcapping: null });
    expect(parse({ ...PUBLISHED, dflash_config: { ...dc, final_logit_softcapping: 0 } }).dflash2!.finalLogitSoftcapping).toBeNull();
    expect(parse({ ...PUBLISHED, architectures: ['DFlashDraftModel'], dflash_config: { mask_token_id: 1, target_layer_ids: [1], block_size: 16 } }).dflash2).toBeUndefined();
  });

  const cases: [string, Json, RegExp][] = [
    ['a missing size', { ...PUBLISHED, dflash_config: { ...dc, selector_top_k: undefined } }, /'dflash_config\.selector_top_k' is missing \(a DFlash2 drafter needs it\)/],
    ['a group size that does not divide hidden_size', { ...PUBLISHED, dflash_config: { ...dc, conv_group_size: 24 } }, /dflash_config\.conv_group_size 24 must divide hidden_size 6656/],
    ['an absurd top-k', { ...PUBLISHED, dflash_config: { ...dc, selector_top_k: 4096 } }, /'dflash_config\.selector_top_k' is 4096, above the largest supported value 256/],
    ['a non-positive output multiplier', { ...PUBLISHED, dflash_config: { ...dc, output_multiplier: 0 } }, /dflash_config\.output_multiplier 0 must be positive/],
    ['logit_scale', { ...PUBLISHED, logit_scale: 2 }, /logit_scale 2 is not supported/],
    ['sliding layers without is_causal false (z-lab then runs them causal)', { ...PUBLISHED, is_causal: undefined }, /is_causal \(absent\) with sliding-window layers: z-lab's DFlash2 code makes them causal/],
    ['causal layers', { ...PUBLISHED, is_causal: true }, /is_causal true is not supported/],
    ['codebooks of another vocabulary', { ...PUBLISHED, vocab_size: 151936 }, /vocab_size 151936 differs from the target's vocab_size 202048: the selector's codebooks/],
    ['DFlash2 keys at the top level of a DFlash config', { ...PUBLISHED, architectures: ['DFlashDraftModel'], is_causal: false, conv_kernel_size: 2, dflash_config: { mask_token_id: 1, target_layer_ids: [1] } }, /conv_kernel_size is a DFlash2 key, but architectures is not \["DFlash2DraftModel"\]/],
  ];
  for (const [what, cfg, err] of cases) it(`refuses ${what}`, () => expect(() => parse(cfg)).toThrow(err));

  it('refuses a top-k above the target vocabulary', () => {
    const small = targetConfigFromHF({ ...readJson(MODELS, 'qwen3-f32', 'config.json'), vocab_size: 200 });
    const cfg = readJson(MODELS, 'qwen3-f32-dflash2', 'config.json');
    const d = cfg.dflash_config as Json;
    expect(() => drafterConfigFromHF({ ...cfg, vocab_size: 200, dflash_config: { ...d, mask_token_id: 150, selector_top_k: 201 } }, small))
      .toThrow(/dflash_config\.selector_top_k 201 is above the target's vocab_size 200/);
  });
});

describe('DFlash2 configs against their checkpoints', () => {
  const target = targetConfigFromHF(readJson(MODELS, 'qwen3-f32', 'config.json'));
  const cfgOf = (name: string) => readJson(MODELS, name, 'config.json');
  const tensors = (name: string) => readCheckpoint(path.join(MODELS, name));

  it('accepts the fixtures', () => {
    for (const name of ['qwen3-f32-dflash2', 'qwen3-f32-dflash2-swa'])
      expect(() => checkDrafterTensors(drafterConfigFromHF(cfgOf(name), target, undefined, ENGINE), tensors(name), name)).not.toThrow();
  });

  it('names a missing convolution tensor and a size the checkpoint contradicts', () => {
    const d = drafterConfigFromHF(cfgOf('qwen3-f32-dflash2'), target);
    const t = tensors('qwen3-f32-dflash2');
    expect(() => checkDrafterTensors(d, t.filter((x) => x.name !== 'layers.1.mlp_conv.base_kernel'), 'd/config.json'))
      .toThrow(/d\/config\.json: architectures DFlash2DraftModel needs the tensor layers\.1\.mlp_conv\.base_kernel/);
    expect(() => checkDrafterTensors({ ...d, dflash2: { ...d.dflash2!, convKernelSize: 3 } }, t, 'd/config.json'))
      .toThrow(/dflash_config\.conv_kernel_size does not match the checkpoint: layers\.0\.attention_conv\.base_kernel is \[2, 2, 64\], expected \[2, 3, 64\]/);
    expect(() => checkDrafterTensors({ ...d, dflash2: { ...d.dflash2!, selectorRank: 32 } }, t, 'd/config.json'))
      .toThrow(/dflash_config\.selector_rank does not match the checkpoint: candidate_selector\.hidden_projection\.weight is \[16, 64\]/);
  });
});

interface Golden {
  target: string;
  features: number[][];
  cases: { drafter: string; steps: number[]; last_token: number; block_size: number; logits: number[]; draft: number[];
    temperature: number; path: number[]; q: Record<string, number>[] }[];
}
const golden: Golden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'dflash2-zlab.json'), 'utf8'));

function reference(c: Golden['cases'][number]): { logits: number[][]; argmax: number[]; draft: number[]; q: Record<string, number>[] } {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dflash2-golden-')), 'case.json');
  const ctx = c.steps[c.steps.length - 1];
  fs.writeFileSync(file, JSON.stringify({ features: golden.features.slice(0, ctx), last_token: c.last_token, block_size: c.block_size, temperature: c.temperature, path: c.path }));
  const out = execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', 'drafter2_ref.py'), '--drafter', path.join(MODELS, c.drafter),
    '--target', path.join(MODELS, golden.target), '--input', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

describe("the numpy DFlash2 reference against z-lab's DFlash2DraftModel", () => {
  let walkLeftArgmax = 0;
  for (const c of golden.cases) {
    it(`${c.drafter}, block ${c.block_size}, context fed as ${JSON.stringify(c.steps)}`, () => {
      const ref = reference(c);
      const flat = ref.logits.flat();
      expect(flat.length).toBe(c.logits.length);
      expect(flat.reduce((m, x, i) => Math.max(m, Math.abs(x - c.logits[i])), 0)).toBeLessThan(1e-4);
      expect(ref.draft).toEqual(c.draft);
      c.q.forEach((row, i) => {
        expect(Object.keys(ref.q[i]).sort()).toEqual(Object.keys(row).sort());  // the same candidates
        for (const [t, p] of Object.entries(row)) expect(Math.abs(ref.q[i][t] - p), `q row ${i + 1}, token ${t}`).toBeLessThan(1e-5);
      });
      walkLeftArgmax += c.draft.filter((t, i) => t !== ref.argmax[i + 1]).length;
    });
  }

  it('the goldens exercise the selector: z-lab\'s walk often leaves the per-row argmax', () => {
    expect(walkLeftArgmax).toBeGreaterThan(20);
  });
});
