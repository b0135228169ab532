// The DFlash drafter config formats, each read into one normalised set of fields (DrafterFields)
// that lib/config.ts checks against the target. docs/DRAFTERS.md has the sources.
//
//  - z-lab (architectures ["DFlashDraftModel"]): a Qwen3 config plus block_size, num_target_layers
//    and dflash_config {mask_token_id, target_layer_ids, block_size, ...}.
//  - z-lab DFlash2 (architectures ["DFlash2DraftModel"]): the same plus the convolution and selector
//    keys and the logit transforms (docs/DRAFTERS.md §5).
//  - speculators (vllm-project/speculators, speculators_model_type "dflash"): the Qwen3 config
//    nested in transformer_layer_config, top-level block_size / mask_token_id / draft_vocab_size,
//    and aux_hidden_state_layer_ids counting target layers from 1 (z-lab id + 1).
import { Json, LIMITS, Reader, subObject } from './config-reader';

export interface DrafterFields {
  /** The object holding the Qwen3 decoder keys, and a Reader whose prefix names where it lives. */
  decoder: Json;
  decoderReader: Reader;
  blockSize: number;
  maskTokenId: { value: unknown; key: string };
  /** z-lab 0-based target layer ids, or undefined to derive them from numTargetLayers. */
  targetLayerIds: { value: number[] | undefined; key: string };
  numTargetLayers: number | undefined;
  inputEmbeddingScale: number;
  draftVocabSize: { value: number; key: string } | undefined;
  /** DFlash2 keys (architectures ["DFlash2DraftModel"]), or null for a DFlash drafter. */
  dflash2: DFlash2Fields | null;
}

/** A DFlash2 drafter's additions, as z-lab's DFlash2DraftModel reads them (docs/DRAFTERS.md §5). */
export interface DFlash2Fields {
  /** Taps of the grouped dynamic causal convolutions (conv_kernel_size). */
  convKernelSize: number;
  /** Channels sharing one dynamic coefficient (conv_group_size; divides hidden_size). */
  convGroupSize: number;
  /** Width of the selector's codebooks and hidden projection (selector_rank). */
  selectorRank: number;
  /** Candidates per block row, the target head's top-k (selector_top_k). */
  selectorTopK: number;
  /** Drafter logits are lm_head(h) * outputMultiplier ... (output_multiplier, default 1) */
  outputMultiplier: number;
  /** ... then softcap * tanh(logits / softcap) (final_logit_softcapping; null / <= 0 = none). */
  finalLogitSoftcapping: number | null;
}

// transformers' Qwen3Config defaults: speculators stores transformer_layer_config with
// to_diff_dict(), which (transformers 4.x) drops every key equal to these.
const QWEN3_DEFAULTS: Json = {
  vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 32, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 32768,
  use_sliding_window: false, sliding_window: 4096, max_window_layers: 28,
};

export function isSpeculators(cfg: Json): boolean {
  return cfg.speculators_model_type !== undefined || cfg.transformer_layer_config !== undefined ||
    (Array.isArray(cfg.architectures) && cfg.architectures.includes('DFlashSpeculator'));
}

const DFLASH2_KEYS = ['conv_kernel_size', 'conv_group_size', 'selector_rank', 'selector_top_k'] as const;

// Keys of drafter variants dflash does not implement, each refused by name rather than ignored
// (ignoring any of them would run a different model than the one trained). `dflash2`: the config
// is a DFlash2 drafter, whose logit transforms dflash applies.
function rejectUnsupported(r: Reader, cfg: Json, dc: Json, dcKey: string, dflash2 = false): void {
  const stray = DFLASH2_KEYS.find((k) => dc[k] !== undefined || cfg[k] !== undefined);
  if (!dflash2 && stray)
    r.fail(dc[stray] !== undefined ? `${dcKey}.${stray}` : stray, 'is a DFlash2 key, but architectures is not ["DFlash2DraftModel"]: z-lab\'s DFlashDraftModel would ignore it (set architectures to run the DFlash2 drafter)');
  if (r.bool(cfg, 'is_causal', false)) r.fail('is_causal', 'true is not supported: dflash runs the non-causal DFlash drafter');
  if (r.bool(dc, 'causal', false, `${dcKey}.causal`)) r.fail(`${dcKey}.causal`, 'true is not supported: dflash runs the non-causal DFlash drafter');
  for (const k of ['use_swa', 'swa_window_size', 'attention_sink_bias', 'sample_from_anchor', 'markov_rank'])
    if (dc[k] !== undefined && dc[k] !== null && dc[k] !== false) r.fail(`${dcKey}.${k}`, `${JSON.stringify(dc[k])} is not supported`);
  // Logit transforms: only their neutral values (absent, null, or a scale of 1) are accepted, but
  // for DFlash2's own output_multiplier and final_logit_softcapping (z-lab's compute_logits).
  for (const [k, neutral] of [['final_logit_softcapping', null], ['output_multiplier', 1], ['logit_scale', 1]] as const)
    for (const [where, obj] of [[k, cfg], [`${dcKey}.${k}`, dc]] as const)
      if (!(dflash2 && k !== 'logit_scale') && obj[k] !== undefined && obj[k] !== null && obj[k] !== neutral)
        r.fail(where, `${JSON.stringify(obj[k])} is not supported (dflash applies the target's lm_head unscaled)`);
  if (dc.projector_type !== undefined && dc.projector_type !== null) r.fail(`${dcKey}.projector_type`, `${JSON.stringify(dc.projector_type)} is not supported`);
  if (dc.target_layer_fusion_mode !== undefined && dc.target_layer_fusion_mode !== 'none')
    r.fail(`${dcKey}.target_layer_fusion_mode`, `${JSON.stringify(dc.target_layer_fusion_mode)} is not supported`);
}

/** The z-lab layout. */
export function zlabFields(r: Reader, cfg: Json): DrafterFields {
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  const dc = subObject(r, cfg, 'dflash_config');
  const isDFlash2 = archs.includes('DFlash2DraftModel');
  rejectUnsupported(r, cfg, dc, 'dflash_config', isDFlash2);
  if (!isDFlash2 && !archs.includes('DFlashDraftModel'))
    r.fail('architectures', `must be ["DFlashDraftModel"] or ["DFlash2DraftModel"] (got ${JSON.stringify(cfg.architectures)})`);
  const blockKey = cfg.block_size !== undefined ? 'block_size' : 'dflash_config.block_size';
  const blockSize = r.int(cfg.block_size !== undefined ? cfg : dc, 'block_size', undefined, 2, blockKey, LIMITS.blockSize);
  let numTargetLayers: number | undefined;
  if (cfg.num_target_layers !== undefined && cfg.num_target_layers !== null)
    numTargetLayers = r.int(cfg, 'num_target_layers', undefined, 1, undefined, LIMITS.numLayers);
  const idsInDc = dc.target_layer_ids !== undefined && dc.target_layer_ids !== null;
  const rawIds = idsInDc ? dc.target_layer_ids : cfg.target_layer_ids;
  const idsKey = idsInDc || cfg.target_layer_ids === undefined ? 'dflash_config.target_layer_ids' : 'target_layer_ids';
  const scaleInDc = dc.input_embedding_scale !== undefined;
  const vocab = cfg.draft_vocab_size ?? null;
  return {
    decoder: cfg,
    decoderReader: r,
    blockSize,
    maskTokenId: dc.mask_token_id !== undefined && dc.mask_token_id !== null
      ? { value: dc.mask_token_id, key: 'dflash_config.mask_token_id' }
      : { value: cfg.mask_token_id, key: cfg.mask_token_id !== undefined ? 'mask_token_id' : 'dflash_config.mask_token_id' },
    targetLayerIds: { value: rawIds === undefined || rawIds === null ? undefined : checkIdList(r, rawIds, idsKey), key: idsKey },
    numTargetLayers,
    inputEmbeddingScale: r.num(scaleInDc ? dc : cfg, 'input_embedding_scale', 1, scaleInDc ? 'dflash_config.input_embedding_scale' : 'input_embedding_scale'),
    draftVocabSize: vocab === null ? undefined : { value: r.int(cfg, 'draft_vocab_size', undefined, 1, undefined, LIMITS.vocabSize), key: 'draft_vocab_size' },
    dflash2: isDFlash2 ? dflash2Fields(r, cfg, dc) : null,
  };
}

// z-lab's _draft_value(config, name): dflash_config's key first, else the top-level one.
function draftValue(cfg: Json, dc: Json, name: string): { obj: Json; key: string } {
  return dc[name] !== undefined ? { obj: dc, key: `dflash_config.${name}` } : { obj: cfg, key: name };
}

// The DFlash2 keys: z-lab's DFlash2DraftModel has no defaults for the four sizes (int(None) fails),
// nor has vLLM's (dflash_config[...]) or llama.cpp's loader ("missing conv/selector metadata").
function dflash2Fields(r: Reader, cfg: Json, dc: Json): DFlash2Fields {
  const size = (name: string, max: number) => {
    const { obj, key } = draftValue(cfg, dc, name);
    if (obj[name] === undefined || obj[name] === null) r.bad(`dflash_config.${name}`, 'is missing (a DFlash2 drafter needs it)');
    return r.int(obj, name, undefined, 1, key, max);
  };
  const m = draftValue(cfg, dc, 'output_multiplier');
  const outputMultiplier = m.obj.output_multiplier === null ? 1 : r.num(m.obj, 'output_multiplier', 1, m.key);
  // A multiplier <= 0 would reverse or erase the candidates' order: no published drafter has one.
  if (!(outputMultiplier > 0)) r.fail(m.key, `${outputMultiplier} must be positive`);
  const c = draftValue(cfg, dc, 'final_logit_softcapping');
  const cap = c.obj.final_logit_softcapping === null ? 0 : r.num(c.obj, 'final_logit_softcapping', 0, c.key);
  return {
    convKernelSize: size('conv_kernel_size', LIMITS.blockSize),
    convGroupSize: size('conv_group_size', LIMITS.hiddenSize),
    selectorRank: size('selector_rank', LIMITS.hiddenSize),
    selectorTopK: size('selector_top_k', LIMITS.selectorTopK),
    outputMultiplier,
    finalLogitSoftcapping: cap > 0 ? cap : null,
  };
}

/** The speculators layout, mapped to the same fields. */
export function speculatorsFields(r: Reader, cfg: Json): DrafterFields {
  const type = cfg.speculators_model_type;
  if (type !== 'dflash') r.fail('speculators_model_type', `${JSON.stringify(type)} is not supported (dflash only)`);
  const tl = subObject(r, cfg, 'transformer_layer_config');
  if (Object.keys(tl).length === 0) r.bad('transformer_layer_config', 'is missing');
  if (tl.model_type !== undefined && tl.model_type !== 'qwen3')
    r.fail('transformer_layer_config.model_type', `${JSON.stringify(tl.model_type)} is not supported: DFlash drafter layers are Qwen3 layers`);
  rejectUnsupported(r, cfg, {}, 'dflash_config');
  for (const k of ['sample_from_anchor', 'sliding_window_non_causal'])
    if (r.bool(cfg, k, false)) r.fail(k, 'true is not supported');
  const tlr = r.nested('transformer_layer_config.');
  const decoder: Json = { ...QWEN3_DEFAULTS, ...tl };
  // aux_hidden_state_layer_ids count target layers from 1 (hidden_states[0] is the embedding
  // output), z-lab's target_layer_ids from 0: z-lab id = aux id - 1 (speculators DFlashConverter).
  const aux = cfg.aux_hidden_state_layer_ids;
  if (aux === undefined || aux === null) r.bad('aux_hidden_state_layer_ids', 'is missing');
  const auxIds = checkIdList(r, aux, 'aux_hidden_state_layer_ids');
  for (const a of auxIds) if (a < 1) r.fail('aux_hidden_state_layer_ids', `entry ${a} is not a layer output (ids count target layers from 1)`);
  if (cfg.target_hidden_size !== undefined && cfg.target_hidden_size !== null && cfg.target_hidden_size !== decoder.hidden_size)
    r.fail('target_hidden_size', `${JSON.stringify(cfg.target_hidden_size)} differs from transformer_layer_config.hidden_size ${JSON.stringify(decoder.hidden_size)}: a feature projection across hidden sizes is not supported`);
  return {
    decoder,
    decoderReader: tlr,
    blockSize: r.int(cfg, 'block_size', undefined, 2, 'block_size', LIMITS.blockSize),
    maskTokenId: { value: cfg.mask_token_id, key: 'mask_token_id' },
    targetLayerIds: { value: auxIds.map((a) => a - 1), key: 'aux_hidden_state_layer_ids' },
    numTargetLayers: undefined,
    inputEmbeddingScale: 1,
    dflash2: null,
    draftVocabSize: cfg.draft_vocab_size === undefined || cfg.draft_vocab_size === null ? undefined
      : { value: r.int(cfg, 'draft_vocab_size', undefined, 1, undefined, LIMITS.vocabSize), key: 'draft_vocab_size' },
  };
}

function checkIdList(r: Reader, v: unknown, key: string): number[] {
  if (!Array.isArray(v) || v.length === 0) r.bad(key, `must be a non-empty list (got ${JSON.stringify(v)})`);
  if (v.length > LIMITS.targetLayers) r.bad(key, `has ${v.length} entries, above the largest supported ${LIMITS.targetLayers}`);
  for (const x of v) if (typeof x !== 'number' || !Number.isInteger(x)) r.bad(key, `must hold integers (got ${JSON.stringify(x)})`);
  return (v as number[]).slice();
}

/**
 * Per-layer attention windows of a drafter, as z-lab's DFlashDraftModel gets them from
 * transformers' Qwen3Config (4.57.1, the version z-lab pins): sliding_window only exists when
 * use_sliding_window is true (default 4096 when the key is absent); layer_types says which layers
 * use it, and when absent layers i >= max_window_layers (default 28) do. null = full attention.
 * The window's meaning (flash-attention-2's symmetric window) is in docs/DRAFTERS.md.
 */
export function layerWindows(r: Reader, cfg: Json, numLayers: number): (number | null)[] {
  const p = r.prefix;
  const use = r.bool(cfg, 'use_sliding_window', false);
  let window: number | null = null;
  if (use && cfg.sliding_window !== null) window = r.int(cfg, 'sliding_window', 4096, 1, undefined, LIMITS.positions);
  const types = cfg.layer_types;
  if (types === undefined || types === null) {
    const from = r.int(cfg, 'max_window_layers', 28, 0);
    return Array.from({ length: numLayers }, (_, i) => (window !== null && i >= from ? window : null));
  }
  if (!Array.isArray(types) || types.length !== numLayers)
    r.bad(p + 'layer_types', `must list one type per layer (${numLayers}; got ${JSON.stringify(types)})`);
  return types.map((t, i) => {
    if (t === 'full_attention') return null;
    if (t === 'sliding_attention') return window;
    return r.fail(`${p}layer_types[${i}]`, `${JSON.stringify(t)} is not supported (full_attention or sliding_attention)`);
  });
}
