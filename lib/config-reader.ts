// Typed reading of one config.json object: every missing, mistyped, out-of-bounds or inconsistent
// value is an Error that names the file, the key and the value (issue #10.5: nothing may reach an
// allocation unchecked). The bounds below are checked before anything is allocated.
export type Json = Record<string, unknown>;

// Upper bounds on config values, chosen so that every tensor dflash builds stays under 2^31
// elements (XLA and PJRT index tensors with int64, but the engine's page / slot / position
// arithmetic and the kernels of some plugins use int32) and so that an absurd value fails here
// with a message instead of as bad_alloc, a std::vector length error or a 740 GB allocation.
// Each limit is far above every published checkpoint (largest in brackets).
export const LIMITS = {
  /** hidden_size [16384: Llama 3.1 405B]. */
  hiddenSize: 65536,
  /** intermediate_size / moe_intermediate_size [53248: Llama 3.1 405B]. */
  intermediateSize: 1 << 20,
  /** num_hidden_layers [126: Llama 3.1 405B]. */
  numLayers: 1024,
  /** num_attention_heads / num_key_value_heads [128]. */
  numHeads: 1024,
  /** head_dim, even (RoPE rotates halves) [256: Gemma, Qwen3.5]. */
  headDim: 512,
  /** vocab_size [262144: Gemma 3]. */
  vocabSize: 1 << 22,
  /** max_position_embeddings and sliding_window: positions are int32 in the graphs, and
   *  position + block + page arithmetic must not overflow [10485760: Llama 4 Scout]. */
  positions: 1 << 26,
  /** num_experts [384: Kimi K2]. */
  numExperts: 1024,
  /** DFlash block_size: a draft is one forward over the block, so its cost grows linearly; the
   *  published drafters use 16 (speculators' default is 8). */
  blockSize: 64,
  /** DFlash2 selector_top_k: the selector walks the top-k candidates of every block row, one
   *  argmax over the vocabulary per candidate [16]. */
  selectorTopK: 256,
  /** Number of target layers a drafter reads (fc input is count * hidden_size) [6]. */
  targetLayers: 64,
  /** Elements of any single weight tensor (int32-indexable). */
  tensorElements: 2 ** 31 - 1,
} as const;

export class Reader {
  /** label: the file as the user knows it ("target config.json" or a path); prefix: where the
   *  keys read by decoder() live inside the file (speculators' "transformer_layer_config."). */
  constructor(readonly label: string, readonly prefix = '') {}

  /** A value that is inconsistent or unsupported: "<file>: <key> <msg>". */
  fail(key: string, msg: string): never {
    throw new Error(`${this.label}: ${key} ${msg}`);
  }

  /** A value of the wrong type or a missing key: "<file>: '<key>' <msg>". */
  bad(key: string, msg: string): never {
    throw new Error(`${this.label}: '${key}' ${msg}`);
  }

  /** Reader for keys nested under `prefix` of the same file. */
  nested(prefix: string): Reader {
    return new Reader(this.label, prefix);
  }

  int(cfg: Json, key: string, dflt?: number, min = 1, label = this.prefix + key, max?: number): number {
    const v = cfg[key] ?? dflt;
    if (v === undefined) this.bad(label, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.bad(label, `must be an integer >= ${min} (got ${JSON.stringify(v)})`);
    if (max !== undefined && v > max) this.bad(label, `is ${v}, above the largest supported value ${max}`);
    return v;
  }

  num(cfg: Json, key: string, dflt?: number, label = this.prefix + key): number {
    const v = cfg[key] ?? dflt;
    if (v === undefined) this.bad(label, 'is missing');
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(label, `must be a number (got ${JSON.stringify(v)})`);
    return v;
  }

  bool(cfg: Json, key: string, dflt: boolean, label = this.prefix + key): boolean {
    const v = cfg[key] ?? dflt;
    if (typeof v !== 'boolean') this.bad(label, `must be true or false (got ${JSON.stringify(v)})`);
    return v;
  }

  str(cfg: Json, key: string, dflt: string, label = this.prefix + key): string {
    const v = cfg[key] ?? dflt;
    if (typeof v !== 'string') this.bad(label, `must be a string (got ${JSON.stringify(v)})`);
    return v;
  }

  ids(cfg: Json, key: string): number[] {
    const v = cfg[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0))
      this.bad(this.prefix + key, `must be a token id or a list of token ids (got ${JSON.stringify(v)})`);
    return list as number[];
  }

  /** A list of integers in [0, below); `what` names the range in the message. */
  indexList(v: unknown, key: string, below: number, what: string): number[] {
    if (!Array.isArray(v)) this.bad(key, `must be a list of integers (got ${JSON.stringify(v)})`);
    for (const x of v)
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= below) this.fail(key, `entry ${JSON.stringify(x)} is outside ${what}`);
    return (v as number[]).slice();
  }

  /** Throws unless rows * cols * ... stays int32-indexable; names the keys that set the sizes. */
  elements(what: string, keys: string, ...dims: number[]): void {
    const n = dims.reduce((a, b) => a * b, 1);
    if (n > LIMITS.tensorElements)
      this.fail(keys, `make ${what} ${dims.join(' x ')} = ${n} elements, above the 2^31 - 1 a tensor may have`);
  }

  // rope_scaling (or transformers 5's rope_parameters): llama3 scaling, none, or an error; yarn
  // when the caller reads it itself (allowYarn: gpt-oss, lib/config-gpt-oss.ts).
  ropeScaling(cfg: Json, allowYarn = false): RopeLlama3 | null {
    const rp = cfg.rope_parameters as Json | null | undefined;
    const fromParams = rp && typeof rp === 'object' && rp.rope_type !== undefined && rp.rope_type !== 'default';
    const key = this.prefix + (cfg.rope_scaling ? 'rope_scaling' : 'rope_parameters');
    const rs = (cfg.rope_scaling ?? (fromParams ? rp : null)) as Json | null | undefined;
    if (!rs) return null;
    if (typeof rs !== 'object') this.bad(key, `must be an object (got ${JSON.stringify(rs)})`);
    const rt = rs.rope_type ?? rs.type;
    if (rt === 'default' || (rt === 'yarn' && allowYarn)) return null;
    if (rt !== 'llama3') this.fail(key, `type ${JSON.stringify(rt)} is not supported (llama3${allowYarn ? ' or yarn' : ''} only)`);
    const r = {
      factor: this.num(rs, 'factor', undefined, `${key}.factor`),
      lowFreqFactor: this.num(rs, 'low_freq_factor', undefined, `${key}.low_freq_factor`),
      highFreqFactor: this.num(rs, 'high_freq_factor', undefined, `${key}.high_freq_factor`),
      originalMaxPositionEmbeddings: this.int(rs, 'original_max_position_embeddings', undefined, 1, `${key}.original_max_position_embeddings`, LIMITS.positions),
    };
    if (!(r.highFreqFactor > r.lowFreqFactor)) this.fail(`${key}.high_freq_factor`, `must be greater than low_freq_factor (${r.lowFreqFactor})`);
    if (!(r.factor > 0)) this.fail(`${key}.factor`, 'must be positive');
    return r;
  }

  ropeTheta(cfg: Json): number {
    let theta = 10000;
    if (cfg.rope_theta !== undefined && cfg.rope_theta !== null) theta = this.num(cfg, 'rope_theta');
    else {
      const rp = cfg.rope_parameters as Json | null | undefined;
      if (rp && typeof rp === 'object' && rp.rope_theta !== undefined) theta = this.num(rp, 'rope_theta', undefined, this.prefix + 'rope_parameters.rope_theta');
    }
    if (!(theta > 0)) this.fail(this.prefix + 'rope_theta', `${theta} must be positive`);
    return theta;
  }

  // The parts a decoder stack shares: attention shape, norms, unsupported switches, bounds.
  // attentionBias: the caller runs attention_bias (a target); else it is refused.
  decoder(cfg: Json, headDimDefault: (hidden: number, heads: number) => number,
    allow: { attentionBias?: boolean; quantized?: boolean; yarn?: boolean } = {}) {
    const p = this.prefix;
    // Switches are read as booleans: a string such as "true" is an error, not false.
    if (this.bool(cfg, 'attention_bias', false) && !allow.attentionBias) this.fail(p + 'attention_bias', 'true is not supported (no q/k/v/o biases)');
    if (this.bool(cfg, 'mlp_bias', false)) this.fail(p + 'mlp_bias', 'true is not supported');
    if (cfg.quantization_config !== undefined && cfg.quantization_config !== null && !allow.quantized)
      this.fail(p + 'quantization_config', 'is not supported here');
    if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') this.fail(p + 'hidden_act', `${JSON.stringify(cfg.hidden_act)} is not supported (silu only)`);
    const hiddenSize = this.int(cfg, 'hidden_size', undefined, 1, undefined, LIMITS.hiddenSize);
    const numHeads = this.int(cfg, 'num_attention_heads', undefined, 1, undefined, LIMITS.numHeads);
    const numKvHeads = this.int(cfg, 'num_key_value_heads', numHeads, 1, undefined, LIMITS.numHeads);
    if (numHeads % numKvHeads !== 0) this.fail(p + 'num_key_value_heads', `${numKvHeads} must divide num_attention_heads ${numHeads}`);
    let headDim: number;
    if (cfg.head_dim === undefined || cfg.head_dim === null) {
      headDim = headDimDefault(hiddenSize, numHeads);
      if (!Number.isInteger(headDim)) this.fail(p + 'hidden_size', `${hiddenSize} is not a multiple of num_attention_heads ${numHeads} (and head_dim is not given)`);
    } else headDim = this.int(cfg, 'head_dim', undefined, 1, undefined, LIMITS.headDim);
    if (headDim % 2 !== 0 || headDim > LIMITS.headDim)
      this.fail(p + 'head_dim', `${headDim} must be even (RoPE rotates two halves) and at most ${LIMITS.headDim}`);
    const intermediateSize = this.int(cfg, 'intermediate_size', undefined, 1, undefined, LIMITS.intermediateSize);
    this.elements('q_proj / o_proj', `${p}num_attention_heads * ${p}head_dim * ${p}hidden_size`, numHeads, headDim, hiddenSize);
    this.elements('gate_proj / up_proj / down_proj', `${p}intermediate_size * ${p}hidden_size`, intermediateSize, hiddenSize);
    const rmsNormEps = this.num(cfg, 'rms_norm_eps', 1e-6);
    if (!(rmsNormEps > 0 && rmsNormEps < 1)) this.fail(p + 'rms_norm_eps', `${rmsNormEps} must be in (0, 1)`);
    return {
      hiddenSize,
      intermediateSize,
      numLayers: this.int(cfg, 'num_hidden_layers', undefined, 1, undefined, LIMITS.numLayers),
      numHeads,
      numKvHeads,
      headDim,
      rmsNormEps,
      ropeTheta: this.ropeTheta(cfg),
      ropeLlama3: this.ropeScaling(cfg, allow.yarn),
    };
  }
}

export interface RopeLlama3 {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** The parsed root object of a config.json, or an Error naming the file and what it holds. */
export function asObject(json: unknown, label: string): Json {
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new Error(`${label}: not a JSON object (got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json})`);
  return json as Json;
}

/** A nested object key (absent or null -> {}), or an Error naming it. */
export function subObject(r: Reader, cfg: Json, key: string): Json {
  const v = cfg[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) r.bad(r.prefix + key, `must be an object (got ${JSON.stringify(v)})`);
  return v as Json;
}
