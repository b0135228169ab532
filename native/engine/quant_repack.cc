// Re-layouts of quantized checkpoints: see quant_repack.h.
#include "engine/quant_repack.h"

#include <cstring>

#include "engine/float_codec.h"

namespace dflash::engine {
namespace {

// AutoAWQ packs output 8c + kAwqOrder[i] into nibble i of word c; kAwqSlot is the inverse: the
// nibble output 8c + j lives in.
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};
static_assert(kAwqSlot[kAwqOrder[1]] == 1 && kAwqSlot[kAwqOrder[6]] == 6, "kAwqSlot inverts kAwqOrder");

uint32_t Word(const uint8_t* raw, int64_t index) {
  uint32_t w;
  std::memcpy(&w, raw + index * 4, 4);  // little-endian files on little-endian hosts
  return w;
}

// The unsigned 4-bit value of output o in row r of an AWQ-packed (rows, outs/8) int32 tensor.
int AwqNibble(const uint8_t* raw, int64_t outs, int64_t r, int64_t o) {
  return static_cast<int>((Word(raw, r * (outs / 8) + o / 8) >> (4 * kAwqSlot[o % 8])) & 15u);
}

// compressed-tensors' zero points packed along the rows: word (o / per, g) holds rows
// o .. o + per - 1 of column g at kBits each, stored + 2^(kBits-1). Shape (out, groups) -> f32.
template <int kBits>
int64_t RowPackedBytes(const std::vector<int64_t>& s) {
  constexpr int per = 32 / kBits;
  return s.size() == 2 ? (s[0] + per - 1) / per * s[1] * 4 : -1;
}
template <int kBits>
void RowPackedZeros(const uint8_t* raw, const std::vector<int64_t>& s, uint8_t* out) {
  constexpr int per = 32 / kBits;
  constexpr uint32_t mask = (1u << kBits) - 1;
  float* f = reinterpret_cast<float*>(out);
  for (int64_t o = 0; o < s[0]; ++o)
    for (int64_t g = 0; g < s[1]; ++g)
      f[o * s[1] + g] = static_cast<float>((Word(raw, (o / per) * s[1] + g) >> (kBits * (o % per))) & mask) - (1 << (kBits - 1));
}

int64_t Product(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

const Repack kRepacks[] = {
    {"AWQ_I4", pjrt::DType::kU8,
     [](const std::vector<int64_t>& s) -> int64_t { return s.size() == 2 && (2 * s[1]) % 8 == 0 && s[0] % 8 == 0 ? s[0] * s[1] : -1; },
     [](const uint8_t* raw, const std::vector<int64_t>& s, uint8_t* out) {
       const int64_t outs = s[0], ins = 2 * s[1];  // raw: (ins, outs/8)
       for (int64_t o = 0; o < outs; ++o)
         for (int64_t i = 0; i < ins; i += 2)
           out[o * s[1] + i / 2] = static_cast<uint8_t>(AwqNibble(raw, outs, i, o) | (AwqNibble(raw, outs, i + 1, o) << 4));
     }},
    {"AWQ_Z4", pjrt::DType::kF32,
     [](const std::vector<int64_t>& s) -> int64_t { return s.size() == 2 && s[0] % 8 == 0 ? s[0] * s[1] / 2 : -1; },
     [](const uint8_t* raw, const std::vector<int64_t>& s, uint8_t* out) {
       float* f = reinterpret_cast<float*>(out);
       for (int64_t o = 0; o < s[0]; ++o)
         for (int64_t g = 0; g < s[1]; ++g) f[o * s[1] + g] = static_cast<float>(AwqNibble(raw, s[0], g, o)) - 8.0f;
     }},
    {"CT_Z4", pjrt::DType::kF32, RowPackedBytes<4>, RowPackedZeros<4>},
    {"CT_Z8", pjrt::DType::kF32, RowPackedBytes<8>, RowPackedZeros<8>},
    {"I8_Z", pjrt::DType::kF32, [](const std::vector<int64_t>& s) -> int64_t { return Product(s); },
     [](const uint8_t* raw, const std::vector<int64_t>& s, uint8_t* out) {
       float* f = reinterpret_cast<float*>(out);
       for (int64_t k = 0; k < Product(s); ++k) f[k] = static_cast<float>(static_cast<int8_t>(raw[k]));
     }},
};

template <pjrt::DType kIn>
void Transpose(const uint8_t* raw, const std::vector<int64_t>& s, uint8_t* out) {
  float* f = reinterpret_cast<float*>(out);
  const int64_t size = pjrt::ByteSize(kIn);
  for (int64_t o = 0; o < s[0]; ++o)
    for (int64_t g = 0; g < s[1]; ++g) f[o * s[1] + g] = ToFloat(raw + (g * s[0] + o) * size, kIn);
}

const Repack kTransposes[] = {
    {"T_F32", pjrt::DType::kF32, [](const std::vector<int64_t>& s) -> int64_t { return s.size() == 2 ? Product(s) * 4 : -1; },
     Transpose<pjrt::DType::kF32>},
    {"T_BF16", pjrt::DType::kF32, [](const std::vector<int64_t>& s) -> int64_t { return s.size() == 2 ? Product(s) * 2 : -1; },
     Transpose<pjrt::DType::kBF16>},
    {"T_F16", pjrt::DType::kF32, [](const std::vector<int64_t>& s) -> int64_t { return s.size() == 2 ? Product(s) * 2 : -1; },
     Transpose<pjrt::DType::kF16>},
};

}  // namespace

const Repack* FindRepack(const std::string& dtype) {
  for (const auto& r : kRepacks)
    if (dtype == r.dtype) return &r;
  for (const auto& r : kTransposes)
    if (dtype == r.dtype) return &r;
  return nullptr;
}

}  // namespace dflash::engine
