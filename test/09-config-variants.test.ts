// Drafter and target config variants (issue #13) and config bounds (issue #10.5): the speculators
// format of a drafter maps to the identical DrafterConfig; absent target_layer_ids are derived as
// z-lab's build_target_layer_ids does (checked against Python's own round()); sliding windows as
// transformers' Qwen3Config derives them; Qwen3-MoE targets with either expert-count key; and every
// absurd or unsupported value fails before allocation with the file, the key and the value.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { defaultTargetLayerIds, drafterConfigFromHF, LIMITS, targetConfigFromHF, targetConfigFromHF as parseTarget } from '../lib/config';
import { checkDrafterTensors, checkTargetTensors } from '../lib/config-checkpoint';
import { readCheckpoint } from '../lib/safetensors';
import { toSpeculatorsConfig } from './helpers/speculators';

type Json = Record<string, unknown>;
const ROOT = path.join(__dirname, '..');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;
const readJson = (...p: string[]): Json => JSON.parse(fs.readFileSync(path.join(ROOT, ...p), 'utf8'));
const without = (o: Json, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

const PAIR_TARGET = readJson('models', 'code-pair', 'target', 'config.json');
const PAIR_DRAFTER = readJson('models', 'code-pair', 'drafter', 'config.json');
const pairTarget = targetConfigFromHF(PAIR_TARGET);

// Shapes of Qwen/Qwen3-30B-A3B and Qwen3-Coder-30B-A3B (a Qwen3-MoE target, hub key names).
const QWEN3_30B_A3B: Json = {
  architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', attention_bias: false, decoder_sparse_step: 1,
  eos_token_id: 151645, head_dim: 128, hidden_act: 'silu', hidden_size: 2048, intermediate_size: 6144,
  max_position_embeddings: 40960, max_window_layers: 48, mlp_only_layers: [], moe_intermediate_size: 768,
  norm_topk_prob: true, num_attention_heads: 32, num_experts: 128, num_experts_per_tok: 8, num_hidden_layers: 48,
  num_key_value_heads: 4, output_router_logits: false, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000,
  router_aux_loss_coef: 0.001, sliding_window: null, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  use_sliding_window: false, vocab_size: 151936,
};

describe('speculators format', () => {
  it('the shipped drafter converted to speculators maps to the identical DrafterConfig', () => {
    const zlab = drafterConfigFromHF(PAIR_DRAFTER, pairTarget);
    expect(drafterConfigFromHF(toSpeculatorsConfig(PAIR_DRAFTER, 'models/code-pair/target'), pairTarget)).toEqual(zlab);
    // As saved by speculators with transformers 4.x (default-valued keys dropped from transformer_layer_config).
    const diff = toSpeculatorsConfig(PAIR_DRAFTER, 'models/code-pair/target', { diffDict: true });
    expect((diff.transformer_layer_config as Json).rope_theta).toBeUndefined();
    expect(drafterConfigFromHF(diff, pairTarget)).toEqual(zlab);
  });

  it('counts aux_hidden_state_layer_ids from 1 (z-lab id + 1)', () => {
    const s = toSpeculatorsConfig(PAIR_DRAFTER, 't');
    expect(s.aux_hidden_state_layer_ids).toEqual([2, 4, 5]);
    expect(drafterConfigFromHF({ ...s, aux_hidden_state_layer_ids: [1, 6] }, pairTarget).targetLayerIds).toEqual([0, 5]);
    expect(() => drafterConfigFromHF({ ...s, aux_hidden_state_layer_ids: [0, 3] }, pairTarget)).toThrow(/aux_hidden_state_layer_ids entry 0 is not a layer output/);
    expect(() => drafterConfigFromHF({ ...s, aux_hidden_state_layer_ids: [7] }, pairTarget)).toThrow(/aux_hidden_state_layer_ids entry 7 is outside the target's 6 layers \(ids 1\.\.6\)/);
  });

  const s = () => toSpeculatorsConfig(PAIR_DRAFTER, 't');
  const tl = () => s().transformer_layer_config as Json;
  const errors: [string, () => Json, RegExp][] = [
    ['another speculator algorithm', () => ({ ...s(), speculators_model_type: 'eagle3' }), /speculators_model_type "eagle3" is not supported \(dflash only\)/],
    ['a reduced draft vocabulary', () => ({ ...s(), draft_vocab_size: 1024 }), /draft_vocab_size 1024 differs from the target's vocab_size 4096: reduced draft vocabularies \(d2t\) are not supported/],
    ['sampling from the anchor', () => ({ ...s(), sample_from_anchor: true }), /sample_from_anchor true is not supported/],
    ['a missing mask_token_id', () => without(s(), 'mask_token_id'), /'mask_token_id' is missing/],
    ['a missing aux_hidden_state_layer_ids', () => without(s(), 'aux_hidden_state_layer_ids'), /'aux_hidden_state_layer_ids' is missing/],
    ['a Llama transformer_layer_config', () => ({ ...s(), transformer_layer_config: { ...tl(), model_type: 'llama' } }), /transformer_layer_config\.model_type "llama" is not supported/],
    ['a hidden size of the wrong target', () => ({ ...s(), transformer_layer_config: { ...tl(), hidden_size: 512 } }), /transformer_layer_config\.hidden_size 512 differs from the target's hidden_size 256/],
    ['a bad nested key, named with its path', () => ({ ...s(), transformer_layer_config: { ...tl(), num_key_value_heads: 3 } }), /transformer_layer_config\.num_key_value_heads 3 must divide num_attention_heads 4/],
    ['speculators sliding-window layers (a different window)', () => ({ ...s(), transformer_layer_config: { ...tl(), use_sliding_window: true, sliding_window: 64, layer_types: ['sliding_attention', 'full_attention'] } }), /transformer_layer_config\.layer_types has sliding-window layers: speculators trains a different window/],
    ['a block_size above the limit', () => ({ ...s(), block_size: 100000 }), /'block_size' is 100000, above the largest supported value 64/],
  ];
  for (const [what, cfg, err] of errors) it(`rejects ${what}`, () => expect(() => drafterConfigFromHF(cfg(), pairTarget)).toThrow(err));
});

describe('derived target_layer_ids', () => {
  it("equal z-lab's build_target_layer_ids computed by Python (its round() is half-to-even)", () => {
    const pairs: [number, number][] = [];
    for (let L = 4; L <= 96; L += 1) for (const n of [1, 2, 3, 4, 5, 6, 7, 8]) pairs.push([L, n]);
    // The reference's formula, evaluated by Python itself: n == 1 -> [L // 2];
    // else [int(round(1 + i * (L - 4) / (n - 1))) for i in range(n)].
    const script = 'import json,sys\nprint(json.dumps([[L//2] if n==1 else [int(round(1+i*(L-4)/(n-1))) for i in range(n)] for L,n in json.load(sys.stdin)]))';
    const want = JSON.parse(execFileSync(PYTHON, ['-c', script], { input: JSON.stringify(pairs), encoding: 'utf8' })) as number[][];
    const got = pairs.map(([L, n]) => defaultTargetLayerIds(L, n));
    expect(got).toEqual(want);
    expect(want.some((ids, i) => ids.some((x, j) => x !== Math.round(1 + (j * (pairs[i][0] - 4)) / (pairs[i][1] - 1))))).toBe(true);  // ties exist
  });

  it('are used when target_layer_ids is absent, from num_target_layers and the drafter\'s own depth', () => {
    const dc = { mask_token_id: 4095 };
    for (const layers of [1, 2, 3]) {
      const d = drafterConfigFromHF({ ...PAIR_DRAFTER, num_hidden_layers: layers, dflash_config: dc }, pairTarget);
      expect(d.targetLayerIds).toEqual(defaultTargetLayerIds(6, layers));
    }
    expect(() => drafterConfigFromHF({ ...PAIR_DRAFTER, num_target_layers: 7, dflash_config: dc }, pairTarget)).toThrow(/num_target_layers 7 differs from the target's num_hidden_layers 6/);
  });
});

describe('sliding-window drafter layers', () => {
  const windows = (extra: Json, base: Json = PAIR_DRAFTER) => drafterConfigFromHF({ ...base, ...extra }, pairTarget, undefined, { slidingWindows: true }).slidingWindows;
  const five = { num_hidden_layers: 5 };
  const SSSSF = ['sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention', 'full_attention'];

  it('exist only with use_sliding_window: true (Qwen3Config drops sliding_window otherwise)', () => {
    expect(windows({ ...five, layer_types: SSSSF, sliding_window: 2048 })).toEqual([null, null, null, null, null]);
    expect(windows({ ...five, layer_types: SSSSF, sliding_window: 2048, use_sliding_window: true })).toEqual([2048, 2048, 2048, 2048, null]);
  });

  it('default to 4096 when sliding_window is absent, and vanish when it is null', () => {
    expect(windows({ ...five, layer_types: SSSSF, use_sliding_window: true }, without(PAIR_DRAFTER, 'sliding_window'))).toEqual([4096, 4096, 4096, 4096, null]);
    expect(windows({ ...five, layer_types: SSSSF, use_sliding_window: true, sliding_window: null })).toEqual([null, null, null, null, null]);
  });

  it('without layer_types, apply to layers i >= max_window_layers (default 28)', () => {
    expect(windows({ ...five, use_sliding_window: true, sliding_window: 8, max_window_layers: 2 })).toEqual([null, null, 8, 8, 8]);
    expect(windows({ ...five, use_sliding_window: true, sliding_window: 8 }, without(PAIR_DRAFTER, 'max_window_layers'))).toEqual([null, null, null, null, null]);
  });

  it('are refused until the engine runs them (full attention instead would draft badly), by name', () => {
    expect(() => drafterConfigFromHF({ ...PAIR_DRAFTER, ...five, layer_types: SSSSF, sliding_window: 2048, use_sliding_window: true }, pairTarget))
      .toThrow(/drafter config\.json: use_sliding_window true with sliding-window layers \(windows \[2048,2048,2048,2048,null\]\): read, but this engine does not run them yet/);
    expect(() => drafterConfigFromHF({ ...PAIR_DRAFTER, ...five, layer_types: SSSSF, sliding_window: 2048 }, pairTarget)).not.toThrow();  // no window without use_sliding_window
  });

  it('are all null for the shipped drafter', () => {
    expect(drafterConfigFromHF(PAIR_DRAFTER, pairTarget).slidingWindows).toEqual([null, null]);
  });

  const errors: [string, Json, RegExp][] = [
    ['another layer type', { ...five, use_sliding_window: true, layer_types: [...SSSSF.slice(0, 4), 'chunked_attention'] }, /layer_types\[4\] "chunked_attention" is not supported/],
    ['layer_types of the wrong length', { ...five, layer_types: SSSSF.slice(1) }, /'layer_types' must list one type per layer \(5; got/],
    ['a zero window', { use_sliding_window: true, sliding_window: 0, layer_types: ['sliding_attention', 'full_attention'] }, /'sliding_window' must be an integer >= 1 \(got 0\)/],
    ['a window beyond int32 positions', { use_sliding_window: true, sliding_window: 2 ** 30, layer_types: ['sliding_attention', 'full_attention'] }, /'sliding_window' is 1073741824, above the largest supported value 67108864/],
    ['a non-boolean use_sliding_window', { use_sliding_window: 'yes' }, /'use_sliding_window' must be true or false \(got "yes"\)/],
  ];
  for (const [what, extra, err] of errors) it(`rejects ${what}`, () => expect(() => windows(extra)).toThrow(err));

  it('are refused for a target (full attention only)', () => {
    expect(() => targetConfigFromHF({ ...PAIR_TARGET, use_sliding_window: true })).toThrow(/use_sliding_window true is not supported for a target/);
  });
});

describe('quantized targets', () => {
  it('read the schemes kept narrow (test/47 runs them) and refuse the others by name', () => {
    expect(() => targetConfigFromHF({ ...PAIR_TARGET, quantization_config: { quant_method: 'awq', bits: 4 } }))
      .toThrow(/quantization_config\.group_size undefined must be a positive integer/);
    expect(() => targetConfigFromHF({ ...PAIR_TARGET, quantization_config: { quant_method: 'gptq', bits: 4 } }))
      .toThrow(/quantization_config\.quant_method "gptq" is not supported yet/);
    expect(() => targetConfigFromHF({ ...PAIR_TARGET, quantization_config: { quant_method: 'bitsandbytes' } }))
      .toThrow(/quantization_config\.quant_method "bitsandbytes" is not supported \(compressed-tensors or fp8\)/);
    expect(() => targetConfigFromHF({ ...PAIR_TARGET, quantization_config: { quant_method: 'fp8', fmt: 'e4m3' } }))
      .toThrow(/quantization_config\.weight_block_size undefined must be two positive integers/);
    expect(targetConfigFromHF({ ...PAIR_TARGET, quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128] } }).quant)
      .toMatchObject({ payload: 'fp8', blockRows: 128, blockCols: 128 });
    expect(targetConfigFromHF({ ...PAIR_TARGET, quantization_config: null }).quant).toBeNull();
  });
});

describe('attention biases', () => {
  // Qwen2.5-0.5B-Instruct's config.json (the keys that matter here).
  const QWEN25_05B: Json = {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
    num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1000000.0,
    max_position_embeddings: 32768, max_window_layers: 21, use_sliding_window: false, sliding_window: 32768,
    tie_word_embeddings: true, torch_dtype: 'bfloat16', bos_token_id: 151643, eos_token_id: 151645,
  };

  it("Qwen2: q/k/v with biases, o without, no q/k norms, head_dim = hidden / heads (transformers' Qwen2Attention)", () => {
    expect(parseTarget(QWEN25_05B)).toMatchObject({ family: 'qwen2', headDim: 64, qkNorm: false, qkvBias: true, oBias: false, tieWordEmbeddings: true });
    expect(() => parseTarget({ ...QWEN25_05B, use_sliding_window: true })).toThrow(/use_sliding_window true is not supported for a target/);
  });

  it('Qwen3 and Llama: attention_bias puts a bias on all four projections; mlp_bias is refused by name', () => {
    expect(parseTarget(PAIR_TARGET)).toMatchObject({ qkvBias: false, oBias: false });
    expect(parseTarget({ ...PAIR_TARGET, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true });
    const llama = readJson('test', 'fixtures', 'models', 'llama-f32', 'config.json');
    expect(parseTarget({ ...llama, attention_bias: true })).toMatchObject({ family: 'llama', qkvBias: true, oBias: true });
    expect(() => parseTarget({ ...llama, mlp_bias: true })).toThrow(/mlp_bias true is not supported/);
  });
});

describe('Qwen3-MoE targets', () => {
  const targetConfigFromHF = (cfg: Json) => parseTarget(cfg, undefined, { moe: true });

  it('are refused until the engine runs them, by name', () => {
    expect(() => parseTarget(QWEN3_30B_A3B)).toThrow(/target config\.json: model_type "qwen3_moe": MoE targets are read \(lib\/config\.ts\) but this engine does not run them yet/);
  });

  it('maps Qwen3-30B-A3B (hub key num_experts)', () => {
    const t = targetConfigFromHF(QWEN3_30B_A3B);
    expect(t).toMatchObject({ family: 'qwen3_moe', hiddenSize: 2048, numLayers: 48, numHeads: 32, numKvHeads: 4, headDim: 128, qkNorm: true, intermediateSize: 6144 });
    expect(t.moe).toEqual({
      numExperts: 128, numExpertsPerTok: 8, moeIntermediateSize: 768, normTopkProb: true, decoderSparseStep: 1,
      mlpOnlyLayers: [], sparseLayers: new Array(48).fill(true),
    });
  });

  it('reads num_local_experts (transformers 5 save_pretrained) the same as num_experts', () => {
    const v5 = { ...without(QWEN3_30B_A3B, 'num_experts'), num_local_experts: 128 };
    expect(targetConfigFromHF(v5)).toEqual(targetConfigFromHF(QWEN3_30B_A3B));
    expect(targetConfigFromHF({ ...v5, num_experts: 128 }).moe?.numExperts).toBe(128);
    expect(() => targetConfigFromHF({ ...v5, num_experts: 64 })).toThrow(/num_experts 64 differs from num_local_experts 128/);
  });

  it("places dense layers by mlp_only_layers and decoder_sparse_step (transformers' rule)", () => {
    const t = targetConfigFromHF({ ...QWEN3_30B_A3B, num_hidden_layers: 6, decoder_sparse_step: 2, mlp_only_layers: [3] });
    expect(t.moe?.sparseLayers).toEqual([false, true, false, false, false, true]);
    expect(targetConfigFromHF({ ...QWEN3_30B_A3B, num_hidden_layers: 3, mlp_only_layers: [0] }).moe?.sparseLayers).toEqual([false, true, true]);
  });

  it("fills Qwen3MoeConfig's defaults, head_dim = hidden / heads included (unlike dense Qwen3's 128)", () => {
    const bare = without(QWEN3_30B_A3B, 'num_experts', 'num_experts_per_tok', 'moe_intermediate_size', 'norm_topk_prob', 'decoder_sparse_step', 'mlp_only_layers', 'head_dim');
    const t = targetConfigFromHF(bare);
    expect(t.headDim).toBe(64);
    expect(t.moe).toMatchObject({ numExperts: 128, numExpertsPerTok: 8, moeIntermediateSize: 768, normTopkProb: false, decoderSparseStep: 1, mlpOnlyLayers: [] });
  });

  it('maps the committed transformers-written fixtures', () => {
    for (const name of ['qwen3-moe-f32', 'qwen3-moe-mixed-f32']) {
      const cfg = readJson('test', 'fixtures', 'models', name, 'config.json');
      expect(cfg.num_local_experts).toBeDefined();  // written by transformers 5
      const t = targetConfigFromHF(cfg);
      expect(t.family).toBe('qwen3_moe');
      expect(t.moe!.numExperts).toBe(cfg.num_local_experts);
    }
  });

  const errors: [string, Json, RegExp][] = [
    ['more active experts than experts', { ...QWEN3_30B_A3B, num_experts_per_tok: 129 }, /'num_experts_per_tok' is 129, above the largest supported value 128/],
    ['an mlp_only_layers entry out of range', { ...QWEN3_30B_A3B, mlp_only_layers: [48] }, /mlp_only_layers entry 48 is outside the 48 layers/],
    ['a shared expert (Qwen2-MoE)', { ...QWEN3_30B_A3B, shared_expert_intermediate_size: 5632 }, /shared_expert_intermediate_size 5632: Qwen3-MoE has no shared expert/],
    ['experts too big to stack', { ...QWEN3_30B_A3B, num_experts: 1024, moe_intermediate_size: 4096 }, /num_experts \* moe_intermediate_size \* hidden_size make the stacked experts of a layer 1024 x 4096 x 2048 = 8589934592 elements/],
    ['a zero decoder_sparse_step', { ...QWEN3_30B_A3B, decoder_sparse_step: 0 }, /'decoder_sparse_step' must be an integer >= 1 \(got 0\)/],
  ];
  for (const [what, cfg, err] of errors) it(`rejects ${what}`, () => expect(() => targetConfigFromHF(cfg)).toThrow(err));
});

describe('config bounds (issue #10.5): the file, the key and the value, before any allocation', () => {
  const FILE = '/models/x/config.json';
  const t = (cfg: unknown) => () => targetConfigFromHF(cfg as Json, FILE);
  const d = (cfg: Json) => () => drafterConfigFromHF(cfg, pairTarget, FILE);

  const cases: [string, () => unknown, RegExp][] = [
    ['a null config', t(null), /^\/models\/x\/config\.json: not a JSON object \(got null\)$/],
    ['a config that is a list', t([1]), /config\.json: not a JSON object \(got an array\)/],
    ['hidden_size 2^40', t({ ...PAIR_TARGET, hidden_size: 2 ** 40 }), /^\/models\/x\/config\.json: 'hidden_size' is 1099511627776, above the largest supported value 65536$/],
    ['head_dim 2^31', t({ ...PAIR_TARGET, head_dim: 2 ** 31 }), /config\.json: 'head_dim' is 2147483648, above the largest supported value 512/],
    ['an odd head_dim', t({ ...PAIR_TARGET, head_dim: 63 }), /config\.json: head_dim 63 must be even/],
    ['num_hidden_layers 1e9', t({ ...PAIR_TARGET, num_hidden_layers: 1e9 }), /config\.json: 'num_hidden_layers' is 1000000000, above the largest supported value 1024/],
    ['vocab_size 2^23', t({ ...PAIR_TARGET, vocab_size: 2 ** 23 }), /'vocab_size' is 8388608, above the largest supported value 4194304/],
    ['an embedding over 2^31 elements', t({ ...PAIR_TARGET, vocab_size: 2 ** 22, hidden_size: 2 ** 10, head_dim: 256 }), /vocab_size \* hidden_size make embed_tokens \/ lm_head 4194304 x 1024 = 4294967296 elements, above the 2\^31 - 1/],
    ['an MLP over 2^31 elements', t({ ...PAIR_TARGET, hidden_size: 65536, intermediate_size: 65536 }), /intermediate_size \* hidden_size make gate_proj \/ up_proj \/ down_proj/],
    ['max_position_embeddings 2^40', t({ ...PAIR_TARGET, max_position_embeddings: 2 ** 40 }), /'max_position_embeddings' is 1099511627776, above the largest supported value 67108864/],
    ['a zero rms_norm_eps', t({ ...PAIR_TARGET, rms_norm_eps: 0 }), /rms_norm_eps 0 must be in \(0, 1\)/],
    ['a negative rope_theta', t({ ...PAIR_TARGET, rope_theta: -1 }), /rope_theta -1 must be positive/],
    ['a drafter block_size of 100000', d({ ...PAIR_DRAFTER, block_size: 100000 }), /^\/models\/x\/config\.json: 'block_size' is 100000, above the largest supported value 64$/],
    ['a drafter head_dim of 2^31', d({ ...PAIR_DRAFTER, head_dim: 2 ** 31 }), /'head_dim' is 2147483648/],
    ['65 target layers', d({ ...PAIR_DRAFTER, dflash_config: { mask_token_id: 1, target_layer_ids: new Array(65).fill(1) } }), /'dflash_config\.target_layer_ids' has 65 entries, above the largest supported 64/],
  ];
  for (const [what, fn, err] of cases) it(`rejects ${what}`, () => expect(fn).toThrow(err));

  it('keeps every published shape inside the limits', () => {
    expect(() => targetConfigFromHF(QWEN3_30B_A3B, undefined, { moe: true })).not.toThrow();
    expect(LIMITS.blockSize).toBeGreaterThanOrEqual(16);
  });
});

describe('drafter variants dflash does not run are refused by name', () => {
  const dc = PAIR_DRAFTER.dflash_config as Json;
  const cases: [string, Json, RegExp][] = [
    ['DFlash2 keys under the DFlash architecture', { ...PAIR_DRAFTER, dflash_config: { ...dc, selector_rank: 8 } }, /dflash_config\.selector_rank is a DFlash2 key, but architectures is not \["DFlash2DraftModel"\]/],
    ['causal drafter layers', { ...PAIR_DRAFTER, is_causal: true }, /is_causal true is not supported/],
    ['dflash_config.causal', { ...PAIR_DRAFTER, dflash_config: { ...dc, causal: true } }, /dflash_config\.causal true is not supported/],
    ["vLLM's use_swa", { ...PAIR_DRAFTER, dflash_config: { ...dc, use_swa: true } }, /dflash_config\.use_swa true is not supported/],
    ['an attention sink', { ...PAIR_DRAFTER, dflash_config: { ...dc, attention_sink_bias: true } }, /dflash_config\.attention_sink_bias true is not supported/],
    ['logit soft-capping', { ...PAIR_DRAFTER, final_logit_softcapping: 30 }, /final_logit_softcapping 30 is not supported/],
    ['an output multiplier', { ...PAIR_DRAFTER, dflash_config: { ...dc, output_multiplier: 1.25 } }, /dflash_config\.output_multiplier 1\.25 is not supported/],
    ['a quantized drafter of a scheme dflash does not run', { ...PAIR_DRAFTER, quantization_config: { quant_method: 'gptq' } }, /quantization_config\.quant_method "gptq" is not supported yet/],
    ['a reduced draft vocabulary', { ...PAIR_DRAFTER, draft_vocab_size: 2048 }, /draft_vocab_size 2048 differs from the target's vocab_size 4096/],
  ];
  for (const [what, cfg, err] of cases) it(`rejects ${what}`, () => expect(() => drafterConfigFromHF(cfg, pairTarget)).toThrow(err));

  it('accepts the neutral values of those keys', () => {
    expect(() => drafterConfigFromHF({ ...PAIR_DRAFTER, is_causal: false, output_multiplier: 1, draft_vocab_size: 4096, final_logit_softcapping: null, dflash_config: { ...dc, use_swa: false } }, pairTarget)).not.toThrow();
  });
});

describe('configs against their checkpoints (headers only, before any allocation)', () => {
  const FIX = path.join(ROOT, 'test', 'fixtures', 'models');
  const cfgOf = (name: string): Json => readJson('test', 'fixtures', 'models', name, 'config.json');
  const tensors = (name: string) => readCheckpoint(path.join(FIX, name));

  it('accept the fixtures as written', () => {
    for (const name of ['qwen3-f32', 'qwen3-bf16-tied', 'llama-f32']) expect(() => checkTargetTensors(targetConfigFromHF(cfgOf(name)), tensors(name))).not.toThrow();
    for (const name of ['qwen3-moe-f32', 'qwen3-moe-mixed-f32'])
      expect(() => checkTargetTensors(targetConfigFromHF(cfgOf(name), undefined, { moe: true }), tensors(name))).not.toThrow();
    const t = targetConfigFromHF(cfgOf('qwen3-f32'));
    expect(() => checkDrafterTensors(drafterConfigFromHF(cfgOf('qwen3-f32-dflash'), t), tensors('qwen3-f32-dflash'))).not.toThrow();
  });

  const target = (over: Json, name = 'qwen3-f32', caps = {}) => () => checkTargetTensors(targetConfigFromHF({ ...cfgOf(name), ...over }, undefined, caps), tensors(name), 'x/config.json');
  const cases: [string, () => void, RegExp][] = [
    ['a vocab_size its embedding does not have', target({ vocab_size: 300 }), /^x\/config\.json: vocab_size 300 does not match the checkpoint: model\.embed_tokens\.weight is \[256, 64\] \(dim 0 should be 300\)$/],
    ['a layer count the checkpoint does not hold', target({ num_hidden_layers: 3 }), /num_hidden_layers 3 does not match the checkpoint, which holds 2 layers/],
    ['a head_dim its q_proj does not have', target({ head_dim: 32 }), /num_attention_heads \* head_dim 128 does not match the checkpoint: model\.layers\.0\.self_attn\.q_proj\.weight is \[64, 64\]/],
    ['an expert count the checkpoint does not hold', target({ num_local_experts: 7 }, 'qwen3-moe-f32', { moe: true }), /num_experts 7 does not match the checkpoint, whose layer 0 holds 8 experts/],
    ['a moe_intermediate_size its experts do not have', target({ moe_intermediate_size: 33 }, 'qwen3-moe-f32', { moe: true }), /moe_intermediate_size 33 does not match the checkpoint/],
    ['a drafter reading more target layers than its fc takes', () => checkDrafterTensors(drafterConfigFromHF({ ...cfgOf('qwen3-f32-dflash'), dflash_config: { mask_token_id: 255, target_layer_ids: [0, 1, 1] } }, targetConfigFromHF(cfgOf('qwen3-f32'))), tensors('qwen3-f32-dflash')), /target_layer_ids count \* hidden_size 192 does not match the checkpoint: fc\.weight is \[64, 128\]/],
  ];
  for (const [what, fn, err] of cases) it(`reject ${what}`, () => expect(fn).toThrow(err));
});
