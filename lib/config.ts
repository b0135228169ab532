// Hugging Face config.json -> the normalised configs the native engine takes (camelCase fields,
// read by native/addon/js_engine.cc). Qwen3, Qwen3-MoE, Qwen2 and Llama targets; DFlash drafters in the
// z-lab and speculators layouts (lib/config-drafter.ts). Every unsupported, out-of-bounds
// (lib/config-reader.ts LIMITS) or inconsistent value is an Error naming the file, the key and the
// value, raised before anything is allocated. Defaults follow transformers' Qwen3Config /
// Qwen3MoeConfig / Qwen2Config / LlamaConfig where a key is absent.
//
// TargetConfig field   <- config.json key
//   family             <- model_type "qwen3" | "qwen3_moe" | "qwen2" | "llama" | "gpt_oss" (or architectures
//                         Qwen3ForCausalLM / Qwen3MoeForCausalLM / Qwen2ForCausalLM / LlamaForCausalLM /
//                         GptOssForCausalLM; gpt-oss's own keys: lib/config-gpt-oss.ts)
//   vocabSize          <- vocab_size                 hiddenSize <- hidden_size
//   intermediateSize   <- intermediate_size          numLayers  <- num_hidden_layers
//   numHeads           <- num_attention_heads        numKvHeads <- num_key_value_heads (default numHeads)
//   headDim            <- head_dim (default: qwen3 128, qwen3_moe, qwen2 and llama hidden_size / num_attention_heads)
//   rmsNormEps         <- rms_norm_eps (1e-6)        ropeTheta  <- rope_theta | rope_parameters.rope_theta (10000)
//   qkNorm             <- true for qwen3 / qwen3_moe (q_norm / k_norm), false for qwen2 and llama
//   qkvBias, oBias     <- q/k/v_proj and o_proj biases: qwen2 always q/k/v (not o); qwen3, qwen3_moe and
//                         llama both with attention_bias (false). mlp_bias true is refused.
//   tieWordEmbeddings  <- tie_word_embeddings (false)
//   ropeLlama3         <- rope_scaling | rope_parameters with rope_type (or type) "llama3", else null
//   eosTokenIds        <- eos_token_id (int or list) bosTokenId <- bos_token_id (or null)
//   maxPositionEmbeddings <- max_position_embeddings (qwen3 / qwen3_moe / qwen2 32768, llama 2048)
//   torchDtype         <- torch_dtype | dtype ("float32")
//   moe                <- null, or for qwen3_moe (Qwen3MoeConfig keys and defaults):
//     numExperts <- num_experts | num_local_experts (transformers 5 writes the latter) (128)
//     numExpertsPerTok <- num_experts_per_tok (8)    moeIntermediateSize <- moe_intermediate_size (768)
//     normTopkProb <- norm_topk_prob (false)         decoderSparseStep <- decoder_sparse_step (1)
//     mlpOnlyLayers <- mlp_only_layers ([])
//     sparseLayers: per layer, true = routed experts, false = a dense MLP of intermediate_size;
//       transformers' rule: i not in mlp_only_layers and num_experts > 0 and (i + 1) % step == 0
import { asObject, Json, LIMITS, Reader, RopeLlama3 } from './config-reader';
import { DFlash2Fields, DrafterFields, isSpeculators, layerWindows, speculatorsFields, zlabFields } from './config-drafter';
import { QuantScheme, quantSchemeFromHF } from './quantization';
import { gptOssFields, RopeYarn } from './config-gpt-oss';
import { isQwen35, isQwen35Moe, LinearAttentionConfig, qwen35Fields, qwen35Moe, qwen35Text } from './config-qwen3-5';

export { LIMITS } from './config-reader';
export type { RopeLlama3 } from './config-reader';
export type { RopeYarn } from './config-gpt-oss';
export type { LinearAttentionConfig } from './config-qwen3-5';

export interface MoeConfig {
  numExperts: number;
  numExpertsPerTok: number;
  moeIntermediateSize: number;
  normTopkProb: boolean;
  decoderSparseStep: number;
  mlpOnlyLayers: number[];
  sparseLayers: boolean[];
  /** Qwen3.5-MoE: a shared expert of this width beside the routed ones (0 or absent: none). */
  sharedExpertIntermediateSize?: number;
}

export interface TargetConfig {
  family: 'qwen3' | 'qwen3_moe' | 'qwen2' | 'llama' | 'gpt_oss' | 'qwen3_5';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  qkNorm: boolean;
  /** Biases on q/k/v_proj (Qwen2; attention_bias) and on o_proj (attention_bias). */
  qkvBias: boolean;
  oBias: boolean;
  tieWordEmbeddings: boolean;
  ropeLlama3: RopeLlama3 | null;
  /** YaRN RoPE scaling (gpt-oss). */
  ropeYarn: RopeYarn | null;
  /** gpt-oss: a learned logit per query head in every softmax (self_attn.sinks). */
  attentionSinks: boolean;
  /** Per layer: a sliding window (keys in (q - w, q]) or null for full attention. */
  layerWindows: (number | null)[];
  /** gpt-oss experts' clamped SwiGLU. */
  swigluLimit: number;
  swigluAlpha: number;
  eosTokenIds: number[];
  bosTokenId: number | null;
  maxPositionEmbeddings: number;
  torchDtype: string;
  moe: MoeConfig | null;
  /** Linear weights stored narrow (quantization_config; lib/quantization.ts), kept so on the device. */
  quant: QuantScheme | null;
  /** Qwen3.5: its Gated DeltaNet layers (lib/config-qwen3-5.ts); absent or null elsewhere. */
  linearAttention?: LinearAttentionConfig | null;
  /** RoPE on the first rotaryDim dims of each head (Qwen3.5: a quarter); 0 or absent = all. */
  rotaryDim?: number;
}

// DrafterConfig field <- drafter config.json key (the drafter's layers are Qwen3 decoder layers);
// the speculators key where it differs is in [brackets].
//   numLayers <- num_hidden_layers; hiddenSize (must equal the target's), intermediateSize, numHeads,
//   numKvHeads, headDim, rmsNormEps, ropeTheta, ropeLlama3: as for the target [transformer_layer_config.*]
//   blockSize <- block_size | dflash_config.block_size (required, 2..64) [block_size]
//   maskTokenId <- dflash_config.mask_token_id (required, < target vocab_size) [mask_token_id]
//   targetLayerIds <- dflash_config.target_layer_ids; when absent and num_target_layers is given, the
//     reference's default build_target_layer_ids(num_target_layers, num_hidden_layers):
//     n = 1: [L // 2]; else round(1 + i * (L - 4) / (n - 1)), i < n, Python rounding (half to even)
//     [aux_hidden_state_layer_ids - 1: speculators counts target layers from 1]
//   inputEmbeddingScale <- dflash_config.input_embedding_scale (default 1) [1]
//   slidingWindows <- per layer: the window of z-lab's flash-attention-2 path (keys at positions
//     p with |p - q| < window for a query at position q, context and block alike), or null for
//     full attention; from use_sliding_window + sliding_window + layer_types / max_window_layers
//     as transformers' Qwen3Config derives them (lib/config-drafter.ts layerWindows)
//   dflash2 <- absent, or for architectures ["DFlash2DraftModel"] (docs/DRAFTERS.md §5), each key read
//     from dflash_config, else the top level (z-lab's _draft_value):
//     convKernelSize <- conv_kernel_size, convGroupSize <- conv_group_size (divides hidden_size),
//     selectorRank <- selector_rank, selectorTopK <- selector_top_k (<= vocab_size): all required;
//     outputMultiplier <- output_multiplier (1, > 0); finalLogitSoftcapping <- final_logit_softcapping
//     (null when absent, null or <= 0). Sliding layers need is_causal: false (z-lab's newest
//     Qwen3DFlashAttention makes them causal when is_causal is absent; dflash runs them non-causal).
export interface DrafterConfig {
  numLayers: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  blockSize: number;
  maskTokenId: number;
  targetLayerIds: number[];
  inputEmbeddingScale: number;
  /** llama3 RoPE scaling of the drafter's own layers (drafters of Llama 3.1 targets). */
  ropeLlama3: RopeLlama3 | null;
  /** q/k/v/o_proj biases (attention_bias: z-lab's gpt-oss drafters). */
  attentionBias: boolean;
  slidingWindows: (number | null)[];
  /** DFlash2's convolutions, candidate selector and logit transforms; absent for DFlash. */
  dflash2?: DFlash2Config;
  /** Its layers' Linear weights stored narrow (quantization_config; lib/quantization.ts). */
  quant: QuantScheme | null;
}

export interface DFlash2Config extends DFlash2Fields {
  /** Rows of the selector codebooks: the target's vocab_size (z-lab sizes them by the drafter's own
   *  vocab_size, which must then equal it). */
  vocabSize: number;
}

/** What the engine that will run a config implements. A config needing more is refused, so that
 *  an engine without sliding windows never runs a windowed drafter as full attention (it would
 *  stay lossless but draft badly, silently) and one without MoE never half-loads an MoE target.
 *  The engine passes these once its graphs implement them; absent = not implemented. */
export interface EngineCapabilities {
  /** Qwen3-MoE targets (native/models/moe.h). */
  moe?: boolean;
  /** Drafter layers with z-lab's sliding window (DrafterConfig.slidingWindows). */
  slidingWindows?: boolean;
}

const FAMILIES: Record<string, TargetConfig['family']> = {
  Qwen3ForCausalLM: 'qwen3', Qwen3MoeForCausalLM: 'qwen3_moe', Qwen2ForCausalLM: 'qwen2', LlamaForCausalLM: 'llama',
  GptOssForCausalLM: 'gpt_oss',
};

function targetFamily(cfg: Json, label: string): TargetConfig['family'] {
  if (isQwen35(cfg)) return 'qwen3_5';
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  for (const a of archs) if (FAMILIES[a]) return FAMILIES[a];
  const type = String(cfg.model_type ?? '');
  if (type === 'qwen3' || type === 'qwen3_moe' || type === 'qwen2' || type === 'llama' || type === 'gpt_oss') return type;
  throw new Error(`${label}: unsupported model (model_type ${JSON.stringify(cfg.model_type)}, architectures ${JSON.stringify(cfg.architectures)}); dflash runs Qwen3, Qwen2, Llama, gpt-oss and Qwen3.5 targets, dense or Qwen3-MoE`);
}

function moeConfig(r: Reader, cfg: Json, numLayers: number, hidden: number): MoeConfig {
  // transformers 5 saves num_local_experts (Qwen3MoeConfig.attribute_map); hub checkpoints have num_experts.
  if (cfg.num_experts !== undefined && cfg.num_local_experts !== undefined && cfg.num_experts !== cfg.num_local_experts)
    r.fail('num_experts', `${JSON.stringify(cfg.num_experts)} differs from num_local_experts ${JSON.stringify(cfg.num_local_experts)}`);
  const key = cfg.num_experts !== undefined ? 'num_experts' : 'num_local_experts';
  const numExperts = r.int(cfg, key, 128, 1, key, LIMITS.numExperts);
  const numExpertsPerTok = r.int(cfg, 'num_experts_per_tok', 8, 1, undefined, numExperts);
  const moeIntermediateSize = r.int(cfg, 'moe_intermediate_size', 768, 1, undefined, LIMITS.intermediateSize);
  // The engine stacks the experts of a layer into one (E, I, H) tensor.
  r.elements('the stacked experts of a layer', `${key} * moe_intermediate_size * hidden_size`, numExperts, moeIntermediateSize, hidden);
  const decoderSparseStep = r.int(cfg, 'decoder_sparse_step', 1, 1);
  const mlpOnly = cfg.mlp_only_layers === undefined || cfg.mlp_only_layers === null ? []
    : r.indexList(cfg.mlp_only_layers, 'mlp_only_layers', numLayers, `the ${numLayers} layers`);
  if (cfg.shared_expert_intermediate_size)
    r.fail('shared_expert_intermediate_size', `${JSON.stringify(cfg.shared_expert_intermediate_size)}: Qwen3-MoE has no shared expert (transformers' Qwen3MoeSparseMoeBlock ignores the key); a Qwen2-MoE checkpoint is not supported`);
  return {
    numExperts,
    numExpertsPerTok,
    moeIntermediateSize,
    normTopkProb: r.bool(cfg, 'norm_topk_prob', false),
    decoderSparseStep,
    mlpOnlyLayers: mlpOnly,
    sparseLayers: Array.from({ length: numLayers }, (_, i) => !mlpOnly.includes(i) && (i + 1) % decoderSparseStep === 0),
  };
}

/** Maps a Qwen3, Qwen3-MoE, Qwen2 or Llama config.json to the engine's TargetConfig. `file` names the
 *  file in error messages (default "target config.json"). */
export function targetConfigFromHF(json: Json, file?: string, engine: EngineCapabilities = {}): TargetConfig {
  const label = file ?? 'target config.json';
  const top = asObject(json, label);
  const family = targetFamily(top, label);
  const qwen35 = family === 'qwen3_5';
  // Qwen3.5's released layout nests the text model under text_config.
  const { cfg, r } = qwen35 ? qwen35Text(top, label) : { cfg: top, r: new Reader(label) };
  const gptOss = family === 'gpt_oss';
  const q35Moe = qwen35 && isQwen35Moe(top);
  // Qwen3.5-MoE has no dense MLP: intermediate_size (absent) is read as the experts' width.
  if (q35Moe && cfg.intermediate_size === undefined) cfg.intermediate_size = cfg.moe_intermediate_size ?? 512;
  if ((family === 'qwen3_moe' || gptOss || q35Moe) && !engine.moe)
    r.fail('model_type', `"${family}": MoE targets are read (lib/config.ts) but this engine does not run them yet`);
  if (r.bool(cfg, 'use_sliding_window', false)) r.fail('use_sliding_window', 'true is not supported for a target (full attention only)');
  // GptOssConfig's attention_bias defaults to true, and gpt-oss's layers always have their biases.
  const attentionBias = r.bool(cfg, 'attention_bias', gptOss);
  if (gptOss && !attentionBias) r.fail('attention_bias', 'false: gpt-oss\'s attention projections have biases');
  if (!gptOss && !qwen35 && Array.isArray(cfg.layer_types) && cfg.layer_types.some((t) => t !== 'full_attention'))
    r.fail('layer_types', 'must all be "full_attention" for a target');
  if (qwen35 && attentionBias) r.fail(r.prefix + 'attention_bias', 'true is not supported for Qwen3.5 (its released models have no attention biases)');
  // transformers: Qwen3Config(head_dim=128), GptOssConfig(head_dim=64), Qwen3_5TextConfig(head_dim=256);
  // Qwen3MoeConfig and LlamaConfig: hidden_size // num_attention_heads.
  const d = r.decoder(cfg, family === 'qwen3' ? () => 128 : gptOss ? () => 64 : qwen35 ? () => 256 : (h, n) => h / n,
    { attentionBias: true, quantized: !qwen35, yarn: gptOss });
  const oss = gptOss ? gptOssFields(r, cfg, d.numLayers) : null;
  const q35 = qwen35 ? qwen35Fields(r, cfg, d.numLayers, d.headDim) : null;
  if (oss) {
    r.elements('the stacked experts of a layer', 'num_local_experts * intermediate_size * 2 * hidden_size', oss.numExperts, d.intermediateSize * 2, d.hiddenSize);
    if (cfg.rms_norm_eps === undefined) d.rmsNormEps = 1e-5;
    if (cfg.rope_theta === undefined && !(cfg.rope_parameters as Json | undefined)?.rope_theta) d.ropeTheta = 150000;
  }
  const qc = cfg.quantization_config;
  const quant = qc === undefined || qc === null ? null : quantSchemeFromHF(qc, (k, m) => r.fail(k, m));
  const vocabSize = r.int(cfg, 'vocab_size', undefined, 1, undefined, LIMITS.vocabSize);
  r.elements('embed_tokens / lm_head', 'vocab_size * hidden_size', vocabSize, d.hiddenSize);
  const bos = r.ids(cfg, 'bos_token_id');
  return {
    family,
    vocabSize,
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numLayers: d.numLayers,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.rmsNormEps,
    ropeTheta: d.ropeTheta,
    qkNorm: family === 'qwen3' || family === 'qwen3_moe' || qwen35,
    // transformers' Qwen2Attention: q/k/v with bias, o without; the others follow attention_bias.
    qkvBias: family === 'qwen2' || attentionBias,
    oBias: family !== 'qwen2' && attentionBias,
    tieWordEmbeddings: r.bool(cfg, 'tie_word_embeddings', false),
    ropeLlama3: d.ropeLlama3,
    ropeYarn: oss ? oss.ropeYarn : null,
    attentionSinks: gptOss,
    layerWindows: oss ? oss.layerWindows : Array.from({ length: d.numLayers }, () => null),
    swigluLimit: oss ? oss.swigluLimit : 7,
    swigluAlpha: oss ? oss.swigluAlpha : 1.702,
    eosTokenIds: r.ids(cfg, 'eos_token_id'),
    bosTokenId: bos.length ? bos[0] : null,
    maxPositionEmbeddings: r.int(cfg, 'max_position_embeddings', family === 'llama' ? 2048 : 32768, 1, undefined, LIMITS.positions),
    torchDtype: r.str(cfg, cfg.torch_dtype !== undefined && cfg.torch_dtype !== null ? 'torch_dtype' : 'dtype', 'float32'),
    moe: family === 'qwen3_moe' ? moeConfig(r, cfg, d.numLayers, d.hiddenSize)
      : q35Moe ? qwen35Moe(r, cfg, d.numLayers, d.hiddenSize)
      : oss ? {
        numExperts: oss.numExperts, numExpertsPerTok: oss.numExpertsPerTok, moeIntermediateSize: d.intermediateSize, normTopkProb: false,
        decoderSparseStep: 1, mlpOnlyLayers: [], sparseLayers: Array.from({ length: d.numLayers }, () => true),
      } : null,
    quant,
    linearAttention: q35 ? q35.linearAttention : null,
    rotaryDim: q35 ? q35.rotaryDim : 0,
  };
}

// Python's round(): to nearest, ties to even (the reference computes the default layer ids with it).
function pyRound(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff === 0.5) return f % 2 === 0 ? f : f + 1;
  return Math.round(x);
}

/** The reference's default target_layer_ids for a drafter of `numDraftLayers` layers over a
 *  target of `numTargetLayers` layers (z-lab dflash build_target_layer_ids). */
export function defaultTargetLayerIds(numTargetLayers: number, numDraftLayers: number): number[] {
  if (numDraftLayers === 1) return [Math.floor(numTargetLayers / 2)];
  const start = 1, span = numTargetLayers - 3 - start;
  return Array.from({ length: numDraftLayers }, (_, i) => pyRound(start + (i * span) / (numDraftLayers - 1)));
}

/** Maps a DFlash drafter config.json (z-lab or speculators layout) to the engine's DrafterConfig,
 *  checked against the target it will draft for. `file` names the file in error messages. */
export function drafterConfigFromHF(json: Json, target: TargetConfig, file?: string, engine: EngineCapabilities = {}): DrafterConfig {
  const label = file ?? 'drafter config.json';
  const cfg = asObject(json, label);
  const r: Reader = new Reader(label);
  const f: DrafterFields = isSpeculators(cfg) ? speculatorsFields(r, cfg) : zlabFields(r, cfg);
  const dr: Reader = f.decoderReader;
  // the drafter's layers are Qwen3 layers: Qwen3Config(head_dim=128); attention_bias gives all four
  // projections biases (Qwen3Attention), as z-lab's gpt-oss drafters have
  const d = dr.decoder(f.decoder, () => 128, { quantized: true, attentionBias: true });
  const attentionBias = dr.bool(f.decoder, 'attention_bias', false);
  const qc = cfg.quantization_config ?? f.decoder.quantization_config;
  const quant = qc === undefined || qc === null ? null : quantSchemeFromHF(qc, (k, m) => r.fail(k, m));
  if (d.hiddenSize !== target.hiddenSize) dr.fail(dr.prefix + 'hidden_size', `${d.hiddenSize} differs from the target's hidden_size ${target.hiddenSize}`);
  if (f.draftVocabSize && f.draftVocabSize.value !== target.vocabSize)
    r.fail(f.draftVocabSize.key, `${f.draftVocabSize.value} differs from the target's vocab_size ${target.vocabSize}: reduced draft vocabularies (d2t) are not supported`);

  if (f.numTargetLayers !== undefined && f.numTargetLayers !== target.numLayers)
    r.fail('num_target_layers', `${f.numTargetLayers} differs from the target's num_hidden_layers ${target.numLayers}: this drafter was made for another target`);
  let layerIds = f.targetLayerIds.value;
  if (layerIds === undefined) {
    if (f.numTargetLayers === undefined) r.bad(f.targetLayerIds.key, 'is missing (and num_target_layers is not given to derive the default)');
    layerIds = defaultTargetLayerIds(f.numTargetLayers, d.numLayers);
  }
  const speculators = f.targetLayerIds.key === 'aux_hidden_state_layer_ids';
  for (const id of layerIds)
    if (id < 0 || id >= target.numLayers)
      r.fail(f.targetLayerIds.key, `entry ${speculators ? id + 1 : id} is outside the target's ${target.numLayers} layers${speculators ? ' (ids 1..' + target.numLayers + ')' : ''}`);
  r.elements('fc', `${f.targetLayerIds.key} count * hidden_size * hidden_size`, layerIds.length, d.hiddenSize, d.hiddenSize);

  const mask = f.maskTokenId.value;
  if (mask === undefined || mask === null) r.bad(f.maskTokenId.key, 'is missing');
  if (typeof mask !== 'number' || !Number.isInteger(mask) || mask < 0 || mask >= target.vocabSize)
    r.fail(f.maskTokenId.key, `${JSON.stringify(mask)} must be a token id below the target's vocab_size ${target.vocabSize}`);

  const slidingWindows = layerWindows(dr, f.decoder, d.numLayers);
  if (speculators && slidingWindows.some((w) => w !== null))
    dr.fail(dr.prefix + 'layer_types', 'has sliding-window layers: speculators trains a different window than z-lab\'s (context keys [anchor - w, anchor), causal inside the block) and dflash implements z-lab\'s; see docs/DRAFTERS.md');
  if (!engine.slidingWindows && slidingWindows.some((w) => w !== null))
    dr.fail(dr.prefix + 'use_sliding_window', `true with sliding-window layers (windows ${JSON.stringify(slidingWindows)}): read, but this engine does not run them yet (full attention instead would draft badly)`);
  const d2 = f.dflash2;
  if (d2) {
    if (d.hiddenSize % d2.convGroupSize !== 0)
      r.fail('dflash_config.conv_group_size', `${d2.convGroupSize} must divide hidden_size ${d.hiddenSize} (channels are convolved in groups of this size)`);
    if (d2.selectorTopK > target.vocabSize)
      r.fail('dflash_config.selector_top_k', `${d2.selectorTopK} is above the target's vocab_size ${target.vocabSize}`);
    if (f.decoder.vocab_size !== undefined && f.decoder.vocab_size !== target.vocabSize)
      r.fail('vocab_size', `${JSON.stringify(f.decoder.vocab_size)} differs from the target's vocab_size ${target.vocabSize}: the selector's codebooks are indexed by the target's token ids`);
    r.elements('the selector codebooks', 'vocab_size * dflash_config.selector_rank', target.vocabSize, d2.selectorRank);
    // z-lab's Qwen3DFlashAttention (with DFlash2DraftModel): a sliding layer is causal unless the
    // config says is_causal false, as the published DFlash2 config does.
    if (slidingWindows.some((w) => w !== null) && f.decoder.is_causal !== false)
      r.fail('is_causal', `${f.decoder.is_causal === undefined ? '(absent)' : JSON.stringify(f.decoder.is_causal)} with sliding-window layers: z-lab's DFlash2 code makes them causal unless is_causal is false, and dflash runs the non-causal drafter`);
  }
  return {
    numLayers: d.numLayers,
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.rmsNormEps,
    ropeTheta: d.ropeTheta,
    blockSize: f.blockSize,
    maskTokenId: mask,
    targetLayerIds: layerIds.slice(),
    inputEmbeddingScale: f.inputEmbeddingScale,
    ropeLlama3: d.ropeLlama3,
    attentionBias,
    slidingWindows,
    ...(d2 ? { dflash2: { ...d2, vocabSize: target.vocabSize } } : {}),
    quant,
  };
}
