// The Qwen3-MoE sparse block (see moe.h).
#include "models/moe.h"

#include <limits>
#include <stdexcept>


namespace dflash::models {

using hlo::DType;
using hlo::Value;

namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("moe: " + what);
}

void CheckShapes(const Value& x, const MoeWeights& w, const MoeConfig& c) {
  Check(c.num_experts > 0 && c.experts_per_token > 0 && c.experts_per_token <= c.num_experts && c.intermediate > 0,
        "config needs 0 < experts_per_token <= num_experts and intermediate > 0");
  Check(x.rank() == 2, "x must be (T, H), got " + hlo::ShapeString(x.shape));
  const int64_t e = c.num_experts, h = x.shape[1], i = c.intermediate;
  Check(w.router.shape == hlo::Shape{e, h}, "router " + hlo::ShapeString(w.router.shape) + " is not (E, H) = " + hlo::ShapeString({e, h}));
  Check(w.gate.shape == hlo::Shape{e, i, h}, "gate " + hlo::ShapeString(w.gate.shape) + " is not (E, I, H) = " + hlo::ShapeString({e, i, h}));
  Check(w.up.shape == hlo::Shape{e, i, h}, "up " + hlo::ShapeString(w.up.shape) + " is not (E, I, H) = " + hlo::ShapeString({e, i, h}));
  Check(w.down.shape == hlo::Shape{e, h, i}, "down " + hlo::ShapeString(w.down.shape) + " is not (E, H, I) = " + hlo::ShapeString({e, h, i}));
}

Value Silu(hlo::Builder& b, const Value& g) { return b.Mul(g, b.Logistic(g)); }

// A dot of activation-dtype operands, accumulated in f32 and rounded back to the activation dtype.
Value Dot(hlo::Builder& b, const Value& x, const Value& w, const hlo::DotDims& d, const Numerics& n) {
  return b.Convert(b.DotGeneral(b.Convert(x, n.act()), b.Convert(w, n.act()), d, DType::kF32), n.act());
}

Value DenseExperts(hlo::Builder& b, const Value& x, const MoeWeights& w, const MoeRouting& r, int64_t experts, const Numerics& n) {
  const hlo::DotDims in{{}, {}, {1}, {2}};  // x (T, H) . W (E, I, H) -> (T, E, I)
  const Value act = b.Mul(Silu(b, Dot(b, x, w.gate, in, n)), Dot(b, x, w.up, in, n));
  const Value y = b.Convert(b.DotGeneral(act, b.Convert(w.down, n.act()), hlo::DotDims{{1}, {0}, {2}, {2}}, DType::kF32), DType::kF32);  // (E, T, H)
  return b.Convert(b.DotGeneral(DenseRoutingWeights(b, r, experts), y, hlo::DotDims{{0}, {1}, {1}, {0}}), n.act());  // (T, H)
}

Value GatheredExperts(hlo::Builder& b, const Value& x, const MoeWeights& w, const MoeRouting& r, const Numerics& n) {
  // Only the selected experts' weights are read: (T, k, I, H) slices, in their own dtype.
  // Narrow experts are gathered as stored and only the selected ones expanded.
  auto take = [&](const Value& plain, const NarrowStack& narrow) {
    return narrow.narrow() ? GatherExpanded(b, narrow, r.experts, n.act()) : b.Take(plain, r.experts);
  };
  const Value gate = take(w.gate, w.gate_n), up = take(w.up, w.up_n);  // (T, k, I, H)
  const Value down = take(w.down, w.down_n);                           // (T, k, H, I)
  const hlo::DotDims in{{0}, {0}, {1}, {3}};                                  // per token: (T, k, I)
  const Value act = b.Mul(Silu(b, Dot(b, x, gate, in, n)), Dot(b, x, up, in, n));
  const Value y = b.DotGeneral(act, b.Convert(down, n.act()), hlo::DotDims{{0, 1}, {0, 1}, {2}, {3}}, DType::kF32);  // (T, k, H) f32
  return b.Convert(b.DotGeneral(r.weights, y, hlo::DotDims{{0}, {0}, {1}, {1}}), n.act());  // (T, H)
}

}  // namespace

MoeRouting MoeRoute(hlo::Builder& b, const Value& x, const Value& router, const MoeConfig& cfg, const Numerics& n) {
  Check(x.rank() == 2 && router.shape == hlo::Shape{cfg.num_experts, x.shape[1]},
        "router " + hlo::ShapeString(router.shape) + " does not match x " + hlo::ShapeString(x.shape) + " and E = " + std::to_string(cfg.num_experts));
  const int64_t t = x.shape[0], k = cfg.experts_per_token;
  const Value logits = b.Convert(b.Convert(b.DotGeneral(b.Convert(x, n.act()), b.Convert(router, n.act()), hlo::DotDims{{}, {}, {1}, {1}}, DType::kF32),
                                           n.act()), DType::kF32);  // (T, E)
  // softmax over all experts (transformers computes it in f32 before top-k)
  const Value m = b.Reshape(b.Reduce(logits, {1}, hlo::ReduceKind::kMax), {t, 1});
  const Value ex = b.Exp(b.Sub(logits, m));
  const Value probs = b.Div(ex, b.Reshape(b.Reduce(ex, {1}, hlo::ReduceKind::kSum), {t, 1}));
  // top-k over the logits (their order is the probabilities' order, without the ties exp()
  // underflow makes), taking the probabilities
  MoeRouting r = TopK(b, logits, k, probs);
  if (cfg.norm_topk_prob) r.weights = b.Div(r.weights, b.Reshape(b.Reduce(r.weights, {1}, hlo::ReduceKind::kSum), {t, 1}));
  return r;
}

MoeRouting TopK(hlo::Builder& b, const Value& scores, int64_t k, const Value& values) {
  const int64_t t = scores.shape[0], e = scores.shape[1];
  const Value col = b.Iota({t, e}, DType::kS32, 1);
  const Value masked = b.Splat(-std::numeric_limits<double>::infinity(), {t, e}, DType::kF32);
  Value rest = scores;
  std::vector<Value> ids, vals;
  for (int64_t j = 0; j < k; ++j) {
    const Value id = b.Argmax(rest, 1);  // (T) s32
    const Value hit = b.Compare(col, b.BroadcastInDim(id, {t, e}, {0}), hlo::Cmp::kEQ);
    ids.push_back(b.Reshape(id, {t, 1}));
    vals.push_back(b.Reshape(b.Reduce(b.Select(hit, values, b.Scalar(0, DType::kF32)), {1}, hlo::ReduceKind::kSum), {t, 1}));
    rest = b.Select(hit, masked, rest);
  }
  return {b.Concatenate(ids, 1), b.Concatenate(vals, 1)};
}

Value DenseRoutingWeights(hlo::Builder& b, const MoeRouting& r, int64_t experts) {
  const int64_t t = r.experts.shape[0], k = r.experts.shape[1];
  const Value ids = b.BroadcastInDim(r.experts, {t, k, experts}, {0, 1});                  // (T, k, E)
  const Value hit = b.Compare(ids, b.Iota({t, k, experts}, DType::kS32, 2), hlo::Cmp::kEQ);
  const Value w = b.BroadcastInDim(r.weights, {t, k, experts}, {0, 1});
  return b.Reduce(b.Select(hit, w, b.Scalar(0, DType::kF32)), {1}, hlo::ReduceKind::kSum);  // (T, E)
}

MoeImpl ChooseMoeImpl(int64_t tokens, const MoeConfig& cfg, const Numerics& n) {
  if (n.min_dot_rows > 1) return MoeImpl::kGathered;
  return tokens * cfg.experts_per_token < cfg.num_experts ? MoeImpl::kGathered : MoeImpl::kDense;
}

Value MoeMlp(hlo::Builder& b, const Value& x, const MoeWeights& w, const MoeConfig& cfg, MoeImpl impl, const Numerics& n) {
  CheckShapes(x, w, cfg);
  const MoeRouting r = MoeRoute(b, x, w.router, cfg, n);
  if (impl == MoeImpl::kAuto) impl = ChooseMoeImpl(x.shape[0], cfg, n);
  return impl == MoeImpl::kGathered ? GatheredExperts(b, x, w, r, n) : DenseExperts(b, x, w, r, cfg.num_experts, n);
}

void AppendMoeLayerSpecs(std::vector<WeightSpec>& s, const std::string& p, int64_t h, const MoeConfig& c, pjrt::DType t,
                         const TensorParallel& tp) {
  const int64_t e = c.num_experts, i = c.intermediate;
  s.push_back({p + "mlp.gate.weight", {e, h}, t});
  s.push_back({p + "mlp.experts.*.gate_proj.weight", {e, i, h}, t, {}, tp.Split(1)});
  s.push_back({p + "mlp.experts.*.up_proj.weight", {e, i, h}, t, {}, tp.Split(1)});
  s.push_back({p + "mlp.experts.*.down_proj.weight", {e, h, i}, t, {}, tp.Split(2)});
}

std::vector<std::string> StackedExpertSources(const WeightSpec& spec) {
  const size_t star = spec.name.find('*');
  if (star == std::string::npos) return {spec.name};
  if (spec.shape.empty()) throw std::invalid_argument("moe: stacked spec " + spec.name + " has no expert dimension");
  std::vector<std::string> names;
  for (int64_t e = 0; e < spec.shape[0]; ++e)
    names.push_back(spec.name.substr(0, star) + std::to_string(e) + spec.name.substr(star + 1));
  return names;
}

}  // namespace dflash::models
