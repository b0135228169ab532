// Model hyper-parameters the graph builders need, mapped from HF config.json by lib/ (the
// TypeScript layer) and handed over by the addon. Field names follow HF where they can.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "models/quant.h"
#include "models/weight_spec.h"

namespace dflash::models {

// transformers' rope_scaling {"rope_type": "llama3", ...}.
struct RopeLlama3 {
  bool enabled = false;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// transformers' rope_parameters {"rope_type": "yarn", ...} (gpt-oss): interpolated low frequencies,
// extrapolated high ones, a linear ramp between, and cos/sin scaled by attention_factor.
struct RopeYarn {
  bool enabled = false;
  double factor = 1.0;
  double beta_fast = 32.0, beta_slow = 1.0;
  int64_t original_max_position_embeddings = 4096;
  bool truncate = true;           // floor/ceil the correction range (gpt-oss: false)
  double attention_factor = 1.0;  // resolved by lib/ (0.1 ln(factor) + 1 unless the config gives one)
};

// Qwen3-MoE's sparse MLP (models/moe.h): which layers have it and its sizes.
struct TargetMoe {
  int64_t num_experts = 0;        // E
  int64_t experts_per_token = 0;  // k
  int64_t intermediate = 0;       // moe_intermediate_size
  bool norm_topk_prob = false;
  std::vector<bool> sparse_layers;  // per layer: MoE block (true) or the dense MLP (false)
  int64_t shared_intermediate = 0;  // Qwen3.5-MoE: a shared expert of this width, gated by sigmoid(w x) (0: none)
};

// Qwen3.5's Gated DeltaNet layers (models/gated_delta.h): linear attention whose memory is a
// fixed-size recurrent state per sequence, not KV pages.
struct LinearAttention {
  int64_t key_heads = 0;    // linear_num_key_heads
  int64_t value_heads = 0;  // linear_num_value_heads (a multiple of key_heads)
  int64_t key_dim = 0;      // linear_key_head_dim
  int64_t value_dim = 0;    // linear_value_head_dim
  int64_t conv_kernel = 4;  // linear_conv_kernel_dim
  int64_t conv_dim() const { return 2 * key_heads * key_dim + value_heads * value_dim; }  // [q | k | v] channels
};

// A Qwen3, Qwen3-MoE, Qwen2, Llama, gpt-oss or Qwen3.5 decoder-only target.
struct TargetConfig {
  std::string family = "qwen3";  // "qwen3" | "qwen3_moe" | "qwen2" | "llama" | "gpt_oss" | "qwen3_5"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // HF head_dim, or hidden_size / num_heads when config.json has none
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  bool qk_norm = true;  // Qwen3's per-head q_norm/k_norm; false for Qwen2 and Llama
  bool qkv_bias = false;  // q/k/v_proj biases (Qwen2; attention_bias)
  bool o_bias = false;    // o_proj bias (attention_bias)
  bool tie_word_embeddings = false;
  RopeLlama3 rope_llama3;
  RopeYarn rope_yarn;
  // gpt-oss: one learned logit per query head (self_attn.sinks) that joins every softmax's
  // denominator, and per layer a sliding window (keys in (q - w, q]; 0 = full attention).
  bool attention_sinks = false;
  std::vector<int64_t> layer_windows;      // empty = every layer full
  float swiglu_limit = 7.0f;               // gpt-oss experts: gate <= limit, -limit <= up <= limit
  float swiglu_alpha = 1.702f;             // gpt-oss experts: gate * sigmoid(alpha * gate)
  int64_t max_position_embeddings = 4096;  // the longest sequence the model was made for
  TargetMoe moe;                           // num_experts 0 = a dense model (gpt-oss: every layer sparse)
  WeightQuant quant;                       // Linear weights stored narrow (quantized checkpoints)
  // Qwen3.5 (family "qwen3_5"): per layer a Gated DeltaNet (true) or a gated full-attention layer
  // (false); RoPE on the first rotary_dim dims of each head (0 = all of them).
  std::vector<bool> linear_layers;
  LinearAttention linear;
  int64_t rotary_dim = 0;
  bool is_linear(int64_t layer) const { return layer < static_cast<int64_t>(linear_layers.size()) && linear_layers[layer]; }
  int64_t num_linear_layers() const;
  int64_t num_attention_layers() const { return num_layers - num_linear_layers(); }
  bool hybrid() const { return num_linear_layers() > 0; }
  int64_t window(int64_t layer) const { return layer < static_cast<int64_t>(layer_windows.size()) ? layer_windows[layer] : 0; }
  // Attention layers with a sliding window, and the widest window (0: none).
  int64_t num_sliding_layers() const {
    int64_t n = 0;
    for (int64_t l = 0; l < num_layers; ++l) n += !is_linear(l) && window(l) > 0;
    return n;
  }
  int64_t max_window() const {
    int64_t w = 0;
    for (int64_t l = 0; l < num_layers; ++l) w = std::max(w, is_linear(l) ? 0 : window(l));
    return w;
  }
  bool sparse(int64_t layer) const { return moe.num_experts > 0 && layer < static_cast<int64_t>(moe.sparse_layers.size()) && moe.sparse_layers[layer]; }
};

inline int64_t TargetConfig::num_linear_layers() const {
  int64_t n = 0;
  for (bool l : linear_layers) n += l;
  return n;
}

// DFlash2's additions to the drafter (docs/DRAFTERS.md §5, models/drafter2.h): a grouped dynamic
// causal convolution pair around every attention and MLP sub-layer of the block, and a candidate
// selector that walks the top-k candidates of the block rows. conv_kernel_size 0 = plain DFlash.
struct DFlash2Config {
  int64_t conv_kernel_size = 0;  // taps K
  int64_t conv_group_size = 0;   // channels per dynamic coefficient (divides hidden_size)
  int64_t selector_rank = 0;     // codebook / hidden projection width
  int64_t selector_top_k = 0;    // candidates per block row
  int64_t vocab_size = 0;        // codebook rows (the target's vocab_size)
  float output_multiplier = 1.0f;
  float final_logit_softcapping = 0.0f;  // 0 = none
};

// The DFlash drafter: a stack of Qwen3 decoder layers fed with target features (see
// docs/ARCHITECTURE.md). It borrows the target's embed_tokens and lm_head.
struct DrafterConfig {
  int64_t num_layers = 0;
  int64_t hidden_size = 0;  // equals the target's
  int64_t intermediate_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeLlama3 rope_llama3;  // rope_scaling of the drafter's config.json (LLaMA-3.1 drafters)
  bool attention_bias = false;  // q/k/v/o_proj biases (z-lab's gpt-oss drafters)
  int64_t block_size = 16;
  int64_t mask_token_id = 0;
  std::vector<int32_t> target_layer_ids;  // target layers whose outputs feed `fc`
  float input_embedding_scale = 1.0f;     // noise embedding = embed[ids] * scale
  // Per draft layer: 0 = full attention over the context, w > 0 = keys within w positions of the
  // query on either side (z-lab's flash-attention sliding window). Empty = every layer full.
  std::vector<int64_t> sliding_windows;
  DFlash2Config dflash2;
  WeightQuant quant;  // its layers' Linear weights stored narrow (a quantized drafter checkpoint)
  bool is_dflash2() const { return dflash2.conv_kernel_size > 0; }
};

}  // namespace dflash::models
