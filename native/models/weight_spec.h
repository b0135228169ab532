// One weight tensor a model program takes as a parameter: its name (the HF checkpoint tensor's,
// unless made of parts), shape and the dtype it is uploaded in (the engine's; the loader
// converts checkpoint tensors of another dtype).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hlo/builder.h"  // hlo::Sharding
#include "pjrt/client.h"  // pjrt::DType

namespace dflash::models {

// How a Linear weight is stored narrow on the device (models/quant.h); kNone: as the spec's dtype.
struct QuantLayout {
  // kInt8: s8; kInt8Packed: u8 holding value + 128; kInt4: u8 holding two values + 8, low nibble
  // first; kFp8: f8e4m3fn; kMxfp4: u8 holding two e2m1 values, low nibble first, with u8 E8M0
  // scales (2^(s - 127)) kept as they are on the device (OCP MX, gpt-oss's experts).
  enum class Payload { kNone, kInt8, kInt8Packed, kInt4, kFp8, kMxfp4 };
  Payload payload = Payload::kNone;
  int64_t block_rows = 1;  // output rows one scale covers
  int64_t block_cols = 0;  // input columns one scale covers; 0 = the whole row (one scale per channel)
  bool zero_point = false; // asymmetric: W = (decode(q) - zero) * scale, one zero per scale
  bool narrow() const { return payload != Payload::kNone; }
};

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  pjrt::DType dtype;
  // When not empty: the checkpoint tensors this input is made of at load, in this order along
  // dim 0 — stacked (shape[0] == parts, each of shape[1:]: gate_up_proj (2, I, H)) or
  // concatenated (each [shape[0] / parts, shape[1:]]: gate_up_proj (2I, H)); the same bytes either
  // way. The checkpoint keeps its own names; only the program sees the fused one. A part named
  // "tensor[a:b]" is rows [a, b) of that tensor (dim 0): parts of different sizes, concatenated
  // (a Gated DeltaNet's [q | k | v] rows regrouped by device for a tensor-parallel split).
  std::vector<std::string> parts = {};
  // How the tensor lies over the devices of a tensor-parallel mesh (models/parallel.h): each
  // device is sent only its part of a split tensor.
  hlo::Sharding sharding = {};
  // Stored narrow (payload + scales, models/quant.h) instead of in `dtype`, which is then the
  // dtype the program expands it to.
  QuantLayout quant = {};
  // Stored narrow in the checkpoint but expanded to `dtype` by the loader (Engine option
  // quantizedWeights: 'dequantize'): the program sees a plain weight.
  QuantLayout expand_from = {};
};

}  // namespace dflash::models
