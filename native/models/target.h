// The Qwen3/Llama target's "score" program over the paged KV cache (docs/ARCHITECTURE.md,
// "Target score program"): every batch row appends its K new tokens to its pages and gets any of
// argmax / logits / hidden features / the packed acceptance of a speculative block back.
// The same program serves prefill chunks (no head), plain decode (K = 1) and verify (K = block).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"
#include "models/numerics.h"
#include "models/program.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct ScoreShape {
  int64_t rows = 1;           // R batch rows (sequences); unused rows are all padding
  int64_t tokens = 1;         // K tokens per row (padding has position -1)
  int64_t pages_per_row = 1;  // P block-table entries per row (a bucket; unused -> page 0)
  int64_t page_size = 16;     // S token slots per page
  int64_t total_pages = 1;    // N pages in the cache, page 0 being the trash page
  bool want_logits = false;   // logits f32 (R, K, V)
  bool want_argmax = false;   // argmax s32 (R, K)
  bool want_accept = false;   // accept s32 (R, K + 1), see accept.h
  std::vector<int32_t> hidden_layers;  // hidden (R, K, n * H): outputs of these layers, in order
  // Sampling rows: inputs sample_params f32 (R, 3) = (temperature, top_p, top_k) per row (greedy
  // rows have temperature 0) and uniforms f32 (R, 2K): [0, K) draw slot j's next token (the
  // token at position + 1), [K, 2K) test draft j for acceptance. `argmax` becomes a draw for
  // sampled rows and `accept` lossless speculative sampling (drafter distributions from
  // probs_pool). The engine keys each uniform by (seed, position, purpose), so a sequence's draws
  // do not depend on the batch it runs in.
  bool sampling = false;
  // Draft pool: tokens 1..K-1 of rows with pool_slot < pool_rows - 1 come from
  // draft_pool (pool_rows, pool_width), where the drafter left them (the last pool row is the
  // "none" row). 0 = every token comes from `tokens`.
  int64_t pool_rows = 0;
  int64_t pool_width = 0;
  // Devices of the tensor-parallel mesh the program runs on (models/parallel.h): weights, caches
  // and activations split as TargetParallel() lays them out; 1 = a one-device program.
  int64_t devices = 1;
  // >= 0: log-probabilities with this many top alternatives per slot (models/logprobs.h). With
  // want_accept they follow the accept vector in the same output, for the committed tokens;
  // without, input next_tokens s32 (R, K) and output prompt_logprobs: each slot's next token.
  int64_t logprobs = -1;
  // Grammar-constrained rows (models/token_mask.h): input token_mask s32 (R, K, ceil(V / 32))
  // restricts each slot's tokens before argmax, sampling and the accept rule (log-probabilities
  // stay the model's own, as vLLM reports them by default). The engine's verifies all take it
  // (all ones: nothing refused, and the masking is skipped at run time), so constrained and free
  // batches share their programs.
  bool grammar = false;
  // Hybrid targets (TargetConfig::hybrid, Qwen3.5): slots of the recurrent state arrays (one per
  // sequence of the engine + the trash slot). Inputs conv_state, ssm_state (donated into the
  // outputs of the same names, models/gated_delta.h) and state_slot s32 (R): a row whose first
  // position is 0 starts from a zero state, and the step commits its valid tokens or, with
  // want_accept, its accepted ones.
  int64_t state_slots = 0;
  // > 0: the sliding-window attention layers keep their K/V in per-sequence rings of this many
  // pages (models/sliding_ring.h) instead of the shared pool: inputs swa_k_cache, swa_v_cache
  // (Ls, 1 + state_slots * ring_pages, S, kvh, hd), donated into the outputs of the same names,
  // addressed by state_slot; k_cache / v_cache then hold the full-attention layers only.
  int64_t ring_pages = 0;

  std::string Key() const;  // every field, for program caches
};

// HF tensor names in parameter order (see the contract), in `dtype`, with their shardings over
// `devices` (models/parallel.h).
std::vector<WeightSpec> TargetWeightSpecs(const TargetConfig& cfg, pjrt::DType dtype, int64_t devices = 1);

// Named inputs: the weights (HF names), k_cache, v_cache (L, N, S, kvh, hd) in kv_dtype (donated
// into the outputs of the same names), tokens s32 (R, K), positions s32 (R, K), block_table
// s32 (R, P), [draft_pool s32 (M, W), pool_slot s32 (R)], [sample_params, uniforms,
// [probs_pool f32 (M, W, V)]].
// Outputs: k_cache, v_cache, [argmax], [logits], [hidden], [accept].
// Run-time preconditions (the engine's job): every non-padding position < P * S, and the block
// table's first ceil((position + 1) / S) entries hold the row's pages (XLA clamps an
// out-of-range page index instead of failing). Throws std::invalid_argument for an inconsistent
// config or shape.
Program BuildTargetScore(const TargetConfig& cfg, const Numerics& numerics, const ScoreShape& shape);

}  // namespace dflash::models
