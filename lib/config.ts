// Hugging Face config.json -> the normalised configs the native engine takes (camelCase fields,
// read by native/addon/js_engine.cc). Qwen3 and Llama targets; DFlash drafters in the z-lab layout
// (architectures ["DFlashDraftModel"]). Every unsupported or inconsistent value is an Error that
// names the key. Defaults follow transformers' Qwen3Config / LlamaConfig where a key is absent.
//
// TargetConfig field   <- config.json key
//   family             <- model_type "qwen3" | "llama" (or architectures Qwen3ForCausalLM / LlamaForCausalLM)
//   vocabSize          <- vocab_size                 hiddenSize <- hidden_size
//   intermediateSize   <- intermediate_size          numLayers  <- num_hidden_layers
//   numHeads           <- num_attention_heads        numKvHeads <- num_key_value_heads (default numHeads)
//   headDim            <- head_dim (default: qwen3 128, llama hidden_size / num_attention_heads)
//   rmsNormEps         <- rms_norm_eps (1e-6)        ropeTheta  <- rope_theta | rope_parameters.rope_theta (10000)
//   qkNorm             <- true for qwen3 (q_norm / k_norm), false for llama
//   tieWordEmbeddings  <- tie_word_embeddings (false)
//   ropeLlama3         <- rope_scaling | rope_parameters with rope_type (or type) "llama3", else null
//   eosTokenIds        <- eos_token_id (int or list) bosTokenId <- bos_token_id (or null)
//   maxPositionEmbeddings <- max_position_embeddings (qwen3 32768, llama 2048)
//   torchDtype         <- torch_dtype | dtype ("float32")
export interface RopeLlama3 {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

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
  ropeLlama3: RopeLlama3 | null;
  eosTokenIds: number[];
  bosTokenId: number | null;
  maxPositionEmbeddings: number;
  torchDtype: string;
}

// DrafterConfig field <- drafter config.json key (the drafter's layers are Qwen3 decoder layers)
//   numLayers <- num_hidden_layers; hiddenSize (must equal the target's), intermediateSize, numHeads,
//   numKvHeads, headDim, rmsNormEps, ropeTheta, ropeLlama3: as for the target
//   blockSize <- block_size | dflash_config.block_size (required, >= 2)
//   maskTokenId <- dflash_config.mask_token_id (required, < target vocab_size)
//   targetLayerIds <- dflash_config.target_layer_ids; when absent and num_target_layers is given, the
//     reference's default build_target_layer_ids(num_target_layers, num_hidden_layers):
//     n = 1: [L // 2]; else round(1 + i * (L - 4) / (n - 1)), i < n, Python rounding (half to even)
//   inputEmbeddingScale <- dflash_config.input_embedding_scale (default 1)
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
}

type Json = Record<string, unknown>;

class Reader {
  constructor(private readonly where: string) {}

  /** A value that is inconsistent or unsupported: "<where> config.json: <key> <msg>". */
  fail(key: string, msg: string): never {
    throw new Error(`${this.where} config.json: ${key} ${msg}`);
  }

  /** A value of the wrong type or a missing key: "<where> config.json: '<key>' <msg>". */
  bad(key: string, msg: string): never {
    throw new Error(`${this.where} config.json: '${key}' ${msg}`);
  }

  int(cfg: Json, key: string, dflt?: number, min = 1, label = key): number {
    const v = cfg[key] ?? dflt;
    if (v === undefined) this.bad(label, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.bad(label, `must be an integer >= ${min} (got ${JSON.stringify(v)})`);
    return v;
  }

  num(cfg: Json, key: string, dflt?: number, label = key): number {
    const v = cfg[key] ?? dflt;
    if (v === undefined) this.bad(label, 'is missing');
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(label, `must be a number (got ${JSON.stringify(v)})`);
    return v;
  }

  ids(cfg: Json, key: string): number[] {
    const v = cfg[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0))
      this.bad(key, `must be a token id or a list of token ids (got ${JSON.stringify(v)})`);
    return list as number[];
  }

  // rope_scaling (or transformers 5's rope_parameters): llama3 scaling, none, or an error.
  ropeScaling(cfg: Json): RopeLlama3 | null {
    const rp = cfg.rope_parameters as Json | null | undefined;
    const fromParams = rp && typeof rp === 'object' && rp.rope_type !== undefined && rp.rope_type !== 'default';
    const key = cfg.rope_scaling ? 'rope_scaling' : 'rope_parameters';
    const rs = (cfg.rope_scaling ?? (fromParams ? rp : null)) as Json | null | undefined;
    if (!rs) return null;
    if (typeof rs !== 'object') this.bad(key, `must be an object (got ${JSON.stringify(rs)})`);
    const rt = rs.rope_type ?? rs.type;
    if (rt === 'default') return null;
    if (rt !== 'llama3') throw new Error(`${this.where} config.json: ${key} type ${JSON.stringify(rt)} is not supported (llama3 only)`);
    const r = {
      factor: this.num(rs, 'factor', undefined, `${key}.factor`),
      lowFreqFactor: this.num(rs, 'low_freq_factor', undefined, `${key}.low_freq_factor`),
      highFreqFactor: this.num(rs, 'high_freq_factor', undefined, `${key}.high_freq_factor`),
      originalMaxPositionEmbeddings: this.int(rs, 'original_max_position_embeddings', undefined, 1, `${key}.original_max_position_embeddings`),
    };
    if (!(r.highFreqFactor > r.lowFreqFactor)) this.fail(`${key}.high_freq_factor`, `must be greater than low_freq_factor (${r.lowFreqFactor})`);
    if (!(r.factor > 0)) this.fail(`${key}.factor`, 'must be positive');
    return r;
  }

  ropeTheta(cfg: Json): number {
    if (cfg.rope_theta !== undefined && cfg.rope_theta !== null) return this.num(cfg, 'rope_theta');
    const rp = cfg.rope_parameters as Json | null | undefined;
    if (rp && typeof rp === 'object' && rp.rope_theta !== undefined) return this.num(rp, 'rope_theta', undefined, 'rope_parameters.rope_theta');
    return 10000;
  }

  // The parts a decoder stack shares: attention shape, norms, unsupported switches.
  decoder(cfg: Json, headDimDefault: (hidden: number, heads: number) => number) {
    if (cfg.attention_bias === true) this.fail('attention_bias', 'true is not supported (no q/k/v/o biases)');
    if (cfg.mlp_bias === true) this.fail('mlp_bias', 'true is not supported');
    if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') this.fail('hidden_act', `${JSON.stringify(cfg.hidden_act)} is not supported (silu only)`);
    if (cfg.use_sliding_window === true) this.fail('use_sliding_window', 'true is not supported (full attention only)');
    if (Array.isArray(cfg.layer_types) && cfg.layer_types.some((t) => t !== 'full_attention'))
      this.fail('layer_types', 'must all be "full_attention"');
    const hiddenSize = this.int(cfg, 'hidden_size');
    const numHeads = this.int(cfg, 'num_attention_heads');
    const numKvHeads = this.int(cfg, 'num_key_value_heads', numHeads);
    if (numHeads % numKvHeads !== 0) this.fail('num_key_value_heads', `${numKvHeads} must divide num_attention_heads ${numHeads}`);
    let headDim: number;
    if (cfg.head_dim === undefined || cfg.head_dim === null) {
      headDim = headDimDefault(hiddenSize, numHeads);
      if (!Number.isInteger(headDim)) this.fail('hidden_size', `${hiddenSize} is not a multiple of num_attention_heads ${numHeads} (and head_dim is not given)`);
    } else headDim = this.int(cfg, 'head_dim');
    return {
      hiddenSize,
      intermediateSize: this.int(cfg, 'intermediate_size'),
      numLayers: this.int(cfg, 'num_hidden_layers'),
      numHeads,
      numKvHeads,
      headDim,
      rmsNormEps: this.num(cfg, 'rms_norm_eps', 1e-6),
      ropeTheta: this.ropeTheta(cfg),
      ropeLlama3: this.ropeScaling(cfg),
    };
  }
}

function asObject(json: unknown, where: string): Json {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${where} config.json: not a JSON object`);
  return json as Json;
}

/** Maps a Qwen3 or Llama config.json to the engine's TargetConfig. */
export function targetConfigFromHF(json: Json): TargetConfig {
  const cfg = asObject(json, 'target');
  const r: Reader = new Reader('target');
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  const type = String(cfg.model_type ?? '');
  let family: 'qwen3' | 'llama';
  if (archs.includes('Qwen3ForCausalLM') || (archs.length === 0 && type === 'qwen3')) family = 'qwen3';
  else if (archs.includes('LlamaForCausalLM') || (archs.length === 0 && type === 'llama')) family = 'llama';
  else if (type === 'qwen3' || type === 'llama') family = type;
  else throw new Error(`target config.json: unsupported model (model_type ${JSON.stringify(cfg.model_type)}, architectures ${JSON.stringify(cfg.architectures)}); dflash runs Qwen3 and Llama`);
  // transformers: Qwen3Config(head_dim=128); LlamaConfig head_dim = hidden_size // num_attention_heads.
  const d = r.decoder(cfg, family === 'qwen3' ? () => 128 : (h, n) => h / n);
  const bos = r.ids(cfg, 'bos_token_id');
  return {
    family,
    vocabSize: r.int(cfg, 'vocab_size'),
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numLayers: d.numLayers,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.rmsNormEps,
    ropeTheta: d.ropeTheta,
    qkNorm: family === 'qwen3',
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    ropeLlama3: d.ropeLlama3,
    eosTokenIds: r.ids(cfg, 'eos_token_id'),
    bosTokenId: bos.length ? bos[0] : null,
    maxPositionEmbeddings: r.int(cfg, 'max_position_embeddings', family === 'qwen3' ? 32768 : 2048),
    torchDtype: String(cfg.torch_dtype ?? cfg.dtype ?? 'float32'),
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

/** Maps a z-lab DFlash drafter config.json to the engine's DrafterConfig, checked against the
 *  target it will draft for. */
export function drafterConfigFromHF(json: Json, target: TargetConfig): DrafterConfig {
  const cfg = asObject(json, 'drafter');
  const r: Reader = new Reader('drafter');
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  if (!archs.includes('DFlashDraftModel')) r.fail('architectures', `must be ["DFlashDraftModel"] (got ${JSON.stringify(cfg.architectures)})`);
  const dcRaw = cfg.dflash_config ?? {};
  if (typeof dcRaw !== 'object' || dcRaw === null || Array.isArray(dcRaw)) r.bad('dflash_config', 'must be an object');
  const dc = dcRaw as Json;
  if (dc.projector_type !== undefined && dc.projector_type !== null) r.fail('dflash_config.projector_type', `${JSON.stringify(dc.projector_type)} is not supported`);
  if (dc.target_layer_fusion_mode !== undefined && dc.target_layer_fusion_mode !== 'none')
    r.fail('dflash_config.target_layer_fusion_mode', `${JSON.stringify(dc.target_layer_fusion_mode)} is not supported`);

  const d = r.decoder(cfg, () => 128);  // the drafter's layers are Qwen3 layers: Qwen3Config(head_dim=128)
  if (d.hiddenSize !== target.hiddenSize) r.fail('hidden_size', `${d.hiddenSize} differs from the target's hidden_size ${target.hiddenSize}`);

  const blockKey = cfg.block_size !== undefined ? 'block_size' : 'dflash_config.block_size';
  const blockSize = r.int(cfg.block_size !== undefined ? cfg : dc, 'block_size', undefined, 2, blockKey);

  let numTargetLayers: number | undefined;
  if (cfg.num_target_layers !== undefined && cfg.num_target_layers !== null) {
    numTargetLayers = r.int(cfg, 'num_target_layers');
    if (numTargetLayers !== target.numLayers)
      r.fail('num_target_layers', `${numTargetLayers} differs from the target's num_hidden_layers ${target.numLayers}: this drafter was made for another target`);
  }
  let layerIds: number[];
  const rawIds = dc.target_layer_ids ?? cfg.target_layer_ids;
  if (rawIds === undefined || rawIds === null) {
    if (numTargetLayers === undefined) r.bad('dflash_config.target_layer_ids', 'is missing (and num_target_layers is not given to derive the default)');
    layerIds = defaultTargetLayerIds(numTargetLayers, d.numLayers);
  } else {
    if (!Array.isArray(rawIds) || rawIds.length === 0) r.bad('dflash_config.target_layer_ids', `must be a non-empty list (got ${JSON.stringify(rawIds)})`);
    layerIds = rawIds as number[];
  }
  for (const id of layerIds)
    if (!Number.isInteger(id) || id < 0 || id >= target.numLayers)
      r.fail('dflash_config.target_layer_ids', `entry ${id} is outside the target's ${target.numLayers} layers`);

  const mask = dc.mask_token_id ?? cfg.mask_token_id;
  if (mask === undefined || mask === null) r.bad('dflash_config.mask_token_id', 'is missing');
  if (typeof mask !== 'number' || !Number.isInteger(mask) || mask < 0 || mask >= target.vocabSize)
    r.fail('dflash_config.mask_token_id', `${JSON.stringify(mask)} must be a token id below the target's vocab_size ${target.vocabSize}`);

  const scaleKey = dc.input_embedding_scale !== undefined ? 'dflash_config.input_embedding_scale' : 'input_embedding_scale';
  const scale = r.num(dc.input_embedding_scale !== undefined ? dc : cfg, 'input_embedding_scale', 1, scaleKey);
  return {
    numLayers: d.numLayers,
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.rmsNormEps,
    ropeTheta: d.ropeTheta,
    blockSize,
    maskTokenId: mask,
    targetLayerIds: layerIds.slice(),
    inputEmbeddingScale: scale,
    ropeLlama3: d.ropeLlama3,
  };
}
