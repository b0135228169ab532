// Hugging Face config.json -> the normalised configs the native engine takes. Qwen3 and Llama
// targets; DFlash drafters in the z-lab layout (architectures ["DFlashDraftModel"]). Every
// unsupported or inconsistent value is an Error naming the key.
export interface TargetConfig {
  family: 'qwen3' | 'llama';
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
  tieWordEmbeddings: boolean;
  ropeLlama3: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number } | null;
  eosTokenIds: number[];
  bosTokenId: number | null;
  maxPositionEmbeddings: number;
  torchDtype: string;
}

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
  ropeLlama3: TargetConfig['ropeLlama3'];
}

type Json = Record<string, unknown>;

function int(cfg: Json, key: string, where: string, dflt?: number): number {
  const v = cfg[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`${where} config.json: '${key}' must be a non-negative integer (got ${JSON.stringify(v)})`);
  return v;
}
function num(cfg: Json, key: string, where: string, dflt?: number): number {
  const v = cfg[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where} config.json: '${key}' must be a number (got ${JSON.stringify(v)})`);
  return v;
}
function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

// rope_scaling (or transformers 5's rope_parameters): llama3 scaling, none, or an error.
function ropeScaling(cfg: Json, where: string): TargetConfig['ropeLlama3'] {
  const rp = cfg.rope_parameters as Json | null | undefined;
  const rs = (cfg.rope_scaling ?? (rp && rp.rope_type !== undefined && rp.rope_type !== 'default' ? rp : null)) as Json | null | undefined;
  if (!rs) return null;
  const rt = rs.rope_type ?? rs.type;
  if (rt === 'default') return null;
  if (rt !== 'llama3') throw new Error(`${where} config.json: rope_scaling type ${JSON.stringify(rt)} is not supported (llama3 only)`);
  return {
    factor: num(rs, 'factor', where), lowFreqFactor: num(rs, 'low_freq_factor', where), highFreqFactor: num(rs, 'high_freq_factor', where),
    originalMaxPositionEmbeddings: int(rs, 'original_max_position_embeddings', where),
  };
}

function ropeTheta(cfg: Json, where: string): number {
  if (cfg.rope_theta !== undefined) return num(cfg, 'rope_theta', where);
  const rp = cfg.rope_parameters as Json | null | undefined;
  if (rp && rp.rope_theta !== undefined) return num(rp, 'rope_theta', `${where} rope_parameters`);
  return 10000;
}

export function targetConfigFromHF(cfg: Json): TargetConfig {
  const arch = Array.isArray(cfg.architectures) ? String(cfg.architectures[0]) : '';
  const type = String(cfg.model_type ?? '');
  let family: 'qwen3' | 'llama';
  if (type === 'qwen3' || arch === 'Qwen3ForCausalLM') family = 'qwen3';
  else if (type === 'llama' || arch === 'LlamaForCausalLM') family = 'llama';
  else throw new Error(`target config.json: unsupported model (model_type ${JSON.stringify(cfg.model_type)}, architectures ${JSON.stringify(cfg.architectures)}); dflash runs Qwen3 and Llama`);
  const where = 'target';
  if (cfg.attention_bias === true) throw new Error(`target config.json: 'attention_bias' true is not supported`);
  if (cfg.mlp_bias === true) throw new Error(`target config.json: 'mlp_bias' true is not supported`);
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') throw new Error(`target config.json: 'hidden_act' ${JSON.stringify(cfg.hidden_act)} is not supported (silu only)`);
  const hidden = int(cfg, 'hidden_size', where);
  const heads = int(cfg, 'num_attention_heads', where);
  const kvHeads = int(cfg, 'num_key_value_heads', where, heads);
  const headDim = cfg.head_dim === undefined || cfg.head_dim === null ? hidden / heads : int(cfg, 'head_dim', where);
  if (!Number.isInteger(headDim)) throw new Error(`target config.json: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  if (heads % kvHeads !== 0) throw new Error(`target config.json: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const ropeLlama3 = ropeScaling(cfg, 'target');
  return {
    family,
    vocabSize: int(cfg, 'vocab_size', where),
    hiddenSize: hidden,
    intermediateSize: int(cfg, 'intermediate_size', where),
    numLayers: int(cfg, 'num_hidden_layers', where),
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    rmsNormEps: num(cfg, 'rms_norm_eps', where, 1e-6),
    ropeTheta: ropeTheta(cfg, where),
    qkNorm: family === 'qwen3',
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    ropeLlama3,
    eosTokenIds: ids(cfg.eos_token_id),
    bosTokenId: typeof cfg.bos_token_id === 'number' ? cfg.bos_token_id : null,
    maxPositionEmbeddings: int(cfg, 'max_position_embeddings', where, 4096),
    torchDtype: String(cfg.torch_dtype ?? cfg.dtype ?? 'float32'),
  };
}

export function drafterConfigFromHF(cfg: Json, target: TargetConfig): DrafterConfig {
  const where = 'drafter';
  const arch = Array.isArray(cfg.architectures) ? String(cfg.architectures[0]) : '';
  if (arch !== 'DFlashDraftModel') throw new Error(`drafter config.json: architectures must be ["DFlashDraftModel"], got ${JSON.stringify(cfg.architectures)}`);
  const dc = (cfg.dflash_config ?? {}) as Json;
  const hidden = int(cfg, 'hidden_size', where);
  if (hidden !== target.hiddenSize) throw new Error(`drafter config.json: hidden_size ${hidden} differs from the target's ${target.hiddenSize}`);
  const heads = int(cfg, 'num_attention_heads', where);
  const headDim = cfg.head_dim === undefined || cfg.head_dim === null ? hidden / heads : int(cfg, 'head_dim', where);
  let layerIds = (dc.target_layer_ids ?? cfg.target_layer_ids) as number[] | undefined;
  if (!Array.isArray(layerIds)) {
    // The reference's default: n layers spread over the target, from layer 1 to L - 3.
    const n = int(cfg, 'num_target_features', where, 5);
    const L = int(cfg, 'num_target_layers', where, target.numLayers);
    layerIds = Array.from({ length: n }, (_, i) => Math.round(1 + (i * (L - 4)) / Math.max(1, n - 1)));
  }
  for (const id of layerIds)
    if (!Number.isInteger(id) || id < 0 || id >= target.numLayers)
      throw new Error(`drafter config.json: dflash_config.target_layer_ids entry ${id} is outside the target's ${target.numLayers} layers`);
  const mask = dc.mask_token_id ?? cfg.mask_token_id;
  if (typeof mask !== 'number' || !Number.isInteger(mask) || mask < 0 || mask >= target.vocabSize)
    throw new Error(`drafter config.json: dflash_config.mask_token_id ${JSON.stringify(mask)} must be a token id below the target vocabulary ${target.vocabSize}`);
  const blockSize = int(dc.block_size !== undefined ? dc : cfg, 'block_size', where, 16);
  if (blockSize < 2) throw new Error(`drafter config.json: block_size must be at least 2, got ${blockSize}`);
  const scale = dc.input_embedding_scale ?? cfg.input_embedding_scale ?? 1;
  return {
    numLayers: int(cfg, 'num_hidden_layers', where),
    hiddenSize: hidden,
    intermediateSize: int(cfg, 'intermediate_size', where),
    numHeads: heads,
    numKvHeads: int(cfg, 'num_key_value_heads', where, heads),
    headDim,
    rmsNormEps: num(cfg, 'rms_norm_eps', where, 1e-6),
    ropeTheta: ropeTheta(cfg, where),
    blockSize,
    maskTokenId: mask,
    targetLayerIds: layerIds,
    inputEmbeddingScale: typeof scale === 'number' ? scale : 1,
    ropeLlama3: ropeScaling(cfg, where),
  };
}
