// Shared transformer blocks (see layers.h).
#include "models/layers.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace dflash::models {

using hlo::DType;
using hlo::Value;

hlo::DType ToHlo(pjrt::DType t) {
  switch (t) {
    case pjrt::DType::kF32: return DType::kF32;
    case pjrt::DType::kBF16: return DType::kBF16;
    case pjrt::DType::kF16: return DType::kF16;
    default: break;
  }
  throw std::invalid_argument("models: weights must be f32, bf16 or f16");
}

Value RmsNorm(hlo::Builder& b, const Value& x, const Value& w, float eps) {
  // x: (..., D); variance: (..., 1)
  const int64_t d = x.dim(-1);
  if (w.rank() != 1 || w.shape[0] != d)
    throw std::invalid_argument("rms_norm: weight " + hlo::ShapeString(w.shape) + " for input " + hlo::ShapeString(x.shape));
  hlo::Shape keep = x.shape;
  keep.back() = 1;
  const Value ms = b.Div(b.Reduce(b.Mul(x, x), {-1}, hlo::ReduceKind::kSum), b.Scalar(static_cast<double>(d), DType::kF32));
  const Value inv = b.Rsqrt(b.Add(b.Reshape(ms, keep), b.Scalar(eps, DType::kF32)));
  return b.Mul(b.Mul(x, inv), b.Convert(w, DType::kF32));
}

Value Dense(hlo::Builder& b, const Value& x, const Value& w) { return b.Linear(x, b.Convert(w, DType::kF32)); }

Value SiluMlp(hlo::Builder& b, const Value& x, const Value& gate, const Value& up, const Value& down) {
  const Value g = Dense(b, x, gate);  // (..., I)
  const Value u = Dense(b, x, up);    // (..., I)
  return Dense(b, b.Mul(b.Mul(g, b.Logistic(g)), u), down);  // silu(g) = g * sigmoid(g)
}

Value SplitHeads(hlo::Builder& b, const Value& x, int64_t heads, int64_t hd) {
  hlo::Shape s = x.shape;
  if (s.empty() || s.back() != heads * hd)
    throw std::invalid_argument("split_heads: " + hlo::ShapeString(s) + " is not (..., " + std::to_string(heads * hd) + ")");
  s.back() = heads;
  s.push_back(hd);
  return b.Reshape(x, s);
}

Value Attention(hlo::Builder& b, const Value& q, const Value& k, const Value& v, const Value& visible) {
  if (q.rank() != 4 || k.rank() != 4 || v.shape != k.shape)
    throw std::invalid_argument("attention: q " + hlo::ShapeString(q.shape) + ", k " + hlo::ShapeString(k.shape) + ", v " +
                                hlo::ShapeString(v.shape));
  const int64_t bt = q.shape[0], tq = q.shape[1], heads = q.shape[2], hd = q.shape[3];
  const int64_t tk = k.shape[1], kvh = k.shape[2];
  if (k.shape[0] != bt || k.shape[3] != hd || heads % kvh != 0)
    throw std::invalid_argument("attention: q " + hlo::ShapeString(q.shape) + " and k " + hlo::ShapeString(k.shape) + " do not match");
  if (visible.shape != hlo::Shape{bt, tq, tk} || visible.dtype != DType::kPred)
    throw std::invalid_argument("attention: mask must be pred " + hlo::ShapeString({bt, tq, tk}));
  const int64_t g = heads / kvh;
  const Value q5 = b.Reshape(q, {bt, tq, kvh, g, hd});  // head = kv * g + r
  // scores: (Bt, kvh, Tq, g, Tk)
  Value s = b.DotGeneral(q5, k, hlo::DotDims{{0, 2}, {0, 2}, {4}, {3}});
  s = b.Mul(s, b.Scalar(1.0 / std::sqrt(static_cast<double>(hd)), DType::kF32));
  const Value vis = b.BroadcastInDim(visible, s.shape, {0, 2, 4});
  // A finite fill keeps fully masked rows (padding queries) NaN-free after the max subtraction.
  s = b.Select(vis, s, b.Scalar(std::numeric_limits<float>::lowest(), DType::kF32));
  hlo::Shape keep = s.shape;
  keep.back() = 1;
  const Value m = b.Reshape(b.Reduce(s, {4}, hlo::ReduceKind::kMax), keep);
  const Value e = b.Exp(b.Sub(s, m));
  const Value p = b.Div(e, b.Reshape(b.Reduce(e, {4}, hlo::ReduceKind::kSum), keep));
  // out: (Bt, kvh, Tq, g, hd) -> (Bt, Tq, kvh, g, hd) -> (Bt, Tq, heads * hd)
  const Value o = b.DotGeneral(p, v, hlo::DotDims{{0, 1}, {0, 2}, {4}, {1}});
  return b.Reshape(b.Transpose(o, {0, 2, 1, 3, 4}), {bt, tq, heads * hd});
}

void AppendDecoderLayerSpecs(std::vector<WeightSpec>& s, const std::string& p, int64_t h, int64_t heads,
                             int64_t kv_heads, int64_t hd, int64_t inter, bool qk_norm, pjrt::DType t) {
  const int64_t qd = heads * hd, kvd = kv_heads * hd;
  s.push_back({p + "input_layernorm.weight", {h}, t});
  s.push_back({p + "self_attn.q_proj.weight", {qd, h}, t});
  s.push_back({p + "self_attn.k_proj.weight", {kvd, h}, t});
  s.push_back({p + "self_attn.v_proj.weight", {kvd, h}, t});
  s.push_back({p + "self_attn.o_proj.weight", {h, qd}, t});
  if (qk_norm) {
    s.push_back({p + "self_attn.q_norm.weight", {hd}, t});
    s.push_back({p + "self_attn.k_norm.weight", {hd}, t});
  }
  s.push_back({p + "post_attention_layernorm.weight", {h}, t});
  s.push_back({p + "mlp.gate_proj.weight", {inter, h}, t});
  s.push_back({p + "mlp.up_proj.weight", {inter, h}, t});
  s.push_back({p + "mlp.down_proj.weight", {h, inter}, t});
}

}  // namespace dflash::models
