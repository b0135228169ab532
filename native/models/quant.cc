// Narrow weights on the device: see quant.h.
#include "models/quant.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "models/program.h"

namespace dflash::models {

using hlo::DType;
using hlo::Value;
using Payload = QuantLayout::Payload;

namespace {

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

pjrt::DType PayloadDtype(Payload p) {
  switch (p) {
    case Payload::kInt8: return pjrt::DType::kS8;
    case Payload::kInt8Packed: return pjrt::DType::kU8;  // value + 128
    case Payload::kInt4: return pjrt::DType::kU8;  // two values per byte, low nibble first
    case Payload::kFp8: return pjrt::DType::kF8E4M3FN;
    case Payload::kMxfp4: return pjrt::DType::kU8;  // two e2m1 values per byte, low nibble first
    case Payload::kNone: break;
  }
  throw std::logic_error("quant: no payload");
}

std::string Dims(const std::vector<int64_t>& d) {
  std::string s;
  for (auto x : d) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return "(" + s + ")";
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

const char* PayloadName(Payload p) {
  switch (p) {
    case Payload::kInt8: return "int8";
    case Payload::kInt8Packed: return "int8 (offset)";
    case Payload::kInt4: return "int4";
    case Payload::kFp8: return "fp8";
    case Payload::kMxfp4: return "mxfp4";
    case Payload::kNone: break;
  }
  return "none";
}

std::string LayoutKey(const QuantLayout& l) {
  std::string k = PayloadName(l.payload);
  if (!l.narrow()) return k;
  if (l.zero_point) k += " zp";
  if (l.block_cols == 0) return k + (l.block_rows == 1 ? " channel" : " rows" + std::to_string(l.block_rows));
  if (l.block_rows == 1) return k + " g" + std::to_string(l.block_cols);
  return k + " b" + std::to_string(l.block_rows) + "x" + std::to_string(l.block_cols);
}

bool WeightQuant::Covers(const std::string& name) const {
  // MXFP4 (gpt-oss) covers the stacked experts only; attention and router stay 16-bit.
  if (layout.payload == Payload::kMxfp4)
    return EndsWith(name, "mlp.experts.gate_up_proj") || EndsWith(name, "mlp.experts.down_proj");
  if (!enabled() || !EndsWith(name, "_proj.weight")) return false;
  return !ignore.count(name.substr(0, name.size() - std::string(".weight").size()));
}

std::string WeightQuant::Key() const {
  return LayoutKey(layout) + (ignore.empty() ? "" : ", " + std::to_string(ignore.size()) + " Linear modules left unquantized");
}

void ApplyQuant(std::vector<WeightSpec>& specs, const WeightQuant& q) {
  for (auto& s : specs)
    if (q.Covers(s.name)) (q.expand_at_load ? s.expand_from : s.quant) = q.layout;
}

std::vector<WeightSpec> StoredSpecs(const std::vector<WeightSpec>& specs, int64_t devices) {
  std::vector<WeightSpec> out;
  for (const auto& s : specs) {
    if (!s.quant.narrow()) {
      out.push_back(s);
      continue;
    }
    const QuantLayout& q = s.quant;
    const size_t rank = s.shape.size();
    if (rank < 2) throw std::invalid_argument("quant: " + s.name + " " + Dims(s.shape) + " is not a matrix");
    const int64_t rows = s.shape[rank - 2], cols = s.shape[rank - 1];
    const int64_t br = q.block_rows, bc = q.block_cols == 0 ? cols : q.block_cols;
    if (br <= 0 || bc <= 0) throw std::invalid_argument("quant: " + s.name + ": block " + LayoutKey(q) + " is empty");
    const bool nibbles = q.payload == Payload::kInt4 || q.payload == Payload::kMxfp4;  // two values per byte
    if (nibbles && cols % 2 != 0)
      throw std::invalid_argument("quant: " + std::string(PayloadName(q.payload)) + " " + s.name + " has an odd row length " + std::to_string(cols));
    // Parts fused along dim 0 (gate_proj and up_proj concatenated as (2I, H)) keep their scale
    // blocks only when each part is whole blocks.
    if (!s.parts.empty() && s.shape[0] != static_cast<int64_t>(s.parts.size()) && (rows / static_cast<int64_t>(s.parts.size())) % br != 0)
      throw std::invalid_argument("quant: " + s.name + " joins " + std::to_string(s.parts.size()) + " weights of " +
                                  std::to_string(rows / static_cast<int64_t>(s.parts.size())) + " rows, not whole blocks of " +
                                  std::to_string(br) + " rows");

    WeightSpec payload = s;
    payload.quant = {};
    payload.dtype = PayloadDtype(q.payload);
    if (nibbles) payload.shape.back() = cols / 2;
    WeightSpec scale = s;
    scale.quant = {};
    scale.name = s.name + "_scale";
    scale.dtype = q.payload == Payload::kMxfp4 ? pjrt::DType::kU8 : pjrt::DType::kF32;  // E8M0 exponents stay one byte
    scale.shape[rank - 2] = CeilDiv(rows, br);
    scale.shape[rank - 1] = CeilDiv(cols, bc);
    for (auto& p : scale.parts) p += "_scale";

    const int dim = s.sharding.dim;
    if (devices > 1 && dim >= 0) {
      const int64_t along = s.shape[dim] / devices;  // each device's rows / columns of W
      const bool in_rows = dim == static_cast<int>(rank) - 2, in_cols = dim == static_cast<int>(rank) - 1;
      const int64_t block = in_rows ? br : in_cols ? bc : 1;
      if (in_cols && q.block_cols == 0) {
        scale.sharding = {};  // one scale per output row: every device needs all of them
      } else if (along % block != 0) {
        throw std::invalid_argument("quant: " + s.name + " " + Dims(s.shape) + " split over " + std::to_string(devices) +
                                    " devices gives each " + std::to_string(along) + (in_rows ? " rows" : " columns") +
                                    ", not whole " + LayoutKey(q) + " scale blocks of " + std::to_string(block));
      }
      if (in_cols && nibbles && along % 2 != 0)
        throw std::invalid_argument("quant: " + std::string(PayloadName(q.payload)) + " " + s.name + " split over " + std::to_string(devices) + " devices cuts a byte (" +
                                    std::to_string(along) + " columns each)");
    }
    WeightSpec zero = scale;
    zero.name = s.name + "_zero";
    for (auto& p : zero.parts) p = p.substr(0, p.size() - std::string("_scale").size()) + "_zero";
    out.push_back(std::move(payload));
    out.push_back(std::move(scale));
    if (q.zero_point) out.push_back(std::move(zero));
  }
  return out;
}

namespace {

Value E8m0Table(hlo::Builder& b) {
  std::vector<float> t(256);
  for (int s = 0; s < 256; ++s) t[s] = E8m0ToFloat(static_cast<uint8_t>(s));
  return b.ConstF32(t, {256});
}

}  // namespace

Value ExpandQuantized(hlo::Builder& b, const WeightSpec& spec, const Value& payload, const Value& scale, const Value& zero,
                      DType act) {
  const QuantLayout& q = spec.quant;
  const hlo::Shape& w = spec.shape;  // (..., out, in)
  const int64_t rank = static_cast<int64_t>(w.size()), rows = w[rank - 2], cols = w[rank - 1];
  Value v;  // decode(q): (..., out, in) f32
  if (q.payload == Payload::kInt4) {
    // payload (..., out, in/2) u8: value 2j in the low nibble, 2j+1 in the high one, stored + 8.
    hlo::Shape pairs = payload.shape;
    pairs.push_back(1);
    const Value lo = b.Reshape(b.And(payload, b.Scalar(15, DType::kU8)), pairs);
    const Value hi = b.Reshape(b.ShiftRightLogical(payload, b.Scalar(4, DType::kU8)), pairs);
    v = b.Reshape(b.Concatenate({lo, hi}, static_cast<int>(rank)), w);  // (..., out, in/2, 2) -> (..., out, in)
    v = b.Sub(b.Convert(v, DType::kF32), b.Scalar(8, DType::kF32));
  } else if (q.payload == Payload::kMxfp4) {
    // payload (..., out, in/2) u8: e2m1 value 2j in the low nibble, 2j+1 in the high one; the
    // 16 codes read from a table (exact in f32).
    hlo::Shape pairs = payload.shape;
    pairs.push_back(1);
    const Value lo = b.Reshape(b.And(payload, b.Scalar(15, DType::kU8)), pairs);
    const Value hi = b.Reshape(b.ShiftRightLogical(payload, b.Scalar(4, DType::kU8)), pairs);
    const Value codes = b.Reshape(b.Concatenate({lo, hi}, static_cast<int>(rank)), w);
    v = b.Take(b.ConstF32(std::vector<float>(kE2m1Values, kE2m1Values + 16), {16}), b.Convert(codes, DType::kS32));
  } else if (q.payload == Payload::kInt8Packed) {
    v = b.Sub(b.Convert(payload, DType::kF32), b.Scalar(128, DType::kF32));
  } else {
    v = b.Convert(payload, DType::kF32);  // s8 and f8e4m3fn are exact in f32
  }
  // (..., so, si) -> (..., so, br, si, bc) -> (..., so*br, si*bc), cut to (..., out, in): each
  // scale (and zero) over its block.
  const int64_t br = q.block_rows, bc = q.block_cols == 0 ? cols : q.block_cols;
  auto per_element = [&](const Value& x) {
    const int64_t so = x.shape[rank - 2], si = x.shape[rank - 1];
    hlo::Shape blocks(x.shape.begin(), x.shape.end() - 2);
    std::vector<int64_t> keep;
    for (int64_t d = 0; d < rank - 2; ++d) keep.push_back(d);
    const int64_t lead = static_cast<int64_t>(blocks.size());
    blocks.insert(blocks.end(), {so, br, si, bc});
    keep.push_back(lead), keep.push_back(lead + 2);
    hlo::Shape full(x.shape.begin(), x.shape.end() - 2);
    full.insert(full.end(), {so * br, si * bc});
    // E8M0 exponents -> 2^(s - 127) by a 256-entry table (exact, subnormal 2^-127 included)
    const Value xf = x.dtype == DType::kU8 ? b.Take(E8m0Table(b), b.Convert(x, DType::kS32)) : b.Convert(x, DType::kF32);
    Value e = b.Reshape(b.BroadcastInDim(xf, blocks, keep), full);
    if (so * br != rows) e = b.SliceAxis(e, static_cast<int>(rank - 2), 0, rows);
    if (si * bc != cols) e = b.SliceAxis(e, static_cast<int>(rank - 1), 0, cols);
    return e;
  };
  if (!zero.name.empty()) v = b.Sub(v, per_element(zero));
  const Value s = per_element(scale);
  Value out = b.Convert(b.Mul(v, s), act);
  if (spec.sharding.dim >= 0) out = b.Constrain(out, spec.sharding);  // W lies as the payload does
  return out;
}

Value GatherExpanded(hlo::Builder& b, const NarrowStack& s, const Value& ids, DType act) {
  const Value q = b.Take(s.payload, ids), sc = b.Take(s.scale, ids);  // (I..., out, in'), (I..., so, si)
  const Value z = s.zero.name.empty() ? Value{} : b.Take(s.zero, ids);
  WeightSpec spec;
  spec.shape = q.shape;
  if (s.layout.payload == Payload::kInt4 || s.layout.payload == Payload::kMxfp4) spec.shape.back() *= 2;
  spec.quant = s.layout;
  return ExpandQuantized(b, spec, q, sc, z, act);
}

}  // namespace dflash::models
