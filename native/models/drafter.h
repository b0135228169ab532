// The DFlash drafter programs (docs/ARCHITECTURE.md, "Drafter programs"), after z-lab/dflash
// dflash/model.py. Target features of committed tokens are fused (fc + hidden_norm) and, in every
// draft layer, projected by that layer's k_proj/v_proj into a paged context cache that shares the
// target's block tables (context row = token position). A block [last, mask x (B-1)] then attends
// non-causally over [valid context ; block] and rows 1..B-1 propose the next tokens (a DFlash2
// drafter's through its candidate selector, models/drafter2.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"
#include "models/numerics.h"
#include "models/program.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct DraftShape {
  int64_t rows = 1;           // R batch rows
  int64_t append = 1;         // A feature rows appended per row (positions -1 are skipped)
  int64_t block = 0;          // B > 0: draft a block of up to B tokens per row after appending; 0: append only
  int64_t pages_per_row = 1;  // P, S, N: as the target's ScoreShape (the same block tables)
  int64_t page_size = 16;
  int64_t total_pages = 1;
  // Draft pool (see target.h): the block [last, proposals] of row r goes to draft_pool row
  // pool_slot[r] (and its distributions to probs_pool when sampling). 0 = a `draft` output instead.
  int64_t pool_rows = 0;
  int64_t pool_width = 0;
  bool want_logits = false;  // logits f32 (R, B, V) of every block row (oracle tests)
  bool sampling = false;     // proposals drawn per row (sample_params, uniforms) instead of argmax
  int64_t devices = 1;       // tensor-parallel mesh (models/parallel.h), as the target's ScoreShape
  bool replicated = false;   // the drafter whole on every device (DrafterParallel)

  std::string Key() const;
};

// fc, hidden_norm, per-layer Qwen3 tensors (+ a DFlash2 drafter's convolutions), norm (+ a DFlash2
// drafter's candidate_selector.*), with checkpoint names without the optional "model." prefix.
// Programs take them as inputs named "drafter." + name.
std::vector<WeightSpec> DrafterWeightSpecs(const DrafterConfig& cfg, pjrt::DType dtype, const TargetConfig& target,
                                           int64_t devices = 1, bool replicated = false);
inline constexpr const char* kDrafterPrefix = "drafter.";

// Named inputs: drafter.* weights; model.embed_tokens.weight and (untied) lm_head.weight of the
// target; dk_cache, dv_cache (Ld, N, S, kvh, hd) in kv_dtype (donated); feats (R, A, n * H) in
// dtype (the target's `hidden` output); positions s32 (R, A); block_table s32 (R, P); with a
// block: last s32 (R) (block token 0), block_start s32 (R) (its position = valid context rows),
// block_len s32 (R) (<= B; 0 for padding rows), [draft_pool s32 (M, W), pool_slot s32 (R)
// (donated)], [sample_params f32 (R, 3), uniforms f32 (R, B) (slot i draws block token i),
// [probs_pool f32 (M, W, V)]].
// Outputs: dk_cache, dv_cache, [draft_pool], [probs_pool], [draft s32 (R, B)], [logits].
Program BuildDrafter(const DrafterConfig& dcfg, const TargetConfig& tcfg, const Numerics& numerics, const DraftShape& shape);

}  // namespace dflash::models
