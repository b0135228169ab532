// Qwen3.5 / Qwen3.6's config.json (transformers' Qwen3_5Config / Qwen3_5TextConfig, 5.25), read
// into the TargetConfig fields only hybrid targets set. Released checkpoints are the
// vision-language model (architectures ["Qwen3_5ForConditionalGeneration"]): the text model's keys
// live under text_config (errors name them so), tie_word_embeddings at the top level; the text-only
// Qwen3_5ForCausalLM layout has them at the top.
//   linearAttention.layers  <- layer_types ("linear_attention" | "full_attention"; default: full
//                              every 4th layer, transformers' full_attention_interval)
//   linearAttention.*       <- linear_num_key_heads (16), linear_num_value_heads (32),
//                              linear_key_head_dim (128), linear_value_head_dim (128),
//                              linear_conv_kernel_dim (4)
//   rotaryDim               <- int(head_dim * rope_parameters.partial_rotary_factor (0.25))
//   headDim                 <- head_dim (256); rope_parameters.mrope_section is accepted: text-only
//                              positions are equal on its three axes, which makes it plain RoPE
//   moe (Qwen3_5Moe*)       <- num_experts (256), num_experts_per_tok (8), moe_intermediate_size (512),
//                              shared_expert_intermediate_size (512); every layer sparse, the top k
//                              always renormalised, the shared expert scaled by sigmoid(shared_expert_gate x)
import { Json, LIMITS, Reader, subObject } from './config-reader';

export interface LinearAttentionConfig {
  /** Per layer: a Gated DeltaNet (true) or a gated full-attention layer (false). */
  layers: boolean[];
  numKeyHeads: number;
  numValueHeads: number;
  keyHeadDim: number;
  valueHeadDim: number;
  convKernel: number;
}

const ARCHITECTURES = ['Qwen3_5ForConditionalGeneration', 'Qwen3_5ForCausalLM'];
const MOE_ARCHITECTURES = ['Qwen3_5MoeForConditionalGeneration', 'Qwen3_5MoeForCausalLM'];

/** Whether a config.json is a Qwen3.5 / Qwen3.6 one, dense or MoE: its architectures or model_type. */
export function isQwen35(cfg: Json): boolean {
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  return archs.some((a) => ARCHITECTURES.includes(a)) || cfg.model_type === 'qwen3_5' || cfg.model_type === 'qwen3_5_text' || isQwen35Moe(cfg);
}

/** Whether a config.json is Qwen3.5's MoE variant. */
export function isQwen35Moe(cfg: Json): boolean {
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  return archs.some((a) => MOE_ARCHITECTURES.includes(a)) || cfg.model_type === 'qwen3_5_moe' || cfg.model_type === 'qwen3_5_moe_text';
}

/** The text model's keys of a Qwen3.5 config (text_config when nested, with the top level's
 *  tie_word_embeddings) and the Reader whose messages name them where they are. */
export function qwen35Text(top: Json, label: string): { cfg: Json; r: Reader } {
  if (top.text_config === undefined || top.text_config === null) return { cfg: { ...top }, r: new Reader(label) };
  const r = new Reader(label, 'text_config.');
  const text = subObject(new Reader(label), top, 'text_config');
  const tie = top.tie_word_embeddings ?? text.tie_word_embeddings;
  return { cfg: { ...text, architectures: top.architectures, tie_word_embeddings: tie }, r };
}

/** Qwen3.5-MoE's sparse blocks (every layer), as lib/config.ts's MoeConfig. */
export function qwen35Moe(r: Reader, cfg: Json, numLayers: number, hidden: number) {
  const numExperts = r.int(cfg, 'num_experts', 256, 1, undefined, LIMITS.numExperts);
  const numExpertsPerTok = r.int(cfg, 'num_experts_per_tok', 8, 1, undefined, numExperts);
  const moeIntermediateSize = r.int(cfg, 'moe_intermediate_size', 512, 1, undefined, LIMITS.intermediateSize);
  const sharedExpertIntermediateSize = r.int(cfg, 'shared_expert_intermediate_size', 512, 1, undefined, LIMITS.intermediateSize);
  r.elements('the stacked experts of a layer', `${r.prefix}num_experts * ${r.prefix}moe_intermediate_size * ${r.prefix}hidden_size`, numExperts, moeIntermediateSize, hidden);
  if (cfg.mlp_only_layers !== undefined && cfg.mlp_only_layers !== null && (!Array.isArray(cfg.mlp_only_layers) || cfg.mlp_only_layers.length))
    r.fail(r.prefix + 'mlp_only_layers', `${JSON.stringify(cfg.mlp_only_layers)}: Qwen3.5-MoE layers are all sparse`);
  return {
    numExperts, numExpertsPerTok, moeIntermediateSize, normTopkProb: true, decoderSparseStep: 1, mlpOnlyLayers: [] as number[],
    sparseLayers: Array.from({ length: numLayers }, () => true), sharedExpertIntermediateSize,
  };
}

/** The Qwen3.5-only fields of its text config. */
export function qwen35Fields(r: Reader, cfg: Json, numLayers: number, headDim: number): { linearAttention: LinearAttentionConfig; rotaryDim: number } {
  const p = r.prefix;
  let types: unknown[];
  if (cfg.layer_types === undefined || cfg.layer_types === null)
    types = Array.from({ length: numLayers }, (_, i) => ((i + 1) % 4 ? 'linear_attention' : 'full_attention'));
  else if (!Array.isArray(cfg.layer_types) || cfg.layer_types.length !== numLayers)
    return r.fail(p + 'layer_types', `must list one type per layer (${numLayers}), got ${JSON.stringify(cfg.layer_types)}`);
  else types = cfg.layer_types;
  const layers = types.map((t, i) => {
    if (t === 'linear_attention') return true;
    if (t === 'full_attention') return false;
    return r.fail(p + 'layer_types', `entry ${i} is ${JSON.stringify(t)}: Qwen3.5 layers are "linear_attention" or "full_attention"`);
  });
  const numKeyHeads = r.int(cfg, 'linear_num_key_heads', 16, 1, undefined, LIMITS.numHeads);
  const numValueHeads = r.int(cfg, 'linear_num_value_heads', 32, 1, undefined, LIMITS.numHeads);
  if (numValueHeads % numKeyHeads !== 0)
    r.fail(p + 'linear_num_value_heads', `${numValueHeads} must be a multiple of linear_num_key_heads ${numKeyHeads} (value heads share key heads)`);
  const linearAttention: LinearAttentionConfig = {
    layers,
    numKeyHeads,
    numValueHeads,
    keyHeadDim: r.int(cfg, 'linear_key_head_dim', 128, 1, undefined, LIMITS.headDim),
    valueHeadDim: r.int(cfg, 'linear_value_head_dim', 128, 1, undefined, LIMITS.headDim),
    convKernel: r.int(cfg, 'linear_conv_kernel_dim', 4, 2, undefined, 64),
  };
  const rp = (cfg.rope_parameters ?? {}) as Json;
  const type = rp.rope_type ?? rp.type ?? 'default';
  if (type !== 'default') r.fail(p + 'rope_parameters.rope_type', `${JSON.stringify(type)} is not supported for Qwen3.5 (default only)`);
  const factor = rp.partial_rotary_factor === undefined || rp.partial_rotary_factor === null ? 0.25
    : r.num(rp, 'partial_rotary_factor', undefined, p + 'rope_parameters.partial_rotary_factor');
  const rotaryDim = Math.trunc(headDim * factor);  // transformers: int(head_dim * partial_rotary_factor)
  if (!(factor > 0 && factor <= 1) || rotaryDim % 2 !== 0 || rotaryDim === 0)
    r.fail(p + 'rope_parameters.partial_rotary_factor', `${factor} gives ${rotaryDim} rotary dims of head_dim ${headDim}; they must be even and positive`);
  return { linearAttention, rotaryDim };
}
