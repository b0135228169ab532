// Host conversions between f32 and the 16-bit float formats of checkpoints (bf16, f16), rounding
// to nearest even: the weight loader converts a tensor whose dtype differs from the engine's,
// and probes encode or decode activations.
#pragma once
#include <cstdint>
#include <vector>

#include "pjrt/client.h"

namespace dflash::engine {

// One element of `t` (f32, bf16 or f16) at p <-> f32.
float ToFloat(const uint8_t* p, pjrt::DType t);
void FromFloat(float f, uint8_t* p, pjrt::DType t);

// f32 values <-> raw bytes of `dtype`.
std::vector<uint8_t> EncodeFloats(const std::vector<float>& values, pjrt::DType dtype);
std::vector<float> DecodeFloats(const uint8_t* bytes, int64_t count, pjrt::DType dtype);

}  // namespace dflash::engine
