// Building blocks shared by the target and drafter graphs, written after HF transformers'
// Qwen3/Llama modeling code: RMSNorm in f32, SiLU-gated MLP, grouped-query attention with a
// boolean visibility mask and an f32 softmax. Weights come in their checkpoint dtype and are
// converted to f32 right before use (XLA:CPU is slow on half-precision dots).
#pragma once
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/config.h"
#include "models/weight_spec.h"

namespace dflash::models {

hlo::DType ToHlo(pjrt::DType t);  // f32/bf16/f16 only; throws std::invalid_argument otherwise

// x * rsqrt(mean(x^2, -1) + eps) * w   (x: (..., D) f32, w: (D) any float dtype)
hlo::Value RmsNorm(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w, float eps);

// x @ w^T with w converted to f32   (x: (..., in), w: (out, in) -> (..., out))
hlo::Value Dense(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w);

// down(silu(gate(x)) * up(x))
hlo::Value SiluMlp(hlo::Builder& b, const hlo::Value& x, const hlo::Value& gate, const hlo::Value& up,
                   const hlo::Value& down);

// Grouped-query attention. q: (Bt, Tq, heads, hd); k, v: (Bt, Tk, kvh, hd); visible: pred
// (Bt, Tq, Tk). Query head h reads kv head h / (heads / kvh), like HF's repeat_kv. Scores are
// scaled by hd^-0.5; a query row with no visible key gets a uniform (finite) distribution
// instead of NaN. Returns (Bt, Tq, heads * hd).
hlo::Value Attention(hlo::Builder& b, const hlo::Value& q, const hlo::Value& k, const hlo::Value& v,
                     const hlo::Value& visible);

// Appends one Qwen3/Llama decoder layer's HF tensor specs, in parameter order, under `prefix`
// (e.g. "model.layers.3." for a target, "layers.0." for a DFlash drafter).
void AppendDecoderLayerSpecs(std::vector<WeightSpec>& specs, const std::string& prefix, int64_t hidden, int64_t heads,
                             int64_t kv_heads, int64_t head_dim, int64_t intermediate, bool qk_norm, pjrt::DType dtype);

// x: (..., heads * hd) -> (..., heads, hd)
hlo::Value SplitHeads(hlo::Builder& b, const hlo::Value& x, int64_t heads, int64_t hd);

}  // namespace dflash::models
