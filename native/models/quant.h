// Linear weights kept in their stored width on the device (int8, int4, FP8 e4m3) and expanded
// inside the program next to the dot that reads them.
//
// A quantized checkpoint stores W (out, in) as a narrow payload q and f32-able scales s, one per
// block of (block_rows x block_cols) elements (lib/quantization.ts maps each format to this):
//
//   W[o, i] = decode(q)[o, i] * s[o / block_rows, i / block_cols]
//
//   format                          payload on the device         scales (so, si)
//   compressed-tensors int8 channel s8 (out, in)                  (out, 1)
//   compressed-tensors int8 packed  u8 (out, in)                  (out, 1) / (out, in/g)  decode = byte - 128
//   compressed-tensors int4 group g u8 (out, in/2), 2 per byte    (out, in/g)      decode = nibble - 8
//   compressed-tensors fp8 channel  f8e4m3fn (out, in)            (out, 1)
//   fp8 block 128x128 (Qwen FP8)    f8e4m3fn (out, in)            (ceil(out/128), ceil(in/128))
//   MXFP4 (gpt-oss experts)         u8 (out, in/2), 2 e2m1 / byte  (out, in/32) u8 E8M0: 2^(s-127)
//
// One program input per stored tensor: the payload under the weight's own name, the scales under
// name + "_scale" and, for an asymmetric scheme (AWQ, compressed-tensors with zero points), the
// zero points under name + "_zero" (f32, like the scales, in the payload's decoded units:
// W = (decode(q) - zero) * scale). The expansion (decode in f32, times the broadcast scale, rounded to the
// activation dtype) is the same arithmetic a dequantized f32 copy of the checkpoint is made of,
// so a quantized model and its dequantized copy give bit-identical logits (test/47). Whether XLA
// fuses it into the dot's operand read (one narrow read of W per step) or materialises W first
// is the backend's choice; bench/NOTES.md records what each does.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/weight_spec.h"

namespace dflash::models {

// Which Linear weights of a model are stored narrow, and how (one scheme per checkpoint).
struct WeightQuant {
  QuantLayout layout;  // payload kNone: a 16/32-bit checkpoint
  // Linear modules (HF names without ".weight", e.g. "model.layers.0.mlp.down_proj") the
  // checkpoint keeps in 16 bits although the scheme would cover them.
  std::set<std::string> ignore;
  // Expand at load instead (engine/quant_expand.h): the specs get expand_from, not quant.
  bool expand_at_load = false;

  bool enabled() const { return layout.narrow(); }
  // Whether a weight spec is stored narrow: every "*_proj.weight" (attention, MLP, experts) not
  // in `ignore`; embeddings, norms, routers and the LM head never are.
  bool Covers(const std::string& weight_name) const;
  std::string Key() const;  // "int4 g128", "fp8 b128x128", ...: for stats and program keys
};

const char* PayloadName(QuantLayout::Payload p);  // "int8" | "int4" | "fp8" | "mxfp4" | "none"

// An MXFP4 E8M0 scale byte: 2^(s - 127), exact in f32 (2^-127 a subnormal); 255 is NaN.
inline float E8m0ToFloat(uint8_t s) {
  return s == 255 ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, static_cast<int>(s) - 127);
}

// The 16 e2m1 (FP4) codes: sign bit 3, then 0, 0.5, 1, 1.5, 2, 3, 4, 6.
inline constexpr float kE2m1Values[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                          -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
std::string LayoutKey(const QuantLayout& l);        // "int4 g128", "fp8 b128x128", "int8 channel"

// Marks the specs `q` covers as quantized: spec.quant = q.layout (narrow on the device), or
// spec.expand_from = q.layout when q.expand_at_load.
void ApplyQuant(std::vector<WeightSpec>& specs, const WeightQuant& q);

// The tensors the device holds for these specs: a plain spec as it is; a quantized one as its
// payload spec (narrow dtype, int4 packed two per byte along the input dimension), its scale
// spec (f32, name + "_scale", made of the checkpoint's "<part>_scale" tensors) and, with zero
// points, its zero spec (name + "_zero", laid out as the scales). Split over
// `devices` as the weight is; per-channel scales of a weight split by input columns stay whole.
// Throws std::invalid_argument naming the weight and the numbers when a shard would cut a
// scale block or an int4 byte.
std::vector<WeightSpec> StoredSpecs(const std::vector<WeightSpec>& specs, int64_t devices);

// W in `act`: the expansion of a quantized weight's payload (..., out, in'), scales and zero
// points (..., so, si; `zero` empty when the scheme has none) as described above.
hlo::Value ExpandQuantized(hlo::Builder& b, const WeightSpec& spec, const hlo::Value& payload, const hlo::Value& scale,
                           const hlo::Value& zero, hlo::DType act);

// A stack of narrow matrices (MoE experts, (E, out, in)) as a program holds it: the stored inputs
// and their layout. Empty payload name = the stack is not narrow.
struct NarrowStack {
  hlo::Value payload, scale, zero;  // (E, out, in'), (E, so, si), zero as scale or empty
  QuantLayout layout;
  bool narrow() const { return !payload.name.empty(); }
};

// The stack's matrices at `ids` (any shape I...), expanded: (I..., out, in) in `act`. Gathers the
// stored bytes first, so only the selected matrices are ever expanded.
hlo::Value GatherExpanded(hlo::Builder& b, const NarrowStack& stack, const hlo::Value& ids, hlo::DType act);

}  // namespace dflash::models
