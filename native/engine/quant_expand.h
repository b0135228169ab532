// A quantized checkpoint's weight expanded at load (Engine option quantizedWeights: 'dequantize',
// the CPU default): the plain reference of models/quant.h's in-program expansion, element for
// element the same f32 arithmetic, W[o, i] = decode(q)[o, i] * s[o / block_rows, i / block_cols],
// so a model gives the same logits whichever way its weights were expanded.
#pragma once
#include <cstdint>

#include "engine/weights.h"
#include "models/weight_spec.h"

namespace dflash::engine {

// e4m3fn (1 sign, 4 exponent bits biased by 7, 3 mantissa bits; no infinities, S.1111.111 = NaN)
// to f32, exactly.
float Fp8E4m3ToFloat(uint8_t b);

// Writes W (rows, cols) in f32 into `out` from one weight's payload bytes in the engine's layout
// (s8, u8 value+128, u8 two int4+8 low nibble first, e4m3fn), its scales and, when q.zero_point,
// its zero points, both f32 (ceil(rows/br), ceil(cols/bc)) row-major.
void ExpandQuantized(const models::QuantLayout& q, const uint8_t* payload, const float* scale, const float* zero, int64_t rows,
                     int64_t cols, float* out);

}  // namespace dflash::engine
