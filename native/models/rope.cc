// RoPE tables and rotation (see rope.h). The inverse frequencies are computed on the host and
// embedded as an f32 constant; the angles and cos/sin are computed in-graph from positions.
#include "models/rope.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dflash::models {

using hlo::DType;
using hlo::Value;

std::vector<float> RopeInvFreq(int64_t head_dim, double theta, const RopeLlama3& l3) {
  if (head_dim <= 0 || head_dim % 2 != 0) throw std::invalid_argument("rope: head_dim must be even and positive");
  const int64_t half = head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // torch: arange(0, dim, 2).float() / dim is an f32 division; theta ** that is an f32 pow.
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(theta), e);
  }
  if (!l3.enabled) return inv;
  // transformers' _compute_llama3_parameters, elementwise in f32 like the torch tensors there.
  const float factor = static_cast<float>(l3.factor);
  const float low = static_cast<float>(l3.low_freq_factor), high = static_cast<float>(l3.high_freq_factor);
  const float old_len = static_cast<float>(l3.original_max_position_embeddings);
  // Python floats meet f32 tensors in those comparisons, so torch rounds them to f32 too.
  const float low_wavelen = static_cast<float>(l3.original_max_position_embeddings / l3.low_freq_factor);
  const float high_wavelen = static_cast<float>(l3.original_max_position_embeddings / l3.high_freq_factor);
  for (int64_t i = 0; i < half; ++i) {
    const float wavelen = static_cast<float>(2 * M_PI) / inv[i];
    float f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (medium) {
      const float smooth = (old_len / wavelen - low) / (high - low);
      f = (1.0f - smooth) * f / factor + smooth * f;
    }
    inv[i] = f;
  }
  return inv;
}

std::vector<float> RopeInvFreqYarn(int64_t head_dim, double theta, const RopeYarn& y) {
  if (head_dim <= 0 || head_dim % 2 != 0) throw std::invalid_argument("rope: head_dim must be even and positive");
  if (!(y.factor > 0) || !(y.beta_fast > 0) || !(y.beta_slow > 0) || y.original_max_position_embeddings <= 0)
    throw std::invalid_argument("rope: yarn needs a positive factor, beta_fast, beta_slow and original_max_position_embeddings");
  const int64_t half = head_dim / 2;
  const double dim = static_cast<double>(head_dim), base = theta;
  // The correction range in Python floats (math.log), as transformers computes it.
  auto correction_dim = [&](double rotations) {
    return dim * std::log(static_cast<double>(y.original_max_position_embeddings) / (rotations * 2 * M_PI)) / (2 * std::log(base));
  };
  double low = correction_dim(y.beta_fast), high = correction_dim(y.beta_slow);
  if (y.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // no division by zero in the ramp
  const float lo = static_cast<float>(low), span = static_cast<float>(high - low), factor = static_cast<float>(y.factor);
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // f32 tensors throughout: pos_freqs = base ** (arange(0, dim, 2) / dim)
    const float pos_freq = std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(head_dim));
    const float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (factor * pos_freq);
    const float ramp = std::min(std::max((static_cast<float>(i) - lo) / span, 0.0f), 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    inv[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  return inv;
}

RopeTables RopeCosSin(hlo::Builder& b, const Value& positions, const std::vector<float>& inv_freq, double scale) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  hlo::Shape fshape = positions.shape;  // (P..., half)
  fshape.push_back(half);
  const Value inv = b.ConstF32(inv_freq, {half});
  const Value pos = b.Reshape(b.Convert(positions, DType::kF32), [&] { auto s = positions.shape; s.push_back(1); return s; }());
  const Value freqs = b.Mul(pos, inv);                              // (P..., half)
  const Value emb = b.Concatenate({freqs, freqs}, -1);              // (P..., hd)
  hlo::Shape tshape = positions.shape;                               // (P..., 1, hd)
  tshape.push_back(1);
  tshape.push_back(2 * half);
  Value cos = b.Cos(emb), sin = b.Sin(emb);
  if (scale != 1.0) {
    cos = b.Mul(cos, b.Scalar(scale, DType::kF32));
    sin = b.Mul(sin, b.Scalar(scale, DType::kF32));
  }
  return RopeTables{b.Reshape(cos, tshape), b.Reshape(sin, tshape)};
}

Value ApplyRope(hlo::Builder& b, const Value& x, const RopeTables& t) {
  // x: (P..., heads, hd); cos/sin: (P..., 1, hd) broadcast over heads.
  const int64_t hd = x.dim(-1), half = hd / 2;
  if (t.cos.dim(-1) != hd) throw std::invalid_argument("rope: head_dim of x and of the tables differ");
  const Value x1 = b.SliceAxis(x, -1, 0, half), x2 = b.SliceAxis(x, -1, half, half);
  const Value rot = b.Concatenate({b.Neg(x2), x1}, -1);  // rotate_half(x) = cat(-x2, x1)
  return b.Add(b.Mul(x, t.cos), b.Mul(rot, t.sin));
}

}  // namespace dflash::models
