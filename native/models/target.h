// The Qwen3/Llama target's "score" program over a paged KV cache (docs/ARCHITECTURE.md,
// "Target score program"): it appends K new tokens per sequence to the cache and returns any of
// argmax / logits / hidden features / greedy acceptance for them.
#pragma once
#include <cstdint>
#include <vector>

#include "models/config.h"
#include "models/program.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct ScoreShape {
  int64_t batch = 1;          // Bt sequences
  int64_t tokens = 1;         // K tokens per sequence (padding has position -1)
  int64_t pages_per_seq = 1;  // P block-table entries per sequence (a bucket; unused -> page 0)
  int64_t page_size = 16;     // S token slots per page
  int64_t total_pages = 1;    // N pages in the cache, page 0 being the trash page
  bool want_logits = false;
  bool want_argmax = false;
  std::vector<int32_t> hidden_layers;  // target layer ids whose outputs are returned, in order
  bool want_accept = false;
  // Sampling instead of greedy: `argmax` becomes a sampled token per row and `accept` the
  // lossless speculative-sampling result (Bt = 1). Adds parameters after block_table:
  // sample_params f32[3] (temperature, top_p, top_k), uniforms f32[Bt, K + 1], and with
  // want_accept draft_probs f32[Bt, K, V] (the drafter's distributions, row i for token i).
  bool sampling = false;
};

// HF tensor names in parameter order (see the contract).
std::vector<WeightSpec> TargetWeightSpecs(const TargetConfig& cfg);

// Parameters: weights..., k_cache, v_cache f32[L, N, S, kvh, hd] (donated into results 0/1),
// tokens s32[Bt, K], positions s32[Bt, K], block_table s32[Bt, P].
// Results: k_cache, v_cache, [argmax s32[Bt, K]], [logits f32[Bt, K, V]],
// [hidden f32[Bt, K, n * H]], [accept s32[Bt, K + 1]].
// Run-time preconditions (the engine's job): every non-padding position < P * S, and the block
// table's first ceil((position + 1) / S) entries hold the sequence's pages (XLA clamps an
// out-of-range page index instead of failing). Padding tokens (position -1) write page 0 slot 0.
// Throws std::invalid_argument for an inconsistent config or shape.
Program BuildTargetScore(const TargetConfig& cfg, const ScoreShape& shape);

}  // namespace dflash::models
