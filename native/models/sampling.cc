// Device-side sampling: see sampling.h.
#include "models/sampling.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "models/token_mask.h"

namespace dflash::models {
namespace {

using hlo::Builder;
using hlo::DType;
using hlo::Value;
using hlo::Cmp;
using hlo::ReduceKind;

constexpr int kBisections = 32;
const double kLowest = -std::numeric_limits<float>::max();

Value RowReduce(Builder& b, const Value& x, ReduceKind kind) {  // (R, V) -> (R, 1)
  return b.Reshape(b.Reduce(x, {1}, kind), {x.shape[0], 1});
}

Value AsF32(Builder& b, const Value& pred) { return b.Convert(pred, DType::kF32); }

// Upper-triangular ones, (n, n): m[i][j] = 1 if i <= j (inclusive) or i < j (strict).
Value Triangle(Builder& b, int64_t n, bool inclusive) {
  const Value i = b.Iota({n, n}, DType::kS32, 0), j = b.Iota({n, n}, DType::kS32, 1);
  return AsF32(b, b.Compare(i, j, inclusive ? Cmp::kLE : Cmp::kLT));
}

}  // namespace

Value SamplingProbs(Builder& b, const Value& logits, const Value& params, const Value* allowed) {
  const int64_t r = logits.shape[0];
  if (params.shape != hlo::Shape{r, 3}) throw std::invalid_argument("sampling: params must be (" + std::to_string(r) + ", 3)");
  const Value col = b.SliceAxis(params, 1, 0, 1);  // (R, 1) temperature
  // Greedy rows (temperature 0) divide by 1 instead: their distribution is never used.
  const Value temperature = b.Select(b.Compare(col, b.Scalar(0, DType::kF32), Cmp::kGT), col, b.Scalar(1, DType::kF32));
  const Value top_p = b.SliceAxis(params, 1, 1, 1), top_k = b.SliceAxis(params, 1, 2, 1);  // (R, 1)
  Value scaled = b.Div(logits, temperature);  // (R, V)
  if (allowed) scaled = MaskLogits(b, scaled, *allowed);

  // Top-k: the largest threshold t with count(scaled >= t) >= k, by bisection on [min, max]
  // (the min of the allowed tokens: refused ones would stretch the range past what 32 halvings
  // resolve).
  const Value floor = allowed ? b.Select(*allowed, scaled, b.Scalar(-kLowest, DType::kF32)) : scaled;
  Value lo = RowReduce(b, floor, ReduceKind::kMin), hi = RowReduce(b, scaled, ReduceKind::kMax);
  const Value half = b.Scalar(0.5, DType::kF32);
  for (int it = 0; it < kBisections; ++it) {
    const Value mid = b.Mul(b.Add(lo, hi), half);
    const Value count = RowReduce(b, AsF32(b, b.Compare(scaled, mid, Cmp::kGE)), ReduceKind::kSum);
    const Value ok = b.Compare(count, top_k, Cmp::kGE);
    lo = b.Select(ok, mid, lo);
    hi = b.Select(ok, hi, mid);
  }
  const Value k_on = b.Compare(top_k, b.Scalar(0, DType::kF32), Cmp::kGT);  // (R, 1)
  const Value thr_k = b.Select(k_on, lo, b.Splat(kLowest, {r, 1}, DType::kF32));
  const Value kept = b.Select(b.Compare(scaled, thr_k, Cmp::kGE), scaled, b.Splat(kLowest, scaled.shape, DType::kF32));

  // Softmax over the kept values.
  const Value e = b.Exp(b.Sub(kept, RowReduce(b, kept, ReduceKind::kMax)));
  const Value p = b.Div(e, RowReduce(b, e, ReduceKind::kSum));

  // Top-p: the largest threshold t whose set {p >= t} still holds mass >= top_p.
  lo = b.Splat(0, {r, 1}, DType::kF32);
  hi = RowReduce(b, p, ReduceKind::kMax);
  for (int it = 0; it < kBisections; ++it) {
    const Value mid = b.Mul(b.Add(lo, hi), half);
    const Value mass = RowReduce(b, b.Mul(p, AsF32(b, b.Compare(p, mid, Cmp::kGE))), ReduceKind::kSum);
    const Value ok = b.Compare(mass, top_p, Cmp::kGE);
    lo = b.Select(ok, mid, lo);
    hi = b.Select(ok, hi, mid);
  }
  const Value nucleus = b.Mul(p, AsF32(b, b.Compare(p, lo, Cmp::kGE)));
  return b.Div(nucleus, RowReduce(b, nucleus, ReduceKind::kSum));
}

Value SampleRows(Builder& b, const Value& probs, const Value& u) {
  const int64_t r = probs.shape[0], v = probs.shape[1];
  if (r == 1) {
    // The cumulative sums are matmuls; one row would take XLA:CPU's matrix-vector kernel, whose
    // rounding differs from the one batches get (numerics.h): draw from a padded pair of rows.
    const Value two = b.Concatenate({probs, probs}, 0);
    return b.SliceAxis(SampleRows(b, two, b.Concatenate({u, u}, 0)), 0, 0, 1);
  }
  int64_t c = 1;
  while (c * c < v) c <<= 1;                  // block width ~ sqrt(V), a power of two
  const int64_t nb = (v + c - 1) / c;         // blocks
  Value x = probs;
  if (nb * c > v) x = b.Concatenate({x, b.Splat(0, {r, nb * c - v}, DType::kF32)}, 1);
  x = b.Reshape(x, {r, nb, c});
  // Inclusive cumulative sum inside each block, then the exclusive sum of the blocks before.
  const Value within = b.DotGeneral(x, Triangle(b, c, true), {{}, {}, {2}, {0}});           // (R, nb, c)
  const Value totals = b.Reshape(b.SliceAxis(within, 2, c - 1, 1), {r, nb});                // (R, nb)
  const Value before = b.DotGeneral(totals, Triangle(b, nb, false), {{}, {}, {1}, {0}});    // (R, nb)
  const Value cdf = b.SliceAxis(b.Reshape(b.Add(within, b.Reshape(before, {r, nb, 1})), {r, nb * c}), 1, 0, v);
  const Value total = b.SliceAxis(cdf, 1, v - 1, 1);                                        // (R, 1)
  const Value target = b.Mul(b.Reshape(u, {r, 1}), total);
  // Index of the first token whose cumulative mass exceeds the target = tokens at or below it.
  Value idx = b.Reduce(b.Convert(b.Compare(cdf, target, Cmp::kLE), DType::kS32), {1}, ReduceKind::kSum);  // (R)
  // Rounding can push the target past the last token with mass: clamp to that token.
  const Value iota = b.Iota({r, v}, DType::kS32, 1);
  const Value last = b.Reduce(b.Select(b.Compare(probs, b.Scalar(0, DType::kF32), Cmp::kGT), iota, b.Scalar(0, DType::kS32)),
                              {1}, ReduceKind::kMax);
  return b.Min(idx, last);
}

Value ProbOfTokens(Builder& b, const Value& probs, const Value& tokens) {
  const int64_t r = probs.shape[0], v = probs.shape[1];
  const Value hit = b.Compare(b.Iota({r, v}, DType::kS32, 1), b.Reshape(tokens, {r, 1}), Cmp::kEQ);
  return b.Reduce(b.Select(hit, probs, b.Scalar(0, DType::kF32)), {1}, ReduceKind::kSum);
}

Value RepeatRows(Builder& b, const Value& x, int64_t times) {
  const int64_t r = x.shape[0], c = x.shape[1];
  return b.Reshape(b.BroadcastInDim(x, {r, times, c}, {0, 2}), {r * times, c});
}

}  // namespace dflash::models
