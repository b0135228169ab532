// Quantized weights expanded at load: see quant_expand.h.
#include "engine/quant_expand.h"

#include "models/quant.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace dflash::engine {

using Payload = models::QuantLayout::Payload;

float Fp8E4m3ToFloat(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  float v;
  if (exp == 15 && man == 7) v = std::numeric_limits<float>::quiet_NaN();
  else if (exp == 0) v = std::ldexp(static_cast<float>(man), -9);  // subnormal: man/8 * 2^-6
  else v = std::ldexp(static_cast<float>(8 + man), exp - 10);     // (1 + man/8) * 2^(exp-7)
  return sign ? -v : v;
}

void ExpandQuantized(const models::QuantLayout& q, const uint8_t* payload, const float* scale, const float* zero, int64_t rows,
                     int64_t cols, float* out) {
  const int64_t br = q.block_rows, bc = q.block_cols == 0 ? cols : q.block_cols;
  const int64_t si = (cols + bc - 1) / bc;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = scale + (r / br) * si;
    const float* z = zero ? zero + (r / br) * si : nullptr;
    float* o = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      float v;
      switch (q.payload) {
        case Payload::kInt8: v = static_cast<float>(static_cast<int8_t>(payload[r * cols + c])); break;
        case Payload::kInt8Packed: v = static_cast<float>(payload[r * cols + c]) - 128.0f; break;
        case Payload::kInt4: {
          const uint8_t byte = payload[r * (cols / 2) + c / 2];
          v = static_cast<float>(c % 2 == 0 ? byte & 15 : byte >> 4) - 8.0f;
          break;
        }
        case Payload::kFp8: v = Fp8E4m3ToFloat(payload[r * cols + c]); break;
        case Payload::kMxfp4: {
          const uint8_t byte = payload[r * (cols / 2) + c / 2];
          v = models::kE2m1Values[c % 2 == 0 ? byte & 15 : byte >> 4];
          break;
        }
        default: throw std::logic_error("expand at load: no payload");
      }
      if (z) v -= z[c / bc];  // the program's order: (decode - zero) * scale
      o[c] = v * s[c / bc];
    }
  }
}

}  // namespace dflash::engine
