// gpt-oss's MoE block (see moe_gpt_oss.h).
#include "models/moe_gpt_oss.h"

#include <stdexcept>

#include "models/quant.h"

namespace dflash::models {

using hlo::Builder;
using hlo::DType;
using hlo::Value;

namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("gpt-oss moe: " + what);
}

void CheckShapes(const Value& x, const GptOssMoeWeights& w, const GptOssMoeConfig& c) {
  Check(c.num_experts > 0 && c.experts_per_token > 0 && c.experts_per_token <= c.num_experts && c.intermediate > 0,
        "config needs 0 < experts_per_token <= num_experts and intermediate > 0");
  Check(x.rank() == 2, "x must be (T, H), got " + hlo::ShapeString(x.shape));
  const int64_t e = c.num_experts, h = x.shape[1], i = c.intermediate;
  const hlo::Shape gate_up = c.linear_layout ? hlo::Shape{e, 2 * i, h} : hlo::Shape{e, h, 2 * i};
  const hlo::Shape down = c.linear_layout ? hlo::Shape{e, h, i} : hlo::Shape{e, i, h};
  auto is = [&](const Value& v, const hlo::Shape& want, const char* what) {
    Check(v.shape == want, std::string(what) + " " + hlo::ShapeString(v.shape) + " is not " + hlo::ShapeString(want));
  };
  is(w.router, {e, h}, "router (E, H)");
  is(w.router_bias, {e}, "router bias (E)");
  is(w.gate_up, gate_up, "gate_up_proj");
  is(w.gate_up_bias, {e, 2 * i}, "gate_up_proj_bias (E, 2I)");
  is(w.down, down, "down_proj");
  is(w.down_bias, {e, h}, "down_proj_bias (E, H)");
}

// gu: (..., 2I) f32 with bias, rounded to act -> the clamped SwiGLU (..., I) in act.
Value ClampedSwiglu(Builder& b, const Value& gu, float limit, float alpha, const Numerics& n) {
  hlo::Shape pairs = gu.shape;
  pairs.back() /= 2;
  pairs.push_back(2);
  const Value p = b.Reshape(gu, pairs);  // (..., I, 2): [gate, up] per column pair
  hlo::Shape half = pairs;
  half.pop_back();
  Value gate = b.Convert(b.Reshape(b.SliceAxis(p, -1, 0, 1), half), DType::kF32);
  Value up = b.Convert(b.Reshape(b.SliceAxis(p, -1, 1, 1), half), DType::kF32);
  const Value lim = b.Scalar(limit, DType::kF32);
  gate = b.Min(gate, lim);
  up = b.Max(b.Min(up, lim), b.Neg(lim));
  const Value glu = b.Mul(gate, b.Logistic(b.Mul(gate, b.Scalar(alpha, DType::kF32))));
  return b.Convert(b.Mul(b.Add(up, b.Scalar(1, DType::kF32)), glu), n.act());
}

Value DenseExperts(Builder& b, const Value& x, const GptOssMoeWeights& w, const MoeRouting& r, const GptOssMoeConfig& c,
                   const Numerics& n) {
  const int64_t t = x.shape[0], e = c.num_experts, h = x.shape[1], i = c.intermediate;
  // x (T, H) . gate_up (E, H, 2I) | (E, 2I, H) -> (E, T, 2I), plus bias
  const int64_t h_axis = c.linear_layout ? 2 : 1;
  Value gu = b.DotGeneral(b.Convert(w.gate_up, n.act()), b.Convert(x, n.act()), hlo::DotDims{{}, {}, {h_axis}, {1}}, DType::kF32);  // (E, 2I, T)
  gu = b.Transpose(gu, {0, 2, 1});
  gu = b.Convert(b.Add(gu, b.BroadcastInDim(b.Convert(w.gate_up_bias, DType::kF32), {e, t, 2 * i}, {0, 2})), n.act());
  const Value act = ClampedSwiglu(b, gu, c.limit, c.alpha, n);  // (E, T, I)
  // act (E, T, I) . down (E, I, H) | (E, H, I) -> (E, T, H), plus bias
  Value y = b.DotGeneral(act, b.Convert(w.down, n.act()), hlo::DotDims{{0}, {0}, {2}, {c.linear_layout ? 2 : 1}}, DType::kF32);
  y = b.Convert(b.Convert(b.Add(y, b.BroadcastInDim(b.Convert(w.down_bias, DType::kF32), {e, t, h}, {0, 2})), n.act()), DType::kF32);
  return b.Convert(b.DotGeneral(DenseRoutingWeights(b, r, e), y, hlo::DotDims{{0}, {1}, {1}, {0}}), n.act());  // (T, H)
}

Value GatheredExperts(Builder& b, const Value& x, const GptOssMoeWeights& w, const MoeRouting& r, const GptOssMoeConfig& c,
                      const Numerics& n) {
  // Only the selected experts' matrices are read: (T, k, H, 2I) and (T, k, I, H), or as Linear
  // weights (T, k, 2I, H) and (T, k, H, I); narrow experts are gathered as stored, then expanded.
  const Value gate_up = w.gate_up_n.narrow() ? GatherExpanded(b, w.gate_up_n, r.experts, n.act()) : b.Take(w.gate_up, r.experts);
  const Value down = w.down_n.narrow() ? GatherExpanded(b, w.down_n, r.experts, n.act()) : b.Take(w.down, r.experts);
  const int64_t lin = c.linear_layout ? 1 : 0;
  const Value gu_bias = b.Take(w.gate_up_bias, r.experts), down_bias = b.Take(w.down_bias, r.experts);  // (T, k, 2I), (T, k, H)
  // per token: x (T, H) . (T, k, H, 2I) -> (T, k, 2I)
  Value gu = b.DotGeneral(b.Convert(x, n.act()), b.Convert(gate_up, n.act()), hlo::DotDims{{0}, {0}, {1}, {2 + lin}}, DType::kF32);
  gu = b.Convert(b.Add(gu, b.Convert(gu_bias, DType::kF32)), n.act());
  const Value act = ClampedSwiglu(b, gu, c.limit, c.alpha, n);  // (T, k, I)
  // (T, k, I) . (T, k, I, H) -> (T, k, H)
  Value y = b.DotGeneral(act, b.Convert(down, n.act()), hlo::DotDims{{0, 1}, {0, 1}, {2}, {2 + lin}}, DType::kF32);
  y = b.Convert(b.Convert(b.Add(y, b.Convert(down_bias, DType::kF32)), n.act()), DType::kF32);
  return b.Convert(b.DotGeneral(r.weights, y, hlo::DotDims{{0}, {0}, {1}, {1}}), n.act());  // (T, H)
}

}  // namespace

MoeRouting GptOssRoute(Builder& b, const Value& x, const GptOssMoeWeights& w, const GptOssMoeConfig& c, const Numerics& n) {
  const int64_t t = x.shape[0], e = c.num_experts, k = c.experts_per_token;
  // router Linear with bias: f32 accumulation, bias added, rounded to act (its output dtype)
  const Value logits = b.Convert(
      b.Convert(b.Add(b.DotGeneral(b.Convert(x, n.act()), b.Convert(w.router, n.act()), hlo::DotDims{{}, {}, {1}, {1}}, DType::kF32),
                      b.BroadcastInDim(b.Convert(w.router_bias, DType::kF32), {t, e}, {1})),
                n.act()),
      DType::kF32);  // (T, E)
  const MoeRouting top_k = TopK(b, logits, k, logits);
  // softmax over the k selected logits (the first is the largest), rounded to act as torch's
  // softmax(dtype=logits.dtype) returns it
  const Value top = top_k.weights;  // (T, k) logits
  const Value ex = b.Exp(b.Sub(top, b.SliceAxis(top, 1, 0, 1)));
  const Value weights = b.Convert(b.Convert(b.Div(ex, b.Reshape(b.Reduce(ex, {1}, hlo::ReduceKind::kSum), {t, 1})), n.act()), DType::kF32);
  return {top_k.experts, weights};
}

Value GptOssMoe(Builder& b, const Value& x, const GptOssMoeWeights& w, const GptOssMoeConfig& c, MoeImpl impl, const Numerics& n) {
  CheckShapes(x, w, c);
  const MoeRouting r = GptOssRoute(b, x, w, c, n);
  if (impl == MoeImpl::kAuto) impl = ChooseMoeImpl(x.shape[0], MoeConfig{c.num_experts, c.experts_per_token, c.intermediate, false}, n);
  return impl == MoeImpl::kGathered ? GatheredExperts(b, x, w, r, c, n) : DenseExperts(b, x, w, r, c, n);
}

void AppendGptOssMoeSpecs(std::vector<WeightSpec>& s, const std::string& p, int64_t h, const GptOssMoeConfig& c, pjrt::DType t,
                          const TensorParallel& tp) {
  const int64_t e = c.num_experts, i = c.intermediate;
  s.push_back({p + "mlp.router.weight", {e, h}, t});
  s.push_back({p + "mlp.router.bias", {e}, t});
  if (c.linear_layout) {
    s.push_back({p + "mlp.experts.gate_up_proj", {e, 2 * i, h}, t, {}, tp.Split(1)});
    s.push_back({p + "mlp.experts.gate_up_proj_bias", {e, 2 * i}, t, {}, tp.Split(1)});
    s.push_back({p + "mlp.experts.down_proj", {e, h, i}, t, {}, tp.Split(2)});
  } else {
    s.push_back({p + "mlp.experts.gate_up_proj", {e, h, 2 * i}, t, {}, tp.Split(2)});
    s.push_back({p + "mlp.experts.gate_up_proj_bias", {e, 2 * i}, t, {}, tp.Split(1)});
    s.push_back({p + "mlp.experts.down_proj", {e, i, h}, t, {}, tp.Split(1)});
  }
  s.push_back({p + "mlp.experts.down_proj_bias", {e, h}, t});
}

GptOssMoeWeights TakeGptOssMoe(const WeightInputs& w, const std::string& p, const QuantLayout& quant) {
  GptOssMoeWeights m{Weight(w, p + "mlp.router.weight"),        Weight(w, p + "mlp.router.bias"),
                     Weight(w, p + "mlp.experts.gate_up_proj"), Weight(w, p + "mlp.experts.gate_up_proj_bias"),
                     Weight(w, p + "mlp.experts.down_proj"),    Weight(w, p + "mlp.experts.down_proj_bias")};
  const std::string gu = p + "mlp.experts.gate_up_proj", dn = p + "mlp.experts.down_proj";
  m.gate_up_n = StoredStack(w, gu, quant);
  m.down_n = StoredStack(w, dn, quant);
  return m;
}

}  // namespace dflash::models
