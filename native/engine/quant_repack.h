// Checkpoint layouts of quantized weights that the loader re-lays, still narrow, into the forms
// the programs read (models/quant.h): AWQ's transposed, order-shuffled int4 words, zero points
// packed along rows (compressed-tensors) or columns (AWQ), and transposed scales. lib/quantization.ts
// names each source with one of these pseudo-dtypes and gives the shape the engine reads; the
// checkpoint's bytes are the raw layout below.
//
//   dtype    engine reads                     from the checkpoint's bytes
//   AWQ_I4   u8 (out, in/2), value + 8 ...    qweight int32 (in, out/8): nibble i of word c holds
//            (two per byte, low nibble first)   output 8c + [0,2,4,6,1,3,5,7][i], unsigned 0..15
//   AWQ_Z4   f32 (out, groups) = z - 8        qzeros int32 (groups, out/8), the same order
//   CT_Z4    f32 (out, groups) = nibble - 8   weight_zero_point int32 (ceil(out/8), groups): word w
//                                               holds rows 8w..8w+7, stored + 8
//   CT_Z8    f32 (out, groups) = byte - 128   weight_zero_point int32 (ceil(out/4), groups), + 128
//   I8_Z     f32 (out, groups)                weight_zero_point int8 (out, groups)
//   T_F32, T_BF16, T_F16  f32 (out, groups)   scales (groups, out), transposed
// A zero point is in the payload's decoded units (models/quant.h): W = (decode(q) - z) * s.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pjrt/client.h"

namespace dflash::engine {

struct Repack {
  const char* dtype;
  pjrt::DType out;  // what the engine reads
  // Bytes of the checkpoint tensor for the shape the engine reads (-1: shape not possible).
  int64_t (*raw_bytes)(const std::vector<int64_t>& shape);
  void (*run)(const uint8_t* raw, const std::vector<int64_t>& shape, uint8_t* out);
};

const Repack* FindRepack(const std::string& dtype);  // nullptr for any other dtype

}  // namespace dflash::engine
