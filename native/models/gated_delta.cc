// Qwen3.5's Gated DeltaNet: see gated_delta.h. Numerics follow transformers' recurrent path
// (torch_recurrent_gated_delta_rule): every state update in f32, one token at a time; prefill
// programs run whole chunks of kDeltaChunk tokens in the chunked form (torch_chunk_gated_delta_rule),
// also in f32.
#include "models/gated_delta.h"

#include "models/sliding_ring.h"

#include <cmath>
#include <stdexcept>

namespace dflash::models {

using hlo::Builder;
using hlo::DType;
using hlo::Value;

namespace {

Value SiluF32(Builder& b, const Value& x) { return b.Mul(x, b.Logistic(x)); }

// torch.nn.functional.softplus (beta 1, threshold 20): x above the threshold passes through.
Value Softplus(Builder& b, const Value& x) {
  return b.Select(b.Compare(x, b.Scalar(20, DType::kF32), hlo::Cmp::kGT), x, b.Log1p(b.Exp(x)));
}

// x * rsqrt(sum(x^2, -1) + 1e-6), f32 (transformers' l2norm).
Value L2Norm(Builder& b, const Value& x) {
  hlo::Shape keep = x.shape;
  keep.back() = 1;
  const Value ss = b.Reshape(b.Reduce(b.Mul(x, x), {-1}, hlo::ReduceKind::kSum), keep);
  return b.Mul(x, b.Rsqrt(b.Add(ss, b.Scalar(1e-6, DType::kF32))));
}

// Entry i of x along `axis`, that axis dropped: x[:, i] of a (R, K, ...) value for axis 1.
Value IndexAxis(Builder& b, const Value& x, int64_t axis, const Value& i) {
  std::vector<Value> starts(x.rank(), b.Scalar(0, DType::kS32));
  starts[axis] = i;
  hlo::Shape sizes = x.shape, out = x.shape;
  sizes[axis] = 1;
  out.erase(out.begin() + axis);
  return b.Reshape(b.DynamicSlice(x, starts, sizes), out);
}

// Slot j of a (R, K, ...) value: (R, ...).
Value AtSlot(Builder& b, const Value& x, const Value& j) { return IndexAxis(b, x, 1, j); }

// One token of the gated delta rule on S (R, Hv, dk, dv): decay, then the delta update.
// k: (R, Hv, dk), v: (R, Hv, dv), g, beta: (R, Hv).
Value DeltaStep(Builder& b, const Value& s, const Value& k, const Value& v, const Value& g, const Value& beta) {
  const int64_t r = s.shape[0], hv = s.shape[1], dk = s.shape[2], dv = s.shape[3];
  const Value decayed = b.Mul(s, b.Reshape(b.Exp(g), {r, hv, 1, 1}));
  const Value kcol = b.Reshape(k, {r, hv, dk, 1});
  const Value kv_mem = b.Reduce(b.Mul(decayed, kcol), {2}, hlo::ReduceKind::kSum);   // (R, Hv, dv)
  const Value delta = b.Mul(b.Sub(v, kv_mem), b.Reshape(beta, {r, hv, 1}));       // (R, Hv, dv)
  return b.Add(decayed, b.Mul(kcol, b.Reshape(delta, {r, hv, 1, dv})));
}

// The recurrence over slots [from, to) of every row (default [0, K)), advancing row r's state
// only where keep (R, K) holds; with q, the outputs o (R, K, Hv, dv) f32 too, written into o0
// (default zeros) at those slots.
struct Span {
  const Value* from = nullptr;  // s32 scalars
  const Value* to = nullptr;
  const Value* o0 = nullptr;
};
std::pair<Value, Value> Recur(Builder& b, const Value& s0, const Value* q, const Value& k, const Value& v, const Value& g,
                              const Value& beta, const Value& keep, const Span& span = {}) {
  const int64_t r = k.shape[0], kk = k.shape[1], hv = k.shape[2], dv = v.shape[3];
  std::vector<Value> init{span.from ? *span.from : b.Scalar(0, DType::kS32), s0};
  if (q) init.push_back(span.o0 ? *span.o0 : b.Splat(0, {r, kk, hv, dv}, DType::kF32));
  const Value end = span.to ? *span.to : b.Scalar(static_cast<double>(kk), DType::kS32);
  const std::vector<Value> out = b.While(
      init, [&](const std::vector<Value>& c) { return b.Compare(c[0], end, hlo::Cmp::kLT); },
      [&](const std::vector<Value>& c) {
        const Value j = c[0];
        const Value next = DeltaStep(b, c[1], AtSlot(b, k, j), AtSlot(b, v, j), AtSlot(b, g, j), AtSlot(b, beta, j));
        const Value on = b.Reshape(AtSlot(b, keep, j), {r, 1, 1, 1});
        std::vector<Value> res{b.Add(j, b.Scalar(1, DType::kS32)), b.Select(on, next, c[1])};
        if (q) {
          // o = S^T q from the updated state: (R, Hv, dv)
          const Value o = b.Reduce(b.Mul(next, b.Reshape(AtSlot(b, *q, j), {r, hv, q->shape[3], 1})), {2}, hlo::ReduceKind::kSum);
          const Value zero = b.Scalar(0, DType::kS32);
          res.push_back(b.DynamicUpdateSlice(c[2], b.Reshape(o, {r, 1, hv, dv}), {zero, j, zero, zero}));
        }
        return res;
      });
  return {out[1], q ? out[2] : Value{}};
}

// Chunk c of a (R, Hv, NC, ...) value: (R, Hv, ...).
Value ChunkAt(Builder& b, const Value& x, const Value& c) { return IndexAxis(b, x, 2, c); }

// (R, K, Hv, ...) -> (R, Hv, NC, C, ...): chunks of C slots, heads first (batch dims of the dots).
Value ToChunks(Builder& b, const Value& x, int64_t chunk) {
  hlo::Shape split{x.shape[0], x.shape[1] / chunk, chunk};
  split.insert(split.end(), x.shape.begin() + 2, x.shape.end());
  std::vector<int64_t> perm{0, 3, 1, 2};
  if (x.rank() == 4) perm.push_back(4);
  return b.Transpose(b.Reshape(x, split), perm);
}

// The gated delta rule over the first nc whole chunks of C = kDeltaChunk slots, then token by token
// (Recur) over the rest of the valid slots. Within a chunk, from its start state S and with G the
// cumulative sum of g over the chunk (the WY form of transformers' torch_chunk_gated_delta_rule):
//   L[i, j] = beta_i (k_i . k_j) exp(G_i - G_j) for j < i      (strictly lower, C x C)
//   (I + L) U~ = beta v,  (I + L) W~ = beta exp(G) k             (one unit-lower triangular solve)
//   U = U~ - W~ S                                                (the chunk's deltas)
//   o_i = exp(G_i) q_i S + sum_{j <= i} (q_i . k_j) exp(G_i - G_j) U_j
//   S <- exp(G_C) S + sum_j exp(G_C - G_j) k_j U_j^T
// Everything but the last three lines is independent of S: it runs for every chunk at once, and
// only the (C x d) products with S run in the loop. g <= 0, so every exp above is at most 1 once
// the upper triangle is masked before exp.
// nc: the rows' whole chunks of valid slots when every row starts on a chunk boundary (positions
// [0] % C == 0), else 0: a prompt split at multiples of C computes each chunk the same way in
// every split (docs/ARCHITECTURE.md, "Layer groups").
std::pair<Value, Value> ChunkedThenRecur(Builder& b, const Value& s0, const Value& q, const Value& k, const Value& v, const Value& g,
                                         const Value& beta, const Value& valid, const Value& positions) {
  const int64_t r = k.shape[0], kk = k.shape[1], hv = k.shape[2], dv = v.shape[3], C = kDeltaChunk, nchunks = kk / C;
  const DType f32 = DType::kF32, s32 = DType::kS32;
  // ---- how many chunks run in the chunked form ----
  const Value count = b.Reduce(b.Select(valid, b.Splat(1, {r, kk}, s32), b.Splat(0, {r, kk}, s32)), {1}, hlo::ReduceKind::kSum);  // (R)
  const Value start = b.Reshape(b.SliceAxis(positions, 1, 0, 1), {r});
  const Value aligned = b.Compare(b.Rem(start, b.Scalar(static_cast<double>(C), s32)), b.Scalar(0, s32), hlo::Cmp::kEQ);
  const Value whole = b.Select(aligned, b.Div(count, b.Scalar(static_cast<double>(C), s32)), b.Splat(0, {r}, s32));
  // Rows without valid slots (padding rows, which write the trash slot) do not hold the others back.
  const Value none = b.Compare(count, b.Scalar(0, s32), hlo::Cmp::kEQ);
  const Value nc = b.Reduce(b.Select(none, b.Splat(static_cast<double>(nchunks), {r}, s32), whole), {0}, hlo::ReduceKind::kMin);
  const Value to = b.Reduce(count, {0}, hlo::ReduceKind::kMax);

  // ---- every chunk's S-independent part: (R, Hv, NC, C, ...) ----
  const Value qc = ToChunks(b, q, C), kc = ToChunks(b, k, C), vc = ToChunks(b, v, C);
  const Value gc = ToChunks(b, g, C), bc = ToChunks(b, beta, C);  // (R, Hv, NC, C)
  const Value row = b.Iota({C, C}, s32, 0), col = b.Iota({C, C}, s32, 1);
  const Value incl = b.Compare(col, row, hlo::Cmp::kLE), strict = b.Compare(col, row, hlo::Cmp::kLT);  // (C, C): j <= i, j < i
  const Value tri = b.Select(incl, b.Splat(1, {C, C}, f32), b.Splat(0, {C, C}, f32));
  const Value G = b.DotGeneral(gc, tri, hlo::DotDims{{}, {}, {3}, {1}}, f32, true);  // (R, Hv, NC, C): cumulative g
  const hlo::Shape cc{r, hv, nchunks, C, C}, col1{r, hv, nchunks, C, 1};
  const Value diff = b.Sub(b.Reshape(G, col1), b.Reshape(G, {r, hv, nchunks, 1, C}));  // G_i - G_j
  const Value decay = b.Select(incl, b.Exp(b.Select(incl, diff, b.Splat(0, cc, f32))), b.Splat(0, cc, f32));
  const Value eg = b.Exp(G);
  const Value kb = b.Mul(kc, b.Reshape(bc, col1));  // beta k
  const hlo::DotDims rows_ij{{0, 1, 2}, {0, 1, 2}, {4}, {4}};  // (.., C, d) x (.., C, d) -> (.., C, C)
  const Value lower = b.Select(strict, b.Mul(b.DotGeneral(kb, kc, rows_ij, f32, true), decay), b.Splat(0, cc, f32));
  const Value ut = b.SolveUnitLower(lower, b.Mul(vc, b.Reshape(bc, col1)));     // (R, Hv, NC, C, dv)
  const Value wt = b.SolveUnitLower(lower, b.Mul(kb, b.Reshape(eg, col1)));     // (R, Hv, NC, C, dk)
  const Value qk = b.Mul(b.DotGeneral(qc, kc, rows_ij, f32, true), decay);      // (R, Hv, NC, C, C)
  const Value qg = b.Mul(qc, b.Reshape(eg, col1));                              // (R, Hv, NC, C, dk)
  const Value glast = b.SliceAxis(G, 3, C - 1, 1);                              // (R, Hv, NC, 1)
  const Value kend = b.Mul(kc, b.Reshape(b.Exp(b.Sub(glast, G)), col1));        // (R, Hv, NC, C, dk)
  const Value elast = b.Exp(glast);

  // ---- the chunks in order ----
  const hlo::DotDims by_s{{0, 1}, {0, 1}, {3}, {2}};  // (R, Hv, C, x) x (R, Hv, x, y) -> (R, Hv, C, y)
  const std::vector<Value> out = b.While(
      {b.Scalar(0, s32), s0, b.Splat(0, {r, hv, nchunks, C, dv}, f32)},
      [&](const std::vector<Value>& st) { return b.Compare(st[0], nc, hlo::Cmp::kLT); },
      [&](const std::vector<Value>& st) {
        const Value& c = st[0];
        const Value& S = st[1];  // (R, Hv, dk, dv)
        const Value u = b.Sub(ChunkAt(b, ut, c), b.DotGeneral(ChunkAt(b, wt, c), S, by_s, f32, true));  // (R, Hv, C, dv)
        const Value o = b.Add(b.DotGeneral(ChunkAt(b, qg, c), S, by_s, f32, true), b.DotGeneral(ChunkAt(b, qk, c), u, by_s, f32, true));
        const Value next = b.Add(b.Mul(S, b.Reshape(ChunkAt(b, elast, c), {r, hv, 1, 1})),
                                 b.DotGeneral(ChunkAt(b, kend, c), u, hlo::DotDims{{0, 1}, {0, 1}, {2}, {2}}, f32, true));  // (R, Hv, dk, dv)
        const Value zero = b.Scalar(0, s32);
        return std::vector<Value>{b.Add(c, b.Scalar(1, s32)), next,
                                  b.DynamicUpdateSlice(st[2], b.Reshape(o, {r, hv, 1, C, dv}), {zero, zero, c, zero, zero})};
      });
  // (R, Hv, NC, C, dv) -> (R, K, Hv, dv); then the slots after the chunks, token by token.
  const Value o_chunks = b.Reshape(b.Transpose(out[2], {0, 2, 3, 1, 4}), {r, kk, hv, dv});
  const Value from = b.Mul(nc, b.Scalar(static_cast<double>(C), s32));
  return Recur(b, out[1], &q, k, v, g, beta, valid, Span{&from, &to, &o_chunks});
}

// (R, K, heads, d) -> (R, K, heads * rep, d): head h serves output heads [h rep, (h + 1) rep)
// (torch's repeat_interleave, as transformers groups value heads over key heads).
Value RepeatInterleaveHeads(Builder& b, const Value& x, int64_t rep) {
  if (rep == 1) return x;
  const int64_t r = x.shape[0], k = x.shape[1], h = x.shape[2], d = x.shape[3];
  return b.Reshape(b.BroadcastInDim(x, {r, k, h, rep, d}, {0, 1, 2, 4}), {r, k, h * rep, d});
}

}  // namespace

namespace {
// Rows of a [q | k | v] tensor regrouped device-major over d devices, as row-range parts.
std::vector<std::string> DeviceMajorRows(const std::string& name, const LinearAttention& c, int64_t d) {
  const int64_t qd = c.key_heads * c.key_dim, vd = c.value_heads * c.value_dim;
  std::vector<std::string> parts;
  auto range = [&](int64_t a, int64_t n) { parts.push_back(name + "[" + std::to_string(a) + ":" + std::to_string(a + n) + "]"); };
  for (int64_t i = 0; i < d; ++i) {
    range(i * qd / d, qd / d);           // q of device i's key heads
    range(qd + i * qd / d, qd / d);      // k
    range(2 * qd + i * vd / d, vd / d);  // v of its value heads
  }
  return parts;
}
}  // namespace

void AppendGatedDeltaSpecs(std::vector<WeightSpec>& s, const std::string& p, int64_t h, const LinearAttention& c, pjrt::DType t,
                           const TensorParallel& tp) {
  const int64_t conv = c.conv_dim(), vd = c.value_heads * c.value_dim;
  const bool split = tp.spmd();
  s.push_back({p + "in_proj_qkv.weight", {conv, h}, t, split ? DeviceMajorRows(p + "in_proj_qkv.weight", c, tp.devices) : std::vector<std::string>{},
               tp.Split(0)});
  s.push_back({p + "in_proj_z.weight", {vd, h}, t, {}, tp.Split(0)});
  s.push_back({p + "in_proj_b.weight", {c.value_heads, h}, t, {}, tp.Split(0)});
  s.push_back({p + "in_proj_a.weight", {c.value_heads, h}, t, {}, tp.Split(0)});
  s.push_back({p + "conv1d.weight", {conv, 1, c.conv_kernel}, t, split ? DeviceMajorRows(p + "conv1d.weight", c, tp.devices) : std::vector<std::string>{},
               tp.Split(0)});
  s.push_back({p + "dt_bias", {c.value_heads}, pjrt::DType::kF32, {}, tp.Split(0)});
  s.push_back({p + "A_log", {c.value_heads}, pjrt::DType::kF32, {}, tp.Split(0)});
  s.push_back({p + "norm.weight", {c.value_dim}, t});
  s.push_back({p + "out_proj.weight", {h, vd}, t, {}, tp.Split(1)});
}

hlo::Sharding ConvStateSharding(const TensorParallel& tp) { return tp.Split(3); }
hlo::Sharding SsmStateSharding(const TensorParallel& tp) { return tp.Split(2); }

GatedDeltaWeights TakeGatedDelta(const WeightInputs& w, const std::string& p) {
  return GatedDeltaWeights{Weight(w, p + "in_proj_qkv.weight"), Weight(w, p + "in_proj_z.weight"), Weight(w, p + "in_proj_b.weight"),
                           Weight(w, p + "in_proj_a.weight"),   Weight(w, p + "conv1d.weight"),    Weight(w, p + "dt_bias"),
                           Weight(w, p + "A_log"),              Weight(w, p + "norm.weight"),      Weight(w, p + "out_proj.weight")};
}

DeltaPass GatedDeltaForward(Builder& b, const Value& x, const GatedDeltaWeights& w, const LinearAttention& c, float eps,
                            const DeltaState& state0, const Value& valid, const Numerics& n, const TensorParallel& tp,
                            const Value* chunk_positions) {
  const int64_t r = x.shape[0], k = x.shape[1], hk = c.key_heads, hv = c.value_heads, dk = c.key_dim, dv = c.value_dim;
  const int64_t kc = c.conv_kernel, ch = c.conv_dim(), kd = hk * dk;
  if (hv % hk != 0) throw std::invalid_argument("gated delta: linear_num_value_heads must be a multiple of linear_num_key_heads");
  DeltaPass pass;
  pass.ssm0 = state0.ssm;
  const Value mixed = Dense(b, x, w.qkv, n);                       // (R, K, C)
  const Value z = SplitHeads(b, Dense(b, x, w.z, n), hv, dv);      // (R, K, Hv, dv)
  const Value beta = b.Convert(b.Logistic(Dense(b, x, w.b, n)), DType::kF32);  // (R, K, Hv)
  const Value a = b.Convert(Dense(b, x, w.a, n), DType::kF32);
  // g = -exp(A_log) * softplus(a + dt_bias), f32: (R, K, Hv)
  pass.g = b.Mul(b.Neg(b.Exp(w.a_log)), Softplus(b, b.Add(a, w.dt_bias)));
  pass.beta = beta;

  // Depthwise causal convolution over [conv state | this step's inputs], f32, tap t of output j
  // reading window slot j + t; then SiLU.
  pass.window = b.Concatenate({b.Convert(state0.conv, n.act()), mixed}, 1);  // (R, kc - 1 + K, C)
  const Value wf = b.Convert(b.Reshape(w.conv, {ch, kc}), DType::kF32);
  const Value winf = b.Convert(pass.window, DType::kF32);
  Value acc;
  for (int64_t t = 0; t < kc; ++t) {
    const Value term = b.Mul(b.SliceAxis(winf, 1, t, k), b.Reshape(b.SliceAxis(wf, 1, t, 1), {ch}));
    acc = t == 0 ? term : b.Add(acc, term);
  }
  const Value conv = b.Convert(SiluF32(b, acc), n.act());  // (R, K, C)

  // Channels are device-major (AppendGatedDeltaSpecs): per device [q | k | v] of its heads.
  const int64_t d = tp.spmd() ? tp.devices : 1, per = ch / d;
  const Value grouped = b.Reshape(conv, {r, k, d, per});  // (R, K, D, C / D), D split
  auto heads = [&](int64_t from, int64_t width, int64_t count, int64_t dim) {
    const Value part = b.Reshape(b.SliceAxis(grouped, 3, from, width), {r, k, count, dim});  // device i's heads are i-th
    return b.Constrain(b.Convert(part, DType::kF32), tp.Split(2));
  };
  Value q = heads(0, kd / d, hk, dk);
  Value kk = heads(kd / d, kd / d, hk, dk);
  pass.v = heads(2 * kd / d, hv * dv / d, hv, dv);
  q = RepeatInterleaveHeads(b, q, hv / hk);
  kk = RepeatInterleaveHeads(b, kk, hv / hk);
  q = b.Div(L2Norm(b, q), b.Scalar(std::sqrt(static_cast<double>(dk)), DType::kF32));
  pass.k = L2Norm(b, kk);

  const bool chunked = chunk_positions && k >= kDeltaChunk && k % kDeltaChunk == 0;
  auto [s_end, o] = chunked ? ChunkedThenRecur(b, state0.ssm, q, pass.k, pass.v, pass.g, pass.beta, valid, *chunk_positions)
                            : Recur(b, state0.ssm, &q, pass.k, pass.v, pass.g, pass.beta, valid);
  pass.ssm_valid = s_end;

  // Gated RMSNorm per head: norm(o) in f32, rounded, times its weight; times silu(z) in f32.
  const Value oa = b.Convert(b.Convert(o, n.act()), DType::kF32);  // transformers rounds o to the dtype first
  const Value ms = b.Div(b.Reduce(b.Mul(oa, oa), {-1}, hlo::ReduceKind::kSum), b.Scalar(static_cast<double>(dv), DType::kF32));
  const Value normed = b.Convert(b.Mul(oa, b.Rsqrt(b.Add(b.Reshape(ms, {r, k, hv, 1}), b.Scalar(eps, DType::kF32)))), n.act());
  const Value weighted = b.Convert(b.Mul(normed, b.Convert(w.norm, n.act())), DType::kF32);
  const Value gated = b.Convert(b.Mul(weighted, SiluF32(b, b.Convert(z, DType::kF32))), n.act());  // (R, K, Hv, dv)
  pass.out = Dense(b, b.Reshape(gated, {r, k, hv * dv}), w.out, n);  // (R, K, H)
  return pass;
}

namespace {
// The conv state after the first count[r] tokens of row r: window slots [count, count + kc - 1),
// the last kc - 1 inputs up to and including the last committed token. (R, kc - 1, C)
Value ConvAfter(Builder& b, const Value& window, const Value& count, const LinearAttention& c) {
  const int64_t r = window.shape[0], w = window.shape[1], kc = c.conv_kernel, ch = c.conv_dim();
  const Value rows = b.Mul(b.Iota({r, kc - 1}, DType::kS32, 0), b.Scalar(static_cast<double>(w), DType::kS32));
  const Value ids = b.Add(b.Add(rows, b.Reshape(count, {r, 1})), b.Iota({r, kc - 1}, DType::kS32, 1));  // (R, kc - 1)
  return b.Take(b.Reshape(window, {r * w, ch}), ids);
}
}  // namespace

DeltaState GatedDeltaCommit(Builder& b, const DeltaPass& pass, const Value& count, const LinearAttention& c) {
  const int64_t r = pass.k.shape[0], k = pass.k.shape[1];
  const Value cnt = b.Clamp(b.Scalar(0, DType::kS32), count, b.Scalar(static_cast<double>(k), DType::kS32));  // (R)
  const Value keep = b.Compare(b.Iota({r, k}, DType::kS32, 1), b.Reshape(cnt, {r, 1}), hlo::Cmp::kLT);  // (R, K)
  return DeltaState{ConvAfter(b, pass.window, cnt, c), Recur(b, pass.ssm0, nullptr, pass.k, pass.v, pass.g, pass.beta, keep).first};
}

DeltaState GatedDeltaCommitValid(Builder& b, const DeltaPass& pass, const Value& valid, const LinearAttention& c) {
  // The first pass advanced exactly over the valid tokens (a prefix of each row).
  const Value count = b.Reduce(b.Convert(valid, DType::kS32), {1}, hlo::ReduceKind::kSum);  // (R)
  return DeltaState{ConvAfter(b, pass.window, count, c), pass.ssm_valid};
}

std::vector<int64_t> ConvStateDims(const LinearAttention& c, int64_t layers, int64_t slots) {
  return {layers, slots, c.conv_kernel - 1, c.conv_dim()};
}
std::vector<int64_t> SsmStateDims(const LinearAttention& c, int64_t layers, int64_t slots) {
  return {layers, slots, c.value_heads, c.key_dim, c.value_dim};
}

namespace {
// (R, 2) s32 indices [layer, slot].
Value LayerSlot(Builder& b, int64_t index, const Value& slots) {
  const int64_t r = slots.shape[0];
  return b.Concatenate({b.Splat(static_cast<double>(index), {r, 1}, DType::kS32), b.Reshape(slots, {r, 1})}, 1);
}
Value ReadRows(Builder& b, const Value& arr, const Value& idx) {
  hlo::GatherDims g;
  hlo::Shape sizes{1, 1};
  for (int64_t d = 2; d < arr.rank(); ++d) g.offset_dims.push_back(d - 1), sizes.push_back(arr.shape[d]);
  g.collapsed_slice_dims = {0, 1};
  g.start_index_map = {0, 1};
  g.index_vector_dim = 1;
  return b.Gather(arr, idx, g, sizes);  // (R, rest...)
}
Value WriteRows(Builder& b, const Value& arr, const Value& idx, const Value& rows) {
  hlo::ScatterDims d;
  for (int64_t i = 2; i < arr.rank(); ++i) d.update_window_dims.push_back(i - 1);
  d.inserted_window_dims = {0, 1};
  d.scatter_dims_to_operand_dims = {0, 1};
  d.index_vector_dim = 1;
  return b.Scatter(arr, idx, b.Convert(rows, arr.dtype), d);
}
}  // namespace

DeltaState ReadDeltaState(Builder& b, const Value& conv, const Value& ssm, int64_t index, const Value& slots, const Value& fresh) {
  const Value idx = LayerSlot(b, index, slots);
  const Value c = ReadRows(b, conv, idx), s = ReadRows(b, ssm, idx);
  const int64_t r = slots.shape[0];
  return DeltaState{b.Select(b.Reshape(fresh, {r, 1, 1}), b.Splat(0, c.shape, c.dtype), c),
                    b.Select(b.Reshape(fresh, {r, 1, 1, 1}), b.Splat(0, s.shape, s.dtype), s)};
}

void WriteDeltaState(Builder& b, Value& conv, Value& ssm, int64_t index, const Value& slots, const DeltaState& s) {
  const Value idx = LayerSlot(b, index, slots);
  conv = WriteRows(b, conv, idx, s.conv);
  ssm = WriteRows(b, ssm, idx, s.ssm);
}

Program BuildStateCopy(const TargetConfig& c, const Numerics& n, int64_t slots, int64_t snapshots, bool save, int64_t devices,
                       int64_t ring_pages, int64_t page_size) {
  const int64_t ll = c.num_linear_layers(), ls = ring_pages > 0 ? c.num_sliding_layers() : 0;
  if ((ll == 0 && ls == 0) || slots < 1 || snapshots < 1)
    throw std::invalid_argument("state copy: needs recurrent layers or sliding rings, slots and snapshots");
  const TensorParallel tp = TargetParallel(c, devices);
  Builder b(devices);
  struct Pair {
    std::string running, snap;
    Value a, s;  // the running array and its snapshots
    hlo::Sharding sharding;
    int64_t unit = 1, first = 0;  // a slot is `unit` entries of dim 1 from `first` (rings: ring_pages from page 1)
  };
  std::vector<Pair> pairs;
  int alias = 0;
  auto add = [&](const std::string& name, const std::string& snap, const std::vector<int64_t>& running_dims, const std::vector<int64_t>& snap_dims,
                 DType t, hlo::Sharding sh, int64_t unit, int64_t first) {
    Pair p{name, snap, {}, {}, sh, unit, first};
    p.a = b.Input(name, running_dims, t, alias, sh);
    pairs.push_back(p);
    ++alias;
  };
  if (ll > 0) {
    add("conv_state", "conv_snap", ConvStateDims(c.linear, ll, slots), ConvStateDims(c.linear, ll, snapshots), n.act(), ConvStateSharding(tp), 1, 0);
    add("ssm_state", "ssm_snap", SsmStateDims(c.linear, ll, slots), SsmStateDims(c.linear, ll, snapshots), DType::kF32, SsmStateSharding(tp), 1, 0);
  }
  if (ls > 0) {
    for (const char* kv : {"k", "v"})
      add(std::string("swa_") + kv + "_cache", std::string("swa_") + kv + "_snap", RingCacheDims(ls, slots, ring_pages, page_size, tp.kv_heads, c.head_dim),
          RingCacheDims(ls, snapshots, ring_pages, page_size, tp.kv_heads, c.head_dim), n.kv(), tp.Cache(), ring_pages, 1);
  }
  // The snapshot arrays' inputs follow the running ones (alias order = result order).
  for (auto& p : pairs) {
    hlo::Shape dims = p.a.shape;
    dims[1] = p.first + (dims[1] - p.first) / slots * snapshots;
    p.s = b.Input(p.snap, dims, p.a.dtype, alias++, p.sharding);
  }
  const Value from = b.Reshape(b.Input("from", {1}, DType::kS32), {}), to = b.Reshape(b.Input("to", {1}, DType::kS32), {});
  // dst[:, first + to * unit ...] = src[:, first + from * unit ...] (unit entries) for every array.
  auto slot_start = [&](const Value& idx, const Pair& p) {
    return b.Add(b.Mul(idx, b.Scalar(static_cast<double>(p.unit), DType::kS32)), b.Scalar(static_cast<double>(p.first), DType::kS32));
  };
  for (auto& p : pairs) {
    Value& src = save ? p.a : p.s;
    Value& dst = save ? p.s : p.a;
    std::vector<Value> at(src.rank(), b.Scalar(0, DType::kS32)), into(src.rank(), b.Scalar(0, DType::kS32));
    at[1] = slot_start(from, p), into[1] = slot_start(to, p);
    hlo::Shape one = src.shape;
    one[1] = p.unit;
    dst = b.DynamicUpdateSlice(dst, b.DynamicSlice(src, at, one), into);
  }
  std::vector<NamedResult> results;
  for (const auto& p : pairs) results.push_back({p.running, p.a, p.sharding});
  for (const auto& p : pairs) results.push_back({p.snap, p.s, p.sharding});
  return FinishProgram(b, results);
}

}  // namespace dflash::models
