// Rotary position embeddings as HF transformers computes them: f32 inverse frequencies
// (`1 / theta ** (arange(0, hd, 2) / hd)`, optionally rescaled by the llama3 rule), angles
// `position * inv_freq` in f32, cos/sin of `cat(freqs, freqs)`, and the rotate_half convention
// (first half / second half of each head, not interleaved pairs).
#pragma once
#include <vector>

#include "hlo/builder.h"
#include "models/config.h"

namespace dflash::models {

// inv_freq[i] for i in [0, head_dim / 2), rounded to f32 the way torch computes it.
std::vector<float> RopeInvFreq(int64_t head_dim, double theta, const RopeLlama3& llama3 = {});
// The same under YaRN scaling (transformers' _compute_yarn_parameters); the tables' cos and sin
// are then multiplied by yarn.attention_factor (RopeCosSin's `scale`).
std::vector<float> RopeInvFreqYarn(int64_t head_dim, double theta, const RopeYarn& yarn);

struct RopeTables {
  hlo::Value cos, sin;  // (..., 1, hd): positions' shape + a heads axis of 1 + head_dim
};

// positions: s32 of any shape P (padding positions may be negative; their rows are unused).
// scale != 1 multiplies cos and sin in f32 (YaRN's attention factor).
RopeTables RopeCosSin(hlo::Builder& b, const hlo::Value& positions, const std::vector<float>& inv_freq, double scale = 1.0);

// x: (P..., heads, hd) -> x * cos + rotate_half(x) * sin, same shape.
hlo::Value ApplyRope(hlo::Builder& b, const hlo::Value& x, const RopeTables& t);

}  // namespace dflash::models
