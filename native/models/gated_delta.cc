// Qwen3.5's Gated DeltaNet: see gated_delta.h. Numerics follow transformers' recurrent path
// (torch_recurrent_gated_delta_rule): every state update in f32, one token at a time.
#include "models/gated_delta.h"

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

// Slot j of a (R, K, ...) value: (R, ...).
Value AtSlot(Builder& b, const Value& x, const Value& j) {
  std::vector<Value> starts(x.rank(), b.Scalar(0, DType::kS32));
  starts[1] = j;
  hlo::Shape sizes = x.shape, out = x.shape;
  sizes[1] = 1;
  out.erase(out.begin() + 1);
  return b.Reshape(b.DynamicSlice(x, starts, sizes), out);
}

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

// The recurrence over slots [0, K) of every row, advancing row r's state only where keep (R, K)
// holds; with q, the outputs o (R, K, Hv, dv) f32 too.
std::pair<Value, Value> Recur(Builder& b, const Value& s0, const Value* q, const Value& k, const Value& v, const Value& g,
                              const Value& beta, const Value& keep) {
  const int64_t r = k.shape[0], kk = k.shape[1], hv = k.shape[2], dv = v.shape[3];
  std::vector<Value> init{b.Scalar(0, DType::kS32), s0};
  if (q) init.push_back(b.Splat(0, {r, kk, hv, dv}, DType::kF32));
  const std::vector<Value> out = b.While(
      init, [&](const std::vector<Value>& c) { return b.Compare(c[0], b.Scalar(static_cast<double>(kk), DType::kS32), hlo::Cmp::kLT); },
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
                            const DeltaState& state0, const Value& valid, const Numerics& n, const TensorParallel& tp) {
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

  auto [s_end, o] = Recur(b, state0.ssm, &q, pass.k, pass.v, pass.g, pass.beta, valid);
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

Program BuildStateCopy(const TargetConfig& c, const Numerics& n, int64_t slots, int64_t snapshots, bool save, int64_t devices) {
  const int64_t ll = c.num_linear_layers();
  if (ll == 0 || slots < 1 || snapshots < 1) throw std::invalid_argument("state copy: needs recurrent layers, slots and snapshots");
  const TensorParallel tp = TargetParallel(c, devices);
  Builder b(devices);
  Value conv = b.Input("conv_state", ConvStateDims(c.linear, ll, slots), n.act(), 0, ConvStateSharding(tp));
  Value ssm = b.Input("ssm_state", SsmStateDims(c.linear, ll, slots), DType::kF32, 1, SsmStateSharding(tp));
  Value conv_snap = b.Input("conv_snap", ConvStateDims(c.linear, ll, snapshots), n.act(), 2, ConvStateSharding(tp));
  Value ssm_snap = b.Input("ssm_snap", SsmStateDims(c.linear, ll, snapshots), DType::kF32, 3, SsmStateSharding(tp));
  const Value from = b.Reshape(b.Input("from", {1}, DType::kS32), {}), to = b.Reshape(b.Input("to", {1}, DType::kS32), {});
  // dst[:, to] = src[:, from] for both arrays of the state.
  auto copy = [&](const Value& src, Value& dst) {
    std::vector<Value> at(src.rank(), b.Scalar(0, DType::kS32)), into(src.rank(), b.Scalar(0, DType::kS32));
    at[1] = from, into[1] = to;
    hlo::Shape one = src.shape;
    one[1] = 1;
    dst = b.DynamicUpdateSlice(dst, b.DynamicSlice(src, at, one), into);
  };
  if (save) copy(conv, conv_snap), copy(ssm, ssm_snap);
  else copy(conv_snap, conv), copy(ssm_snap, ssm);
  return FinishProgram(b, {{"conv_state", conv, ConvStateSharding(tp)}, {"ssm_state", ssm, SsmStateSharding(tp)},
                           {"conv_snap", conv_snap, ConvStateSharding(tp)}, {"ssm_snap", ssm_snap, SsmStateSharding(tp)}});
}

}  // namespace dflash::models
