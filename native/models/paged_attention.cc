// Paged attention with a data-dependent loop over key chunks: see paged_attention.h.
#include "models/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace dflash::models {

using hlo::Builder;
using hlo::DType;
using hlo::Value;

int64_t KeyChunkSlots(int64_t page_size, int64_t min_slots) {
  if (page_size <= 0) throw std::invalid_argument("paged attention: page size must be positive");
  const int64_t pages = (std::max<int64_t>(min_slots, 32) + page_size - 1) / page_size;
  return pages * page_size;
}

int64_t TableWidth(int64_t max_positions, int64_t page_size, int64_t min_chunk_slots) {
  const int64_t chunk_pages = KeyChunkSlots(page_size, min_chunk_slots) / page_size;
  const int64_t pages = (std::max<int64_t>(max_positions, 1) + page_size - 1) / page_size;
  return (pages + chunk_pages - 1) / chunk_pages * chunk_pages;
}

namespace {

// The running softmax state of every query, per (row, kv head, query, group member):
// m the largest visible score so far, l the sum of exp(score - m), acc the sum of
// exp(score - m) * value, all f32.
struct Online {
  Value m, l, acc;  // (R, kvh, Tq, g), (R, kvh, Tq, g), (R, kvh, Tq, g, hd)
};

// Folds one segment of keys into the state. q5: (R, Tq, kvh, g, hd) act; k, v: (R, T, kvh, hd)
// act; visible: pred (R, Tq, T).
Online Fold(Builder& b, const Online& st, const Value& q5, const Value& k, const Value& v, const Value& visible, const Numerics& n) {
  const int64_t hd = q5.shape[4];
  // scores (R, kvh, Tq, g, T) f32
  Value s = b.DotGeneral(q5, k, hlo::DotDims{{0, 2}, {0, 2}, {4}, {3}}, DType::kF32);
  s = b.Mul(s, b.Scalar(1.0 / std::sqrt(static_cast<double>(hd)), DType::kF32));
  const Value vis = b.BroadcastInDim(visible, s.shape, {0, 2, 4});
  s = b.Select(vis, s, b.Scalar(std::numeric_limits<float>::lowest(), DType::kF32));
  const Value m = b.Max(st.m, b.Reduce(s, {4}, hlo::ReduceKind::kMax));  // (R, kvh, Tq, g)
  hlo::Shape keep = s.shape;
  keep.back() = 1;
  // Masked slots weigh exactly 0 (not exp(lowest - m), which is 1 while m is still lowest).
  const Value p = b.Select(vis, b.Exp(b.Sub(s, b.Reshape(m, keep))), b.Scalar(0, DType::kF32));
  // The rescale of what came before: exactly 1 when the max did not move (XLA's exp need not
  // return exactly 1 for 0, and a factor of 1 - ulp would make a row depend on its neighbours'
  // chunk counts).
  const Value alpha = b.Select(b.Compare(st.m, m, hlo::Cmp::kEQ), b.Splat(1, m.shape, DType::kF32), b.Exp(b.Sub(st.m, m)));
  const Value l = b.Add(b.Mul(st.l, alpha), b.Reduce(p, {4}, hlo::ReduceKind::kSum));
  // (R, kvh, Tq, g, T) . (R, T, kvh, hd) -> (R, kvh, Tq, g, hd)
  const Value pv = b.DotGeneral(b.Convert(p, n.act()), v, hlo::DotDims{{0, 1}, {0, 2}, {4}, {1}}, DType::kF32);
  hlo::Shape acc_keep = st.acc.shape;
  acc_keep.back() = 1;
  const Value acc = b.Add(b.Mul(st.acc, b.Reshape(alpha, acc_keep)), pv);
  return {m, l, acc};
}

// Layer `layer`'s slots of `pages` (R, C/S) pages: (R, C, kvh, hd) in act.
Value ReadChunk(Builder& b, const Value& cache, int64_t layer, const Value& pages, const Numerics& n) {
  const int64_t r = pages.shape[0], per = pages.shape[1], s = cache.shape[2], kvh = cache.shape[3], hd = cache.shape[4];
  const Value idx = b.Concatenate({b.Splat(static_cast<double>(layer), {r, per, 1}, DType::kS32), b.Reshape(pages, {r, per, 1})}, 2);
  const Value got = b.Gather(cache, idx, hlo::GatherDims{{2, 3, 4}, {0, 1}, {0, 1}, 2}, {1, 1, s, kvh, hd});
  return b.Convert(b.Reshape(got, {r, per * s, kvh, hd}), n.act());
}

// Folds the sink logits (one per head, no value) into the state: they only grow the denominator.
Online FoldSinks(Builder& b, const Online& st, const Value& sinks) {
  const int64_t kvh = st.m.shape[1], g = st.m.shape[3];
  if (sinks.shape != hlo::Shape{kvh * g}) throw std::invalid_argument("paged attention: sinks " + hlo::ShapeString(sinks.shape) + " is not (heads)");
  const Value s = b.BroadcastInDim(b.Reshape(b.Convert(sinks, DType::kF32), {kvh, g}), st.m.shape, {1, 3});  // (R, kvh, Tq, g)
  const Value m = b.Max(st.m, s);
  const Value alpha = b.Select(b.Compare(st.m, m, hlo::Cmp::kEQ), b.Splat(1, m.shape, DType::kF32), b.Exp(b.Sub(st.m, m)));
  const Value l = b.Add(b.Mul(st.l, alpha), b.Exp(b.Sub(s, m)));
  hlo::Shape keep = st.acc.shape;
  keep.back() = 1;
  return {m, l, b.Mul(st.acc, b.Reshape(alpha, keep))};
}

}  // namespace

KeyRange CausalRange(Builder& b, const Value& positions, int64_t window) {
  if (window <= 0) return KeyRange{b.Splat(0, positions.shape, DType::kS32), positions};
  const Value lo = b.Max(b.Sub(positions, b.Scalar(static_cast<double>(window - 1), DType::kS32)), b.Scalar(0, DType::kS32));
  return KeyRange{lo, positions};
}

Value PagedAttention(Builder& b, const Value& q_in, const Value& k_cache, const Value& v_cache, int64_t layer, const Value& table,
                     const KeyRange& range_in, const Numerics& n, const std::optional<ExtraKeys>& extra, const Value& sinks) {
  if (q_in.rank() != 4 || k_cache.rank() != 5 || v_cache.shape != k_cache.shape || table.rank() != 2 || table.shape[0] != q_in.shape[0])
    throw std::invalid_argument("paged attention: q " + hlo::ShapeString(q_in.shape) + ", caches " + hlo::ShapeString(k_cache.shape) +
                                ", table " + hlo::ShapeString(table.shape));
  const int64_t r = q_in.shape[0], heads = q_in.shape[2], hd = q_in.shape[3];
  const int64_t s = k_cache.shape[2], kvh = k_cache.shape[3], p = table.shape[1];
  if (k_cache.shape[4] != hd || heads % kvh != 0)
    throw std::invalid_argument("paged attention: q " + hlo::ShapeString(q_in.shape) + " does not match caches " + hlo::ShapeString(k_cache.shape));
  // A table narrower than one chunk (small test programs) is read as one chunk of its width.
  const int64_t per = std::min(KeyChunkSlots(s, n.key_chunk_slots) / s, p), chunk = per * s;
  if (p % per != 0)
    throw std::invalid_argument("paged attention: a block table of " + std::to_string(p) + " pages is not whole chunks of " +
                                std::to_string(per) + " pages (TableWidth)");
  if (range_in.lo.shape != hlo::Shape{r, q_in.shape[1]} || range_in.hi.shape != range_in.lo.shape)
    throw std::invalid_argument("paged attention: key range must be s32 (R, Tq)");
  const int64_t g = heads / kvh;

  // Both dots have Tq * g rows per (row, kv head): below min_dot_rows pad with query rows that
  // see nothing (numerics.h: from there on each row's result ignores the row count), then drop them.
  Value q = b.Convert(q_in, n.act());
  KeyRange range = range_in;
  std::optional<ExtraKeys> ex = extra;
  const int64_t tq0 = q_in.shape[1];
  int64_t tq = tq0;
  if (tq * g < n.min_dot_rows) {
    tq = (n.min_dot_rows + g - 1) / g;
    const int64_t pad = tq - tq0;
    q = b.Concatenate({q, b.Splat(0, {r, pad, heads, hd}, n.act())}, 1);
    range.lo = b.Concatenate({range.lo, b.Splat(0, {r, pad}, DType::kS32)}, 1);
    range.hi = b.Concatenate({range.hi, b.Splat(-1, {r, pad}, DType::kS32)}, 1);
    if (ex) ex->visible = b.Concatenate({ex->visible, b.Splat(0, {r, pad, ex->visible.shape[2]}, DType::kPred)}, 1);
  }
  const Value q5 = b.Reshape(q, {r, tq, kvh, g, hd});  // head = kv * g + j

  // The chunks any query of the batch sees: [first, end).
  const Value zero = b.Scalar(0, DType::kS32), c_slots = b.Scalar(static_cast<double>(chunk), DType::kS32);
  const Value total = b.Scalar(static_cast<double>(p / per), DType::kS32);
  const Value max_hi = b.Reduce(range.hi, {0, 1}, hlo::ReduceKind::kMax);
  const Value end = b.Min(b.Div(b.Add(b.Max(max_hi, b.Scalar(-1, DType::kS32)), c_slots), c_slots), total);  // ceil((hi + 1) / C)
  const Value first = b.Min(b.Div(b.Max(b.Reduce(range.lo, {0, 1}, hlo::ReduceKind::kMin), zero), c_slots), end);

  Online st{b.Splat(std::numeric_limits<float>::lowest(), {r, kvh, tq, g}, DType::kF32), b.Splat(0, {r, kvh, tq, g}, DType::kF32),
            b.Splat(0, {r, kvh, tq, g, hd}, DType::kF32)};
  const Value lo3 = b.Reshape(range.lo, {r, tq, 1}), hi3 = b.Reshape(range.hi, {r, tq, 1});
  const std::vector<Value> out = b.While(
      {first, st.m, st.l, st.acc}, [&](const std::vector<Value>& a) { return b.Compare(a[0], end, hlo::Cmp::kLT); },
      [&](const std::vector<Value>& a) {
        const Value c = a[0];
        const Value pages = b.DynamicSlice(table, {zero, b.Mul(c, b.Scalar(static_cast<double>(per), DType::kS32))}, {r, per});  // (R, C/S)
        const Value key = b.Add(b.Iota({r, tq, chunk}, DType::kS32, 2), b.Mul(c, c_slots));  // (R, Tq, C) positions
        const Value vis = b.And(b.Compare(key, lo3, hlo::Cmp::kGE), b.Compare(key, hi3, hlo::Cmp::kLE));
        const Online next = Fold(b, Online{a[1], a[2], a[3]}, q5, ReadChunk(b, k_cache, layer, pages, n),
                                 ReadChunk(b, v_cache, layer, pages, n), vis, n);
        return std::vector<Value>{b.Add(c, b.Scalar(1, DType::kS32)), next.m, next.l, next.acc};
      });
  st = Online{out[1], out[2], out[3]};
  if (ex) st = Fold(b, st, q5, b.Convert(ex->k, n.act()), b.Convert(ex->v, n.act()), ex->visible, n);
  if (!sinks.name.empty()) st = FoldSinks(b, st, sinks);

  // acc / l, 0 where a query saw nothing: (R, kvh, Tq, g, hd) -> (R, Tq, heads * hd)
  const Value l = b.Select(b.Compare(st.l, b.Scalar(0, DType::kF32), hlo::Cmp::kGT), st.l, b.Scalar(1, DType::kF32));
  hlo::Shape keep = st.acc.shape;
  keep.back() = 1;
  const Value o = b.Div(st.acc, b.Reshape(l, keep));
  const Value heads_out = b.Reshape(b.Transpose(o, {0, 2, 1, 3, 4}), {r, tq, heads * hd});
  return b.Convert(tq == tq0 ? heads_out : b.SliceAxis(heads_out, 1, 0, tq0), n.act());
}

}  // namespace dflash::models
