// The DFlash drafter program (docs/ARCHITECTURE.md, "Drafter program"), after z-lab/dflash
// dflash/model.py: target features are fused (fc + hidden_norm) and injected as extra K/V rows
// into every draft layer; a block [last, mask x (B-1)] attends non-causally over
// [valid context ; block] and the argmax of rows 1..B-1 are the proposals.
#pragma once
#include <cstdint>
#include <vector>

#include "models/config.h"
#include "models/program.h"
#include "models/target.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct DraftShape {
  int64_t ctx_capacity = 0;  // C rows of ctx_k/ctx_v (a power of two)
  int64_t append_rows = 0;   // A feature rows appended this call (only accept[0, 0] are valid)
  int64_t block = 16;        // B block tokens
  bool want_logits = false;
  // Sampling: proposals are drawn from the drafter's processed distributions instead of argmax.
  // Adds parameters sample_params f32[3] (temperature, top_p, top_k) and uniforms f32[1, B]
  // after ctx_len, and a last result `probs` f32[1, B, V] (row i: the distribution of draft
  // token i; row 0 is zero) that the target's speculative-sampling accept consumes.
  bool sampling = false;
};

// fc, hidden_norm, per-layer Qwen3 tensors, norm (names without the optional "model." prefix).
std::vector<WeightSpec> DrafterWeightSpecs(const DrafterConfig& cfg);

// Parameters: drafter weights..., embed [V, H] and lm_head [V, H] (target dtype; pass the
// embedding twice when tied), ctx_k, ctx_v f32[Ld, C, kvh, hd] (donated into results 0/1),
// feats f32[1, A, n*H], accept s32[1, A + 1], ctx_len s32[].
// Results: ctx_k, ctx_v, draft s32[1, B], [logits f32[1, B, V]].
// Requires ctx_len + A <= C at run time: the context rows are written with
// dynamic_update_slice, which clamps an overflowing start index (the write would land on
// earlier rows). The engine checks this before the call.
Program BuildDrafter(const DrafterConfig& dcfg, const TargetConfig& tcfg, const DraftShape& shape);

}  // namespace dflash::models
