// Shared transformer blocks (see layers.h).
#include "models/layers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "models/program.h"
#include "models/quant.h"

namespace dflash::models {

using hlo::DType;
using hlo::Value;

hlo::DType Numerics::act() const { return ToHlo(dtype); }
hlo::DType Numerics::kv() const { return ToHlo(kv_dtype); }
std::string Numerics::Key() const {
  return std::string(pjrt::DTypeName(dtype)) + " kv=" + pjrt::DTypeName(kv_dtype) +
         (min_dot_rows > 1 ? " rows>=" + std::to_string(min_dot_rows) : "") + " chunk" + std::to_string(key_chunk_slots);
}

WeightInputs DeclareWeights(hlo::Builder& b, const std::vector<WeightSpec>& specs) {
  WeightInputs w;
  for (const auto& s : specs) {
    if (!s.quant.narrow()) {
      w.emplace(s.name, b.Input(s.name, s.shape, ToHlo(s.dtype), std::nullopt, s.sharding));
      continue;
    }
    // Payload and scales as stored; the graph sees W, expanded where it is read (quant.h).
    const auto stored = StoredSpecs({s}, b.partitions());
    const Value payload = b.Input(stored[0].name, stored[0].shape, ToHlo(stored[0].dtype), std::nullopt, stored[0].sharding);
    const Value scale = b.Input(stored[1].name, stored[1].shape, ToHlo(stored[1].dtype), std::nullopt, stored[1].sharding);
    const Value zero = stored.size() > 2 ? b.Input(stored[2].name, stored[2].shape, ToHlo(stored[2].dtype), std::nullopt, stored[2].sharding)
                                         : Value{};
    w.emplace(s.name, ExpandQuantized(b, s, payload, scale, zero, ToHlo(s.dtype)));
    // The stored parts too, for code that reads a slice before expanding (MoE experts: only the
    // selected experts' bytes); whatever no one reads, XLA drops.
    w.emplace(s.name + kStoredPayload, payload);
    w.emplace(s.name + kStoredScale, scale);
    if (!zero.name.empty()) w.emplace(s.name + kStoredZero, zero);
  }
  return w;
}

NarrowStack StoredStack(const WeightInputs& w, const std::string& name, const QuantLayout& q) {
  NarrowStack s;
  auto p = w.find(name + kStoredPayload);
  if (p == w.end()) return s;
  s.payload = p->second, s.scale = Weight(w, name + kStoredScale), s.layout = q;
  auto z = w.find(name + kStoredZero);
  if (z != w.end()) s.zero = z->second;
  return s;
}

const Value& Weight(const WeightInputs& w, const std::string& name) {
  auto it = w.find(name);
  if (it == w.end()) throw std::invalid_argument("model graph: no weight input " + name);
  return it->second;
}

Value RmsNorm(hlo::Builder& b, const Value& x, const Value& w, float eps, const Numerics& n) {
  // x: (..., D); the mean square and the scaling run in f32 (HF upcasts there too), the weight
  // multiplies the result rounded back to the activation dtype, as HF's Qwen3RMSNorm does.
  const int64_t d = x.dim(-1);
  if (w.rank() != 1 || w.shape[0] != d)
    throw std::invalid_argument("rms_norm: weight " + hlo::ShapeString(w.shape) + " for input " + hlo::ShapeString(x.shape));
  const Value xf = b.Convert(x, DType::kF32);
  hlo::Shape keep = x.shape;
  keep.back() = 1;
  const Value ms = b.Div(b.Reduce(b.Mul(xf, xf), {-1}, hlo::ReduceKind::kSum), b.Scalar(static_cast<double>(d), DType::kF32));
  const Value inv = b.Rsqrt(b.Add(b.Reshape(ms, keep), b.Scalar(eps, DType::kF32)));
  return b.Mul(b.Convert(b.Mul(xf, inv), n.act()), b.Convert(w, n.act()));
}

Value Dense(hlo::Builder& b, const Value& x, const Value& w, const Numerics& n) {
  return b.Convert(DenseF32(b, x, w, n), n.act());
}

Value DenseBias(hlo::Builder& b, const Value& x, const Value& w, const Value& bias, const Numerics& n) {
  if (bias.name.empty()) return Dense(b, x, w, n);
  return b.Convert(b.Add(DenseF32(b, x, w, n), b.Convert(bias, DType::kF32)), n.act());  // (..., out)
}

Value DenseF32(hlo::Builder& b, const Value& x, const Value& w, const Numerics& n) {
  // x: (..., in) -> (M, in) rows; w: (out..., in), usually (out, in). The result type f32 makes
  // XLA accumulate in f32. A w of several output axes (gate_up (2, I, H)) is contracted as it is:
  // reshaping it to (2I, H) would merge an axis split over devices with one that is not.
  const int64_t wc = w.rank() - 1;
  if (w.rank() < 2 || x.dim(-1) != w.shape[wc])
    throw std::invalid_argument("dense: x " + hlo::ShapeString(x.shape) + " and w " + hlo::ShapeString(w.shape));
  const Value xa = b.Convert(x, n.act());
  const Value wa = b.Convert(w, n.act());
  hlo::Shape out(x.shape.begin(), x.shape.end() - 1);
  out.insert(out.end(), w.shape.begin(), w.shape.end() - 1);
  const int64_t rows = x.elements() / x.dim(-1);
  if (rows < n.min_dot_rows) {
    // (rows, in) ++ zeros -> (min_dot_rows, in): the same kernel as every larger call (see
    // numerics.h); the padding rows of the result are discarded.
    const int64_t in = x.dim(-1), pad = n.min_dot_rows - rows;
    const Value padded = b.Concatenate({b.Reshape(xa, {rows, in}), b.Splat(0, {pad, in}, n.act())}, 0);
    const Value y = b.DotGeneral(padded, wa, hlo::DotDims{{}, {}, {1}, {wc}}, DType::kF32);  // (min_dot_rows, out...)
    return b.Reshape(b.SliceAxis(y, 0, 0, rows), out);
  }
  return b.DotGeneral(xa, wa, hlo::DotDims{{}, {}, {x.rank() - 1}, {wc}}, DType::kF32);
}

Value SiluMlp(hlo::Builder& b, const Value& x, const Value& gate_up, const Value& down, const Numerics& n) {
  const int64_t axis = x.rank() - 1;
  Value g, u;  // (..., I) each
  if (gate_up.rank() == 2 && gate_up.shape[0] % 2 == 0) {
    // (2I, H): one device. A dot of a rank-2 weight: on XLA:CPU a rank-3 one costs a relayout
    // copy of the weight per execution (+12 MB per layer at the 0.6B shape, test/40).
    const int64_t i = gate_up.shape[0] / 2;
    const Value gu = Dense(b, x, gate_up, n);  // (..., 2I)
    g = b.SliceAxis(gu, axis, 0, i), u = b.SliceAxis(gu, axis, i, i);
  } else if (gate_up.rank() == 3 && gate_up.shape[0] == 2) {
    // (2, I, H): split over devices by I; the stacked axis keeps gate and up apart.
    const Value gu = Dense(b, x, gate_up, n);  // (..., 2, I)
    hlo::Shape half = x.shape;
    half.back() = gate_up.shape[1];
    g = b.Reshape(b.SliceAxis(gu, axis, 0, 1), half), u = b.Reshape(b.SliceAxis(gu, axis, 1, 1), half);
  } else {
    throw std::invalid_argument("mlp: gate_up " + hlo::ShapeString(gate_up.shape) + " is neither (2I, H) nor (2, I, H)");
  }
  return Dense(b, b.Mul(b.Mul(g, b.Logistic(g)), u), down, n);  // silu(g) = g * sigmoid(g)
}

Value SplitHeads(hlo::Builder& b, const Value& x, int64_t heads, int64_t hd) {
  hlo::Shape s = x.shape;
  if (s.empty() || s.back() != heads * hd)
    throw std::invalid_argument("split_heads: " + hlo::ShapeString(s) + " is not (..., " + std::to_string(heads * hd) + ")");
  s.back() = heads;
  s.push_back(hd);
  return b.Reshape(x, s);
}

Value Attention(hlo::Builder& b, const Value& q, const std::vector<Value>& keys, const Value& v, const Value& visible,
                const Numerics& n) {
  if (q.rank() != 4 || keys.empty() || v.rank() != 4)
    throw std::invalid_argument("attention: q " + hlo::ShapeString(q.shape) + ", " + std::to_string(keys.size()) + " key segments, v " +
                                hlo::ShapeString(v.shape));
  const int64_t r = q.shape[0], tq = q.shape[1], heads = q.shape[2], hd = q.shape[3];
  const int64_t tk = v.shape[1], kvh = v.shape[2];
  int64_t segments_tk = 0;
  for (const Value& k : keys) {
    if (k.rank() != 4 || k.shape[0] != r || k.shape[2] != kvh || k.shape[3] != hd)
      throw std::invalid_argument("attention: key segment " + hlo::ShapeString(k.shape) + " for q " + hlo::ShapeString(q.shape) +
                                  " and v " + hlo::ShapeString(v.shape));
    segments_tk += k.shape[1];
  }
  if (v.shape[0] != r || v.shape[3] != hd || segments_tk != tk || heads % kvh != 0)
    throw std::invalid_argument("attention: q " + hlo::ShapeString(q.shape) + " and v " + hlo::ShapeString(v.shape) +
                                " do not match the key segments (" + std::to_string(segments_tk) + " slots)");
  if (visible.shape != hlo::Shape{r, tq, tk} || visible.dtype != DType::kPred)
    throw std::invalid_argument("attention: mask must be pred " + hlo::ShapeString({r, tq, tk}));
  const int64_t g = heads / kvh;
  if (tq * g < n.min_dot_rows) {
    // Both attention dots have Tq * g rows per (row, kv head): pad with masked query rows to the
    // row count whose kernels ignore the row count (numerics.h), then drop them.
    const int64_t tq_pad = (n.min_dot_rows + g - 1) / g;
    const Value qp = b.Concatenate({b.Convert(q, n.act()), b.Splat(0, {r, tq_pad - tq, heads, hd}, n.act())}, 1);
    const Value vp = b.Concatenate({visible, b.Splat(0, {r, tq_pad - tq, tk}, DType::kPred)}, 1);
    Numerics no_pad = n;
    no_pad.min_dot_rows = 1;
    return b.SliceAxis(Attention(b, qp, keys, v, vp, no_pad), 1, 0, tq);
  }
  const Value q5 = b.Reshape(b.Convert(q, n.act()), {r, tq, kvh, g, hd});  // head = kv * g + j
  // scores: (R, kvh, Tq, g, Tk), f32, one dot per segment; a segment longer than kScoreChunk is
  // scored as chunks of kScoreChunk slots by one dot batched over the chunks (each chunk's scores
  // are bit-identical to a lone chunk's).
  std::vector<Value> parts;
  for (const Value& k : keys) {
    const Value ka = b.Convert(k, n.act());
    const int64_t tk_i = k.shape[1];
    if (tk_i <= kScoreChunk) {
      parts.push_back(b.DotGeneral(q5, ka, hlo::DotDims{{0, 2}, {0, 2}, {4}, {3}}, DType::kF32));
      continue;
    }
    if (tk_i % kScoreChunk != 0)
      throw std::invalid_argument("attention: a key segment of " + std::to_string(tk_i) + " slots is not a multiple of " +
                                  std::to_string(kScoreChunk));
    // q (R, C, Tq, kvh, g, hd) . k (R, C, chunk, kvh, hd) -> (R, kvh, C, Tq, g, chunk)
    const int64_t chunks = tk_i / kScoreChunk;
    const Value kc = b.Reshape(ka, {r, chunks, kScoreChunk, kvh, hd});
    const Value qc = b.BroadcastInDim(q5, {r, chunks, tq, kvh, g, hd}, {0, 2, 3, 4, 5});
    const Value sc = b.DotGeneral(qc, kc, hlo::DotDims{{0, 3, 1}, {0, 3, 1}, {5}, {4}}, DType::kF32);
    parts.push_back(b.Reshape(b.Transpose(sc, {0, 1, 3, 4, 2, 5}), {r, kvh, tq, g, tk_i}));
  }
  Value s = parts.size() == 1 ? parts[0] : b.Concatenate(parts, 4);
  s = b.Mul(s, b.Scalar(1.0 / std::sqrt(static_cast<double>(hd)), DType::kF32));
  const Value vis = b.BroadcastInDim(visible, s.shape, {0, 2, 4});
  // A finite fill keeps fully masked rows (padding queries) NaN-free after the max subtraction.
  s = b.Select(vis, s, b.Scalar(std::numeric_limits<float>::lowest(), DType::kF32));
  hlo::Shape keep = s.shape;
  keep.back() = 1;
  const Value m = b.Reshape(b.Reduce(s, {4}, hlo::ReduceKind::kMax), keep);
  const Value e = b.Exp(b.Sub(s, m));
  const Value p = b.Convert(b.Div(e, b.Reshape(b.Reduce(e, {4}, hlo::ReduceKind::kSum), keep)), n.act());
  // out: (R, kvh, Tq, g, hd) -> (R, Tq, kvh, g, hd) -> (R, Tq, heads * hd)
  const Value o = b.DotGeneral(p, b.Convert(v, n.act()), hlo::DotDims{{0, 1}, {0, 2}, {4}, {1}}, DType::kF32);
  return b.Convert(b.Reshape(b.Transpose(o, {0, 2, 1, 3, 4}), {r, tq, heads * hd}), n.act());
}

DecoderLayer TakeDecoderLayer(const WeightInputs& w, const std::string& p, bool qk_norm, AttentionBias bias, bool dense_mlp) {
  DecoderLayer l;
  l.ln1 = Weight(w, p + "input_layernorm.weight");
  l.q = Weight(w, p + "self_attn.q_proj.weight");
  l.k = Weight(w, p + "self_attn.k_proj.weight");
  l.v = Weight(w, p + "self_attn.v_proj.weight");
  l.o = Weight(w, p + "self_attn.o_proj.weight");
  if (bias.qkv) {
    l.q_bias = Weight(w, p + "self_attn.q_proj.bias");
    l.k_bias = Weight(w, p + "self_attn.k_proj.bias");
    l.v_bias = Weight(w, p + "self_attn.v_proj.bias");
  }
  if (bias.o) l.o_bias = Weight(w, p + "self_attn.o_proj.bias");
  if (qk_norm) {
    l.q_norm = Weight(w, p + "self_attn.q_norm.weight");
    l.k_norm = Weight(w, p + "self_attn.k_norm.weight");
  }
  l.ln2 = Weight(w, p + "post_attention_layernorm.weight");
  if (dense_mlp) {
    l.gate_up = Weight(w, p + "mlp.gate_up_proj.weight");
    l.down = Weight(w, p + "mlp.down_proj.weight");
  }
  return l;
}

void AppendDecoderLayerSpecs(std::vector<WeightSpec>& s, const std::string& p, int64_t h, int64_t heads,
                             int64_t kv_heads, int64_t hd, int64_t inter, bool qk_norm, pjrt::DType t, const TensorParallel& tp,
                             AttentionBias bias) {
  const int64_t qd = heads * hd, kvd = kv_heads * hd;
  s.push_back({p + "input_layernorm.weight", {h}, t});
  s.push_back({p + "self_attn.q_proj.weight", {qd, h}, t, {}, tp.Split(0)});
  s.push_back({p + "self_attn.k_proj.weight", {kvd, h}, t, {}, tp.KvProj()});
  s.push_back({p + "self_attn.v_proj.weight", {kvd, h}, t, {}, tp.KvProj()});
  s.push_back({p + "self_attn.o_proj.weight", {h, qd}, t, {}, tp.Split(1)});
  if (bias.qkv) {
    // Split with their projections' output rows (the heads); o_proj's bias is added once, after
    // the row-parallel product is summed over the devices.
    s.push_back({p + "self_attn.q_proj.bias", {qd}, t, {}, tp.Split(0)});
    s.push_back({p + "self_attn.k_proj.bias", {kvd}, t, {}, tp.KvProj()});
    s.push_back({p + "self_attn.v_proj.bias", {kvd}, t, {}, tp.KvProj()});
  }
  if (bias.o) s.push_back({p + "self_attn.o_proj.bias", {h}, t});
  if (qk_norm) {
    s.push_back({p + "self_attn.q_norm.weight", {hd}, t});
    s.push_back({p + "self_attn.k_norm.weight", {hd}, t});
  }
  s.push_back({p + "post_attention_layernorm.weight", {h}, t});
  // (2I, H) on one device; over several, (2, I, H) split by I (the same bytes: parts stacked).
  const std::vector<std::string> gate_up = {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"};
  if (tp.spmd()) s.push_back({p + "mlp.gate_up_proj.weight", {2, inter, h}, t, gate_up, tp.Split(1)});
  else s.push_back({p + "mlp.gate_up_proj.weight", {2 * inter, h}, t, gate_up});
  s.push_back({p + "mlp.down_proj.weight", {h, inter}, t, {}, tp.Split(1)});
}

Qkv ProjectQkv(hlo::Builder& b, const Value& x, const DecoderLayer& w, int64_t heads, int64_t kv_heads, int64_t hd,
               const TensorParallel& tp, const Numerics& n) {
  Qkv r;
  r.q = SplitHeads(b, DenseBias(b, x, w.q, w.q_bias, n), heads, hd);  // (..., heads, hd), heads split
  r.k = SplitHeads(b, DenseBias(b, x, w.k, w.k_bias, n), kv_heads, hd);
  r.v = SplitHeads(b, DenseBias(b, x, w.v, w.v_bias, n), kv_heads, hd);
  if (tp.kv_repeat > 1) {
    // Replicated k/v_proj: every device has all KV heads; each keeps its repeated one.
    const int head_axis = static_cast<int>(r.k.rank()) - 2;
    r.k = b.Constrain(RepeatHeads(b, r.k, tp.kv_repeat), tp.Split(head_axis));
    r.v = b.Constrain(RepeatHeads(b, r.v, tp.kv_repeat), tp.Split(head_axis));
  }
  return r;
}

}  // namespace dflash::models
