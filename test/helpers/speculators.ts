// Converts a z-lab DFlash drafter config.json to the vllm-project/speculators format the way
// speculators' DFlashConverter._build_config does (src/speculators/convert/dflash/converter.py):
// the Qwen3 keys move under transformer_layer_config, block_size / mask_token_id go to the top
// level, draft_vocab_size = vocab_size, and aux_hidden_state_layer_ids = target_layer_ids + 1.
// `diffDict` additionally drops the keys equal to transformers' Qwen3Config defaults, as
// transformers 4.x PretrainedConfig.to_diff_dict() does when speculators saves the config.
type Json = Record<string, unknown>;

const NON_TRANSFORMER_KEYS = new Set(['architectures', 'auto_map', 'block_size', 'dflash_config', 'num_target_layers']);
const QWEN3_DEFAULTS: Json = {
  vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 32, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 32768,
  use_sliding_window: false, max_window_layers: 28, hidden_act: 'silu', attention_bias: false, tie_word_embeddings: false,
};

export function toSpeculatorsConfig(zlab: Json, verifier: string, opts: { diffDict?: boolean } = {}): Json {
  const dc = (zlab.dflash_config ?? {}) as Json;
  const tl: Json = {};
  for (const [k, v] of Object.entries(zlab)) {
    if (NON_TRANSFORMER_KEYS.has(k)) continue;
    if (opts.diffDict && k in QWEN3_DEFAULTS && QWEN3_DEFAULTS[k] === v) continue;
    tl[k] = v;
  }
  const blockSize = (zlab.block_size ?? dc.block_size) as number;
  return {
    architectures: ['DFlashSpeculator'],
    speculators_model_type: 'dflash',
    speculators_version: '0.3.0',
    transformer_layer_config: tl,
    draft_vocab_size: zlab.vocab_size,
    block_size: blockSize,
    target_hidden_size: null,
    aux_hidden_state_layer_ids: (dc.target_layer_ids as number[]).map((i) => i + 1),
    mask_token_id: dc.mask_token_id,
    sliding_window_non_causal: false,
    sample_from_anchor: false,
    speculators_config: {
      algorithm: 'dflash',
      default_proposal_method: 'greedy',
      proposal_methods: [{ proposal_type: 'greedy', speculative_tokens: blockSize - 1 }],
      verifier: { name_or_path: verifier, architectures: ['Qwen3ForCausalLM'] },
    },
  };
}
