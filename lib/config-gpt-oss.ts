// gpt-oss's config.json keys (transformers' GptOssConfig, 5.25), read into the TargetConfig fields
// only gpt-oss sets. Defaults are GptOssConfig's where a key is absent.
//   attentionSinks  <- always (self_attn.sinks: one logit per query head in every softmax)
//   layerWindows    <- layer_types ("sliding_attention" | "full_attention"; default: sliding on even
//                      layers) with sliding_window (128): keys in (q - window, q], null = full
//   ropeYarn        <- rope_parameters | rope_scaling with rope_type "yarn" (GptOssConfig's default:
//                      factor 32, beta_fast 32, beta_slow 1, truncate false, original 4096);
//                      attentionFactor <- attention_factor, else 0.1 * ln(factor) + 1 (factor > 1)
//   moe             <- num_local_experts (128), num_experts_per_tok (4), intermediate_size per
//                      expert; every layer sparse, no dense MLP
//   swigluLimit     <- swiglu_limit (7)               swigluAlpha <- swiglu_alpha (1.702)
//   rmsNormEps      <- rms_norm_eps (1e-5)            ropeTheta   <- rope_theta (150000)
import { Json, LIMITS, Reader } from './config-reader';

export interface RopeYarn {
  factor: number;
  betaFast: number;
  betaSlow: number;
  originalMaxPositionEmbeddings: number;
  truncate: boolean;
  attentionFactor: number;
}

export interface GptOssFields {
  layerWindows: (number | null)[];
  ropeYarn: RopeYarn | null;
  swigluLimit: number;
  swigluAlpha: number;
  numExperts: number;
  numExpertsPerTok: number;
}

const DEFAULT_YARN = { rope_type: 'yarn', factor: 32.0, beta_fast: 32.0, beta_slow: 1.0, truncate: false, original_max_position_embeddings: 4096 };

function ropeYarn(r: Reader, cfg: Json): RopeYarn | null {
  const rp = cfg.rope_scaling ?? cfg.rope_parameters ?? DEFAULT_YARN;
  const key = cfg.rope_scaling ? 'rope_scaling' : 'rope_parameters';
  if (typeof rp !== 'object' || Array.isArray(rp)) return r.bad(key, `must be an object (got ${JSON.stringify(rp)})`);
  const rs = rp as Json;
  const type = rs.rope_type ?? rs.type ?? 'default';
  if (type === 'default') return null;
  if (type !== 'yarn') return r.fail(`${key}.rope_type`, `${JSON.stringify(type)} is not supported for gpt-oss (yarn or default)`);
  for (const k of ['mscale', 'mscale_all_dim'])
    if (rs[k] !== undefined && rs[k] !== null) r.fail(`${key}.${k}`, `${JSON.stringify(rs[k])}: YaRN's mscale variants are not supported (gpt-oss has none)`);
  const factor = r.num(rs, 'factor', undefined, `${key}.factor`);
  if (!(factor > 0)) r.fail(`${key}.factor`, `${factor} must be positive`);
  const given = rs.attention_factor;
  const attentionFactor = given === undefined || given === null ? (factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1)
    : r.num(rs, 'attention_factor', undefined, `${key}.attention_factor`);
  const y: RopeYarn = {
    factor,
    // transformers: `get("beta_fast") or 32` (0 and null both mean the default)
    betaFast: rs.beta_fast ? r.num(rs, 'beta_fast', undefined, `${key}.beta_fast`) : 32,
    betaSlow: rs.beta_slow ? r.num(rs, 'beta_slow', undefined, `${key}.beta_slow`) : 1,
    originalMaxPositionEmbeddings: r.int(rs, 'original_max_position_embeddings', undefined, 1, `${key}.original_max_position_embeddings`, LIMITS.positions),
    truncate: rs.truncate === undefined ? true : r.bool(rs, 'truncate', true),
    attentionFactor,
  };
  if (!(y.betaFast > 0 && y.betaSlow > 0)) r.fail(`${key}.beta_fast`, 'beta_fast and beta_slow must be positive');
  return y;
}

/** The gpt-oss-only fields of a GptOssForCausalLM config.json. */
export function gptOssFields(r: Reader, cfg: Json, numLayers: number): GptOssFields {
  const window = cfg.sliding_window === undefined || cfg.sliding_window === null ? 128
    : r.int(cfg, 'sliding_window', undefined, 1, undefined, LIMITS.positions);
  let types: unknown[];
  if (cfg.layer_types === undefined || cfg.layer_types === null)
    types = Array.from({ length: numLayers }, (_, i) => ((i + 1) % 2 ? 'sliding_attention' : 'full_attention'));
  else if (!Array.isArray(cfg.layer_types) || cfg.layer_types.length !== numLayers)
    return r.fail('layer_types', `must list one type per layer (${numLayers}), got ${JSON.stringify(cfg.layer_types)}`);
  else types = cfg.layer_types;
  const layerWindows = types.map((t, i) => {
    if (t === 'full_attention') return null;
    if (t === 'sliding_attention') return window;
    return r.fail('layer_types', `entry ${i} is ${JSON.stringify(t)}: gpt-oss layers are "sliding_attention" or "full_attention"`);
  });
  const numExperts = r.int(cfg, 'num_local_experts', 128, 1, undefined, LIMITS.numExperts);
  const numExpertsPerTok = r.int(cfg, 'num_experts_per_tok', 4, 1, undefined, numExperts);
  const swigluLimit = r.num(cfg, 'swiglu_limit', 7.0);
  if (!(swigluLimit > 0)) r.fail('swiglu_limit', `${swigluLimit} must be positive`);
  return { layerWindows, ropeYarn: ropeYarn(r, cfg), swigluLimit, swigluAlpha: r.num(cfg, 'swiglu_alpha', 1.702), numExperts, numExpertsPerTok };
}
