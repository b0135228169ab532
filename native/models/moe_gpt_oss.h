// gpt-oss's MoE block (transformers' GptOssMLP: GptOssTopKRouter + GptOssExperts), beside the
// Qwen3-MoE block of models/moe.h. Per token x (H):
//   r = W_router x + b_router (E logits, rounded to the activation dtype as a Linear's output)
//   S = the k experts of largest r;  w = softmax(r_S)          (top-k first, then the softmax)
//   [g | u] = x W_gate_up[e] + b_gate_up[e]   gate = even columns, up = odd columns (interleaved)
//   g = min(g, limit); u = clamp(u, -limit, limit); a = (u + 1) * g * sigmoid(alpha g)
//   y = sum_{e in S} w_e * (a W_down[e] + b_down[e])
// The experts are stored as transformers keeps them, (E, H, 2I) and (E, I, H): `x @ W`, not a
// Linear's `x @ W^T`; an MXFP4 checkpoint keeps them as Linear weights, (E, 2I, H) and (E, H, I)
// (`linear_layout`), and narrow on the device: the selected experts' bytes are gathered, then
// expanded (models/quant.h), so a step reads k experts' 4-bit payloads, never all E expanded.
// Dots accumulate in f32; routing weights are f32.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/layers.h"
#include "models/moe.h"
#include "models/quant.h"
#include "models/numerics.h"
#include "models/parallel.h"
#include "models/weight_spec.h"

namespace dflash::models {

struct GptOssMoeConfig {
  int64_t num_experts = 0;        // E   num_local_experts
  int64_t experts_per_token = 0;  // k   num_experts_per_tok
  int64_t intermediate = 0;       // I   intermediate_size
  float limit = 7.0f;             // swiglu_limit
  float alpha = 1.702f;           // swiglu_alpha
  bool linear_layout = false;     // experts as (E, out, in): gate_up (E, 2I, H), down (E, H, I)
};

// One layer's block, as graph values.
struct GptOssMoeWeights {
  hlo::Value router, router_bias;      // (E, H), (E)        mlp.router.weight / .bias
  hlo::Value gate_up, gate_up_bias;    // (E, H, 2I), (E, 2I) mlp.experts.gate_up_proj / _bias
  hlo::Value down, down_bias;          // (E, I, H), (E, H)   mlp.experts.down_proj / _bias
  // Narrow experts (quantized checkpoints): the stored inputs, gathered before expanding.
  NarrowStack gate_up_n, down_n;
};

// x (T, H) -> routing: experts (T, k) s32 in descending logit order, weights (T, k) f32.
MoeRouting GptOssRoute(hlo::Builder& b, const hlo::Value& x, const GptOssMoeWeights& w, const GptOssMoeConfig& cfg, const Numerics& n);

// The block: x (T, H) -> (T, H) in the activation dtype. kDense runs every expert on every token
// (weights zero where unselected), kGathered reads only the selected experts' matrices; kAuto as
// ChooseMoeImpl decides for Qwen3-MoE.
hlo::Value GptOssMoe(hlo::Builder& b, const hlo::Value& x, const GptOssMoeWeights& w, const GptOssMoeConfig& cfg,
                     MoeImpl impl, const Numerics& n);

// Appends one layer's block specs under `prefix` ("model.layers.3."), in GptOssMoeWeights order.
// Over a mesh the experts split by intermediate columns: gate_up's 2I columns hold (gate, up)
// pairs, so a contiguous split keeps pairs whole; down splits its I rows; router and down's bias
// stay whole (the bias is added once, after the partial sums meet).
void AppendGptOssMoeSpecs(std::vector<WeightSpec>& specs, const std::string& prefix, int64_t hidden, const GptOssMoeConfig& cfg,
                          pjrt::DType dtype, const TensorParallel& tp = {});

// Takes a layer's block weights by name from a program's weight inputs.
// Narrow experts (stored parts present) come with their stored payloads and scales, `quant` their layout.
GptOssMoeWeights TakeGptOssMoe(const WeightInputs& w, const std::string& prefix, const QuantLayout& quant = {});

}  // namespace dflash::models
