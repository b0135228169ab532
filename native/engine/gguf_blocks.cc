// GGUF block decoders: see gguf_blocks.h. Each mirrors ggml's reference dequantize_row_* (block
// structs as laid out in ggml-common.h), checked against gguf-py's numpy dequantize() by
// test/46-gguf.
#include "engine/gguf_blocks.h"

#include <cstring>
#include <vector>

#include "engine/float_codec.h"

namespace dflash::engine {
namespace {

float Half(const uint8_t* p) { return ToFloat(p, pjrt::DType::kF16); }

// block_q8_0 { f16 d; int8 qs[32]; }: y = d * q.
void DecodeQ8_0(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 34, y += 32) {
    const float d = Half(src);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

// block_q4_0 { f16 d; u8 qs[16]; }: low nibbles are values 0..15, high nibbles 16..31; y = (q - 8) * d.
void DecodeQ4_0(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 18, y += 32) {
    const float d = Half(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// block_q4_1 { f16 d; f16 m; u8 qs[16]; }: y = q * d + m.
void DecodeQ4_1(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 20, y += 32) {
    const float d = Half(src), m = Half(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

// The 6-bit scale and min of sub-block j (0..7) packed in the K-quants' 12 scale bytes.
void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }: 8 sub-blocks of 32; each 64 values
// take 32 bytes of qs, low nibbles first; y = d * sc * q - dmin * m.
void DecodeQ4_K(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 144) {
    const float d = Half(src), dmin = Half(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }: as Q4_K with a fifth
// bit per value from qh (bit 2k for the low nibbles of the k-th 64 values, 2k+1 for the high).
void DecodeQ5_K(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 176) {
    const float d = Half(src), dmin = Half(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* ql = src + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }: 16 sub-blocks of 16 with int8
// scales; 6-bit values (4 low bits from ql, 2 high from qh) centred on 32; y = d * sc * (q - 32).
void DecodeQ6_K(const uint8_t* src, int64_t blocks, float* y) {
  for (int64_t b = 0; b < blocks; ++b, src += 210) {
    const float d = Half(src + 208);
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

const BlockFormat kFormats[] = {
    {"Q8_0", 32, 34, DecodeQ8_0}, {"Q4_0", 32, 18, DecodeQ4_0}, {"Q4_1", 32, 20, DecodeQ4_1},
    {"Q4_K", 256, 144, DecodeQ4_K}, {"Q5_K", 256, 176, DecodeQ5_K}, {"Q6_K", 256, 210, DecodeQ6_K},
};

}  // namespace

const BlockFormat* FindBlockFormat(const std::string& dtype) {
  for (const auto& f : kFormats)
    if (dtype == f.name) return &f;
  return nullptr;
}

int64_t BlockBytes(const BlockFormat& format, int64_t values) {
  if (values % format.block_values != 0) return -1;
  return values / format.block_values * format.block_bytes;
}

void UnpermuteRopeRows(float* data, int64_t rows, int64_t cols, int64_t heads) {
  const int64_t per_head = rows / heads, half = per_head / 2;
  std::vector<float> head(static_cast<size_t>(per_head * cols));
  for (int64_t h = 0; h < heads; ++h) {
    float* base = data + h * per_head * cols;
    std::memcpy(head.data(), base, head.size() * sizeof(float));
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(base + (j * half + i) * cols, head.data() + (2 * i + j) * cols, static_cast<size_t>(cols) * sizeof(float));
  }
}

}  // namespace dflash::engine
