// config.json mapping (lib/config.ts): Qwen3 / Llama 3.1 targets and z-lab DFlash drafters with
// the published models' shapes, transformers' defaults, the reference's default target_layer_ids,
// the shipped model pair, and an error naming the key for every unsupported or inconsistent value.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { defaultTargetLayerIds, drafterConfigFromHF, targetConfigFromHF } from '../lib/config';

type Json = Record<string, unknown>;

// Shapes of Qwen/Qwen3-4B (config.json keys as published).
const QWEN3_4B: Json = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', attention_bias: false, attention_dropout: 0.0,
  bos_token_id: 151643, eos_token_id: 151645, head_dim: 128, hidden_act: 'silu', hidden_size: 2560,
  initializer_range: 0.02, intermediate_size: 9728, max_position_embeddings: 40960, max_window_layers: 36,
  num_attention_heads: 32, num_hidden_layers: 36, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null,
  rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16',
  use_cache: true, use_sliding_window: false, vocab_size: 151936,
};

// Shapes of meta-llama/Llama-3.1-8B-Instruct (no head_dim key: hidden / heads).
const LLAMA31_8B: Json = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], hidden_act: 'silu', hidden_size: 4096, intermediate_size: 14336,
  max_position_embeddings: 131072, mlp_bias: false, num_attention_heads: 32, num_hidden_layers: 32,
  num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 128256,
};

// The z-lab DFlash drafter layout for Qwen3-4B (block 16, 5 layers, features of 5 target layers).
const DFLASH_4B: Json = {
  architectures: ['DFlashDraftModel'], model_type: 'qwen3', block_size: 16, num_target_layers: 36,
  dflash_config: { mask_token_id: 151669, target_layer_ids: [1, 9, 17, 25, 33] },
  attention_bias: false, head_dim: 128, hidden_act: 'silu', hidden_size: 2560, intermediate_size: 9728,
  max_position_embeddings: 40960, num_attention_heads: 32, num_hidden_layers: 5, num_key_value_heads: 8,
  rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 151936,
};

const without = (o: Json, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

describe('targetConfigFromHF', () => {
  it('maps Qwen3-4B', () => {
    expect(targetConfigFromHF(QWEN3_4B)).toEqual({
      family: 'qwen3', vocabSize: 151936, hiddenSize: 2560, intermediateSize: 9728, numLayers: 36, numHeads: 32,
      numKvHeads: 8, headDim: 128, rmsNormEps: 1e-6, ropeTheta: 1000000, qkNorm: true, qkvBias: false, oBias: false, tieWordEmbeddings: true,
      ropeLlama3: null, eosTokenIds: [151645], bosTokenId: 151643, maxPositionEmbeddings: 40960, torchDtype: 'bfloat16', moe: null, quant: null, linearAttention: null, rotaryDim: 0,
      ropeYarn: null, attentionSinks: false, layerWindows: Array(36).fill(null), swigluLimit: 7, swigluAlpha: 1.702,
    });
  });

  it('maps Llama 3.1 8B: head_dim from hidden / heads, GQA, llama3 RoPE, eos list', () => {
    expect(targetConfigFromHF(LLAMA31_8B)).toEqual({
      family: 'llama', vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32,
      numKvHeads: 8, headDim: 128, rmsNormEps: 1e-5, ropeTheta: 500000, qkNorm: false, qkvBias: false, oBias: false, tieWordEmbeddings: false,
      ropeLlama3: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      eosTokenIds: [128001, 128008, 128009], bosTokenId: 128000, maxPositionEmbeddings: 131072, torchDtype: 'bfloat16', moe: null, quant: null, linearAttention: null, rotaryDim: 0,
      ropeYarn: null, attentionSinks: false, layerWindows: Array(32).fill(null), swigluLimit: 7, swigluAlpha: 1.702,
    });
  });

  it("fills absent keys with transformers' defaults", () => {
    const q = targetConfigFromHF(without(QWEN3_4B, 'head_dim', 'rope_theta', 'rms_norm_eps', 'tie_word_embeddings', 'max_position_embeddings', 'eos_token_id', 'bos_token_id', 'torch_dtype', 'architectures'));
    expect(q).toMatchObject({ family: 'qwen3', headDim: 128, ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32768, eosTokenIds: [], bosTokenId: null, torchDtype: 'float32' });
    const l = targetConfigFromHF({ ...without(LLAMA31_8B, 'num_key_value_heads', 'max_position_embeddings', 'rope_scaling'), hidden_size: 2048, num_attention_heads: 16 });
    expect(l).toMatchObject({ headDim: 128, numKvHeads: 16, maxPositionEmbeddings: 2048, ropeLlama3: null });
    expect(targetConfigFromHF({ ...QWEN3_4B, dtype: 'float16', torch_dtype: undefined }).torchDtype).toBe('float16');
  });

  it('reads the older rope_scaling "type" key and transformers 5 rope_parameters', () => {
    const rs = { type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    expect(targetConfigFromHF({ ...LLAMA31_8B, rope_scaling: rs }).ropeLlama3?.factor).toBe(32);
    const v5 = { ...without(LLAMA31_8B, 'rope_scaling', 'rope_theta'), rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } };
    expect(targetConfigFromHF(v5)).toMatchObject({ ropeTheta: 500000, ropeLlama3: { factor: 8, originalMaxPositionEmbeddings: 8192 } });
    const q5 = { ...without(QWEN3_4B, 'rope_theta'), rope_parameters: { rope_type: 'default', rope_theta: 5e6 } };
    expect(targetConfigFromHF(q5)).toMatchObject({ ropeTheta: 5e6, ropeLlama3: null });
    expect(targetConfigFromHF({ ...QWEN3_4B, rope_scaling: { rope_type: 'default' } }).ropeLlama3).toBeNull();
  });

  const errors: [string, Json, RegExp][] = [
    ['an unsupported architecture', { ...QWEN3_4B, architectures: ['MistralForCausalLM'], model_type: 'mistral' }, /unsupported model \(model_type "mistral".*dflash runs Qwen3, Qwen2, Llama, gpt-oss and Qwen3.5/],
    ['yarn RoPE scaling', { ...QWEN3_4B, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, /rope_scaling type "yarn" is not supported \(llama3 only\)/],
    ['linear RoPE scaling (type key)', { ...LLAMA31_8B, rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling type "linear" is not supported/],
    ['llama3 scaling without factor', { ...LLAMA31_8B, rope_scaling: { rope_type: 'llama3', low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /'rope_scaling\.factor' is missing/],
    ['llama3 scaling with high <= low', { ...LLAMA31_8B, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /rope_scaling\.high_freq_factor must be greater than low_freq_factor/],
    ['mlp_bias', { ...LLAMA31_8B, mlp_bias: true }, /mlp_bias true is not supported/],
    ['another activation', { ...LLAMA31_8B, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported \(silu only\)/],
    ['sliding-window attention', { ...QWEN3_4B, use_sliding_window: true }, /use_sliding_window true is not supported/],
    ['KV heads that do not divide the heads', { ...QWEN3_4B, num_key_value_heads: 5 }, /num_key_value_heads 5 must divide num_attention_heads 32/],
    ['hidden not a multiple of heads (no head_dim)', { ...LLAMA31_8B, hidden_size: 4100 }, /hidden_size 4100 is not a multiple of num_attention_heads 32/],
    ['a missing key', without(QWEN3_4B, 'vocab_size'), /'vocab_size' is missing/],
    ['a key of the wrong type', { ...QWEN3_4B, num_hidden_layers: '36' }, /'num_hidden_layers' must be an integer >= 1 \(got "36"\)/],
    ['a zero size', { ...QWEN3_4B, intermediate_size: 0 }, /'intermediate_size' must be an integer >= 1 \(got 0\)/],
    ['a bad eos_token_id', { ...QWEN3_4B, eos_token_id: ['</s>'] }, /'eos_token_id' must be a token id or a list of token ids/],
  ];
  for (const [what, cfg, err] of errors) it(`rejects ${what}`, () => expect(() => targetConfigFromHF(cfg)).toThrow(err));
});

describe('defaultTargetLayerIds (z-lab build_target_layer_ids)', () => {
  it('spreads n layers from 1 to L - 3, with Python rounding', () => {
    expect(defaultTargetLayerIds(36, 5)).toEqual([1, 9, 17, 25, 33]);  // Qwen3-4B/8B drafters
    expect(defaultTargetLayerIds(36, 1)).toEqual([18]);
    expect(defaultTargetLayerIds(11, 3)).toEqual([1, 4, 8]);  // round(4.5) = 4 (half to even), not 5
    expect(defaultTargetLayerIds(13, 3)).toEqual([1, 6, 10]); // round(5.5) = 6
    expect(defaultTargetLayerIds(32, 4)).toEqual([1, 10, 20, 29]);
  });
});

describe('drafterConfigFromHF', () => {
  const target = targetConfigFromHF(QWEN3_4B);

  it('maps the z-lab Qwen3-4B DFlash drafter', () => {
    expect(drafterConfigFromHF(DFLASH_4B, target)).toEqual({
      numLayers: 5, hiddenSize: 2560, intermediateSize: 9728, numHeads: 32, numKvHeads: 8, headDim: 128,
      rmsNormEps: 1e-6, ropeTheta: 1000000, blockSize: 16, maskTokenId: 151669, targetLayerIds: [1, 9, 17, 25, 33],
      inputEmbeddingScale: 1, ropeLlama3: null, attentionBias: false, slidingWindows: [null, null, null, null, null], quant: null,
    });
  });

  it('derives target_layer_ids from num_target_layers and its own layer count when absent', () => {
    const d = drafterConfigFromHF({ ...DFLASH_4B, dflash_config: { mask_token_id: 151669 } }, target);
    expect(d.targetLayerIds).toEqual([1, 9, 17, 25, 33]);
    const one = drafterConfigFromHF({ ...DFLASH_4B, num_hidden_layers: 1, dflash_config: { mask_token_id: 151669 } }, target);
    expect(one.targetLayerIds).toEqual([18]);
  });

  it('reads block_size from dflash_config, input_embedding_scale, and llama3 RoPE for Llama targets', () => {
    const d = drafterConfigFromHF({ ...without(DFLASH_4B, 'block_size'), dflash_config: { mask_token_id: 1, target_layer_ids: [2], block_size: 10, input_embedding_scale: 0.5 } }, target);
    expect(d).toMatchObject({ blockSize: 10, inputEmbeddingScale: 0.5, targetLayerIds: [2] });
    const llama = targetConfigFromHF({ ...LLAMA31_8B, hidden_size: 2560, num_attention_heads: 20, num_key_value_heads: 4 });
    const dl = drafterConfigFromHF({ ...DFLASH_4B, block_size: 10, num_target_layers: 32, rope_scaling: LLAMA31_8B.rope_scaling, dflash_config: { mask_token_id: 128002, target_layer_ids: [1, 8, 15, 22, 29] } }, llama);
    expect(dl).toMatchObject({ blockSize: 10, maskTokenId: 128002, ropeLlama3: { factor: 8, originalMaxPositionEmbeddings: 8192 } });
  });

  it('maps the shipped model pair (models/code-pair)', () => {
    const dir = path.join(__dirname, '..', 'models', 'code-pair');
    const tj = JSON.parse(fs.readFileSync(path.join(dir, 'target', 'config.json'), 'utf8'));
    const dj = JSON.parse(fs.readFileSync(path.join(dir, 'drafter', 'config.json'), 'utf8'));
    const t = targetConfigFromHF(tj);
    const d = drafterConfigFromHF(dj, t);
    expect(t.family).toBe('qwen3');
    expect(d.hiddenSize).toBe(t.hiddenSize);
    expect(d.targetLayerIds).toEqual(dj.dflash_config.target_layer_ids);
    expect(d.maskTokenId).toBe(dj.dflash_config.mask_token_id);
    expect(d.blockSize).toBe(dj.block_size);
  });

  const errors: [string, Json, RegExp][] = [
    ['another architecture', { ...DFLASH_4B, architectures: ['Qwen3ForCausalLM'] }, /drafter config\.json: architectures must be \["DFlashDraftModel"\]/],
    ['a hidden size other than the target\'s', { ...DFLASH_4B, hidden_size: 4096 }, /hidden_size 4096 differs from the target's hidden_size 2560/],
    ['a drafter made for another target', { ...DFLASH_4B, num_target_layers: 28 }, /num_target_layers 28 differs from the target's num_hidden_layers 36/],
    ['no target_layer_ids and no num_target_layers', { ...without(DFLASH_4B, 'num_target_layers'), dflash_config: { mask_token_id: 1 } }, /'dflash_config\.target_layer_ids' is missing \(and num_target_layers is not given/],
    ['a target layer id out of range', { ...DFLASH_4B, dflash_config: { mask_token_id: 1, target_layer_ids: [1, 36] } }, /dflash_config\.target_layer_ids entry 36 is outside the target's 36 layers/],
    ['an empty target_layer_ids', { ...DFLASH_4B, dflash_config: { mask_token_id: 1, target_layer_ids: [] } }, /'dflash_config\.target_layer_ids' must be a non-empty list/],
    ['a mask token outside the vocabulary', { ...DFLASH_4B, dflash_config: { mask_token_id: 151936, target_layer_ids: [1] } }, /dflash_config\.mask_token_id 151936 must be a token id below the target's vocab_size 151936/],
    ['a missing mask token', { ...DFLASH_4B, dflash_config: { target_layer_ids: [1] } }, /'dflash_config\.mask_token_id' is missing/],
    ['block_size 1', { ...DFLASH_4B, block_size: 1 }, /'block_size' must be an integer >= 2 \(got 1\)/],
    ['a missing block_size', without(DFLASH_4B, 'block_size'), /'dflash_config\.block_size' is missing/],
    ['a non-numeric input_embedding_scale', { ...DFLASH_4B, dflash_config: { mask_token_id: 1, target_layer_ids: [1], input_embedding_scale: 'x' } }, /'dflash_config\.input_embedding_scale' must be a number/],
    ['a projector variant', { ...DFLASH_4B, dflash_config: { mask_token_id: 1, target_layer_ids: [1], projector_type: 'domino' } }, /dflash_config\.projector_type "domino" is not supported/],
    ['a string attention_bias', { ...DFLASH_4B, attention_bias: 'true' }, /'attention_bias' must be true or false/],
  ];
  for (const [what, cfg, err] of errors) it(`rejects ${what}`, () => expect(() => drafterConfigFromHF(cfg, target)).toThrow(err));
  it('reads attention_bias: biases on q/k/v/o (z-lab\'s gpt-oss drafters)', () => {
    expect(drafterConfigFromHF({ ...DFLASH_4B, attention_bias: true }, target).attentionBias).toBe(true);
  });
});
