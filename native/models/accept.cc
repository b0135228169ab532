// Acceptance rules of the verify step: see accept.h.
#include "models/accept.h"

#include "models/sampling.h"

namespace dflash::models {

using hlo::Cmp;
using hlo::DType;
using hlo::ReduceKind;
using hlo::Value;

namespace {

// The number of leading true entries of ok (R, K - 1) -> s32 (R).
Value LeadingTrue(hlo::Builder& b, const Value& ok) {
  const int64_t r = ok.shape[0], n = ok.shape[1];
  const Value idx = b.Iota({r, n}, DType::kS32, 1);
  return b.Reduce(b.Select(ok, b.Scalar(static_cast<double>(n), DType::kS32), idx), {1}, ReduceKind::kMin);
}

// x[r, a[r], ...] for x (R, K, V) and a s32 (R) -> (R, V), by a one-hot contraction (no
// per-row dynamic slice).
Value PickSlot(hlo::Builder& b, const Value& x, const Value& a) {
  const int64_t r = x.shape[0], k = x.shape[1];
  const Value hot = b.Compare(b.Iota({r, k}, DType::kS32, 1), b.Reshape(a, {r, 1}), Cmp::kEQ);  // (R, K)
  const Value masked = b.Select(b.BroadcastInDim(hot, x.shape, {0, 1}), x, b.Scalar(0, x.dtype));
  return b.Reduce(masked, {1}, ReduceKind::kSum);
}

}  // namespace

Value PackAccept(hlo::Builder& b, const Value& tokens, const Value& a, const Value& bonus) {
  const int64_t r = tokens.shape[0], k = tokens.shape[1];
  const Value zero = b.Scalar(0, DType::kS32), one = b.Scalar(1, DType::kS32);
  const Value a2 = b.Reshape(a, {r, 1});
  const Value j = b.Iota({r, k + 1}, DType::kS32, 1);
  const Value tok_ext = b.Concatenate({tokens, b.Splat(0, {r, 1}, DType::kS32)}, 1);  // (R, K + 1)
  const Value a1 = b.Add(a2, one);
  Value acc = b.Select(b.Compare(j, a1, Cmp::kEQ), bonus, zero);
  acc = b.Select(b.And(b.Compare(j, one, Cmp::kGE), b.Compare(j, a2, Cmp::kLE)), tok_ext, acc);
  return b.Select(b.Compare(j, zero, Cmp::kEQ), a1, acc);
}

Value GreedyAccept(hlo::Builder& b, const Value& tokens, const Value& valid, const Value& argmax) {
  const int64_t r = tokens.shape[0], k = tokens.shape[1];
  Value a = b.Splat(0, {r}, DType::kS32);
  if (k > 1) {
    const Value match = b.And(b.Compare(b.SliceAxis(tokens, 1, 1, k - 1), b.SliceAxis(argmax, 1, 0, k - 1), Cmp::kEQ),
                              b.SliceAxis(valid, 1, 1, k - 1));  // (R, K - 1)
    a = LeadingTrue(b, match);
  }
  const Value bonus = b.Reshape(PickSlot(b, b.Reshape(argmax, {r, k, 1}), a), {r, 1});  // argmax[a]
  return PackAccept(b, tokens, a, bonus);
}

Value SpeculativeAccept(hlo::Builder& b, const Value& tokens, const Value& valid, const Value& p, const Value& q,
                        const Value& u_accept, const Value& u_draw) {
  const int64_t r = tokens.shape[0], k = tokens.shape[1], v = p.shape[2];
  Value a = b.Splat(0, {r}, DType::kS32);
  if (k > 1) {
    const Value d = b.Reshape(b.SliceAxis(tokens, 1, 1, k - 1), {r * (k - 1)});                             // d_1 .. d_{K-1}
    const Value pd = ProbOfTokens(b, b.Reshape(b.SliceAxis(p, 1, 0, k - 1), {r * (k - 1), v}), d);         // p_{i-1}(d_i)
    const Value qd = ProbOfTokens(b, b.Reshape(b.SliceAxis(q, 1, 1, k - 1), {r * (k - 1), v}), d);         // q_i(d_i)
    const Value ui = b.Reshape(b.SliceAxis(u_accept, 1, 1, k - 1), {r * (k - 1)});
    const Value ok = b.And(b.Reshape(b.Compare(b.Mul(ui, qd), pd, Cmp::kLT), {r, k - 1}), b.SliceAxis(valid, 1, 1, k - 1));
    a = LeadingTrue(b, ok);
  }
  const Value pa = PickSlot(b, p, a);  // (R, V)
  // The draft right after the accepted prefix, if there is one (a + 1 < K and valid): then it was
  // rejected and the bonus comes from the residual; otherwise from p_a itself.
  const Value next = b.Min(b.Add(a, b.Scalar(1, DType::kS32)), b.Scalar(static_cast<double>(k - 1), DType::kS32));  // (R)
  const Value qn = PickSlot(b, q, next);                                                                              // (R, V)
  const Value one = b.Scalar(1, DType::kS32);
  const Value in_range = b.Compare(b.Add(a, one), b.Scalar(static_cast<double>(k), DType::kS32), Cmp::kLT);  // (R)
  const Value valid_s = b.Reshape(b.Convert(valid, DType::kS32), {r, k, 1});
  const Value next_is_draft = b.Compare(b.Reshape(PickSlot(b, valid_s, next), {r}), b.Scalar(0, DType::kS32), Cmp::kGT);
  const Value next_valid = b.And(in_range, next_is_draft);
  const Value res = b.Max(b.Sub(pa, qn), b.Scalar(0, DType::kF32));
  const Value has_mass = b.Compare(b.Reduce(res, {1}, ReduceKind::kSum), b.Scalar(0, DType::kF32), Cmp::kGT);  // (R)
  const Value use_res = b.And(next_valid, has_mass);
  const Value dist = b.Select(b.BroadcastInDim(use_res, {r, v}, {0}), res, pa);
  const Value ua = b.Reshape(PickSlot(b, b.Reshape(u_draw, {r, k, 1}), a), {r});  // the uniform of slot a's draw
  const Value bonus = SampleRows(b, dist, ua);                                     // (R)
  return PackAccept(b, tokens, a, b.Reshape(bonus, {r, 1}));
}

}  // namespace dflash::models
