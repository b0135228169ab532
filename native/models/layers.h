// Building blocks shared by the target and drafter graphs, written after HF transformers'
// Qwen3/Llama modeling code: RMSNorm, SiLU-gated MLP, grouped-query attention with a boolean
// visibility mask. Activations flow in Numerics::dtype; every matmul accumulates in f32 and every
// normalisation/softmax computes in f32 (see numerics.h).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/config.h"
#include "models/numerics.h"
#include "models/parallel.h"
#include "models/quant.h"
#include "models/weight_spec.h"

namespace dflash::models {

// Weight inputs of a program by HF tensor name.
using WeightInputs = std::map<std::string, hlo::Value>;

// Declares one named input per spec (in spec order) and returns them by name; a quantized spec
// (spec.quant) declares its payload, scales and zero points instead and is returned as W
// expanded from them (models/quant.h), so layer code never sees the storage.
// A quantized weight's stored inputs are also there, under name + these suffixes.
WeightInputs DeclareWeights(hlo::Builder& b, const std::vector<WeightSpec>& specs);
inline constexpr const char* kStoredPayload = "#payload";
inline constexpr const char* kStoredScale = "#scale";
inline constexpr const char* kStoredZero = "#zero";
// The stored inputs of a narrow weight `name` (layout `q`), or an empty stack when it is plain.
NarrowStack StoredStack(const WeightInputs& w, const std::string& name, const QuantLayout& q);
const hlo::Value& Weight(const WeightInputs& w, const std::string& name);  // throws naming it

// x * rsqrt(mean(x^2, -1) + eps), in f32, rounded to act, times w   (x: (..., D), w: (D))
hlo::Value RmsNorm(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w, float eps, const Numerics& n);

// x @ w^T   (x: (..., in), w: (out, in) -> (..., out) in act; f32 accumulation)
hlo::Value Dense(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w, const Numerics& n);
// The same, returning the f32 accumulator unrounded (LM heads: logits stay f32).
hlo::Value DenseF32(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w, const Numerics& n);
// Dense plus a bias (out) when `bias` is one (an empty Value: none), added in f32 before the result
// is rounded to the activation dtype (HF's Linear adds it in the matmul's epilogue).
hlo::Value DenseBias(hlo::Builder& b, const hlo::Value& x, const hlo::Value& w, const hlo::Value& bias, const Numerics& n);

// down(silu(gate(x)) * up(x)), gate and up as one weight [gate; up]: one dot of 2I outputs instead
// of two of I (each output the same H-term reduction; faster from a few rows on, bench/PROFILE.md).
// gate_up is (2I, H) on one device, (2, I, H) over a tensor-parallel mesh (the stacked axis keeps
// gate and up apart when I is split).
hlo::Value SiluMlp(hlo::Builder& b, const hlo::Value& x, const hlo::Value& gate_up, const hlo::Value& down, const Numerics& n);

// Grouped-query attention over whole key segments, with one softmax: the plain reference of
// models/paged_attention.h (which the programs run) for the tests. q: (R, Tq, heads, hd) act;
// keys: one or more segments (R, Tk_i, kvh, hd); v: (R, Tk, kvh, hd) with Tk = sum Tk_i, in
// segment order; visible: pred (R, Tq, Tk). Query head h reads kv head h / (heads / kvh), like
// HF's repeat_kv. Scores are f32, scaled by hd^-0.5; a query row with no visible key gets a
// uniform (finite) distribution instead of NaN. Returns (R, Tq, heads * hd) in act. A segment
// longer than kScoreChunk slots (then a multiple of it) is scored kScoreChunk slots at a time.
inline constexpr int64_t kScoreChunk = 256;
hlo::Value Attention(hlo::Builder& b, const hlo::Value& q, const std::vector<hlo::Value>& keys, const hlo::Value& v,
                     const hlo::Value& visible, const Numerics& n);

// One Qwen3/Llama decoder layer's weights.
struct DecoderLayer {
  hlo::Value ln1, q, k, v, o, q_norm, k_norm, ln2, gate_up, down;  // q_norm/k_norm: qwen3 only
  hlo::Value q_bias, k_bias, v_bias, o_bias;                       // empty where the model has none
};
// Which attention projections carry a bias (Qwen2: q/k/v; attention_bias: q/k/v and o).
struct AttentionBias {
  bool qkv = false, o = false;
};
// dense_mlp false: the attention half only (a MoE layer's MLP is its expert block).
DecoderLayer TakeDecoderLayer(const WeightInputs& w, const std::string& prefix, bool qk_norm, AttentionBias bias = {},
                              bool dense_mlp = true);

// Appends one Qwen3/Llama decoder layer's tensor specs, in parameter order, under `prefix`
// (e.g. "model.layers.3." for a target, "layers.0." for a DFlash drafter): HF names, but
// mlp.gate_up_proj.weight ((2I, H), over a mesh (2, I, H)), made at load of mlp.gate_proj.weight
// and mlp.up_proj.weight;
// shardings of the Megatron layout (models/parallel.h). The MLP's specs come last (a sparse MoE
// layer drops kDenseMlpSpecs of them).
inline constexpr size_t kDenseMlpSpecs = 2;
void AppendDecoderLayerSpecs(std::vector<WeightSpec>& specs, const std::string& prefix, int64_t hidden, int64_t heads,
                             int64_t kv_heads, int64_t head_dim, int64_t intermediate, bool qk_norm, pjrt::DType dtype,
                             const TensorParallel& tp, AttentionBias bias = {});

// One decoder layer's attention projections, per token: q (..., heads, hd) and k, v
// (..., tp.kv_heads, hd) — KV heads repeated when the mesh has more devices than the model has KV
// heads — split by heads over the devices.
struct Qkv {
  hlo::Value q, k, v;
};
Qkv ProjectQkv(hlo::Builder& b, const hlo::Value& x, const DecoderLayer& w, int64_t heads, int64_t kv_heads, int64_t hd,
               const TensorParallel& tp, const Numerics& n);

// x: (..., heads * hd) -> (..., heads, hd)
hlo::Value SplitHeads(hlo::Builder& b, const hlo::Value& x, int64_t heads, int64_t hd);

}  // namespace dflash::models
