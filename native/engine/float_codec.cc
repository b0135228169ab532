// f32 <-> bf16 / f16 host conversions: see float_codec.h.
#include "engine/float_codec.h"

#include <cstring>

namespace dflash::engine {
namespace {

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do { ++e; m <<= 1; } while ((m & 0x400) == 0);
      bits = sign | ((112 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  int32_t e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {  // subnormal or zero, round to nearest even
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t m = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t m = mant >> 13;
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (m & 1))) ++m;
  if (m == 0x400u) {
    m = 0;
    ++e;
  }
  return static_cast<uint16_t>(e >= 0x1f ? (sign | 0x7c00u) : (sign | (static_cast<uint32_t>(e) << 10) | m));
}

}  // namespace

float ToFloat(const uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { float f; std::memcpy(&f, p, 4); return f; }
  uint16_t h;
  std::memcpy(&h, p, 2);
  if (t == pjrt::DType::kBF16) { const uint32_t b = uint32_t(h) << 16; float f; std::memcpy(&f, &b, 4); return f; }
  return HalfToFloat(h);
}

void FromFloat(float f, uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { std::memcpy(p, &f, 4); return; }
  uint16_t h;
  if (t == pjrt::DType::kBF16) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) h = static_cast<uint16_t>((b >> 16) | 0x40);  // NaN stays NaN
    else h = static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1)) >> 16);             // round to nearest even
  } else {
    h = FloatToHalf(f);
  }
  std::memcpy(p, &h, 2);
}


std::vector<uint8_t> EncodeFloats(const std::vector<float>& values, pjrt::DType dtype) {
  const int64_t w = pjrt::ByteSize(dtype);
  std::vector<uint8_t> out(values.size() * static_cast<size_t>(w));
  for (size_t i = 0; i < values.size(); ++i) FromFloat(values[i], out.data() + i * w, dtype);
  return out;
}

std::vector<float> DecodeFloats(const uint8_t* bytes, int64_t count, pjrt::DType dtype) {
  const int64_t w = pjrt::ByteSize(dtype);
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[i] = ToFloat(bytes + i * w, dtype);
  return out;
}

}  // namespace dflash::engine
