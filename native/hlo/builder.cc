// Core of the StableHLO text builder: dtypes, type strings, arguments, constants, emission,
// elementwise ops and Finish(). Shape ops live in builder_shape.cc, contractions/reductions/
// indexing in builder_index.cc.
#include "hlo/builder.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "hlo/text.h"

namespace dflash::hlo {

const char* MlirName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kS32: return "i32";
    case DType::kS64: return "i64";
    case DType::kU8: return "ui8";
    case DType::kU32: return "ui32";
    case DType::kPred: return "i1";
    case DType::kS8: return "i8";
    case DType::kF8E4M3FN: return "f8E4M3FN";
  }
  return "?";
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kS32: return "s32";
    case DType::kS64: return "s64";
    case DType::kU8: return "u8";
    case DType::kU32: return "u32";
    case DType::kPred: return "pred";
    case DType::kS8: return "s8";
    case DType::kF8E4M3FN: return "f8e4m3fn";
  }
  return "?";
}

int64_t Value::dim(int64_t i) const {
  const int64_t r = rank();
  if (i < -r || i >= r) throw std::invalid_argument("Value::dim: axis " + std::to_string(i) + " out of range for " + ShapeString(shape));
  return shape[i < 0 ? i + r : i];
}

int64_t Value::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorType(const Shape& shape, DType dtype) {
  std::string s = "tensor<";
  for (int64_t d : shape) s += std::to_string(d) + "x";
  return s + MlirName(dtype) + ">";
}

std::string ShapeString(const Shape& shape) {
  std::string s = "[";  // appended piecewise: GCC 12 misfires -Wrestrict on "[" + str + "]"
  s += JoinInts(shape);
  return s += "]";
}

std::string JoinInts(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

std::string I64Array(const std::vector<int64_t>& v) {
  return v.empty() ? "array<i64>" : "array<i64: " + JoinInts(v) + ">";
}

std::string FloatLiteral(double v, DType dtype) {
  if (std::isfinite(v)) {
    char buf[64];
    // f32 values are rounded first so the printed decimal is the f32 the caller meant; 9
    // significant digits round-trip any f32 (17 any double).
    if (dtype == DType::kF32) std::snprintf(buf, sizeof buf, "%.9e", static_cast<double>(static_cast<float>(v)));
    else std::snprintf(buf, sizeof buf, "%.17e", v);
    return buf;
  }
  // MLIR has no inf/nan keywords: spell the bit pattern in hex, as wide as the type.
  const bool neg = std::signbit(v), nan = std::isnan(v);
  switch (dtype) {
    case DType::kF32: return nan ? "0x7FC00000" : (neg ? "0xFF800000" : "0x7F800000");
    case DType::kBF16: return nan ? "0x7FC0" : (neg ? "0xFF80" : "0x7F80");
    case DType::kF16: return nan ? "0x7E00" : (neg ? "0xFC00" : "0x7C00");
    default: break;
  }
  throw std::invalid_argument("constant: non-finite value for a non-float type");
}

std::string ElementLiteral(double v, DType dtype) {
  if (IsFloat(dtype)) return FloatLiteral(v, dtype);
  if (dtype == DType::kPred) return v != 0 ? "true" : "false";
  if (v != std::floor(v)) throw std::invalid_argument(std::string("constant: non-integer value for ") + DTypeName(dtype));
  if (IsUnsigned(dtype) && v < 0) throw std::invalid_argument(std::string("constant: negative value for ") + DTypeName(dtype));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  return buf;
}

void CheckShape(const char* op, const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": negative dimension in " + ShapeString(shape));
}

int64_t NormAxis(const char* op, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    throw std::invalid_argument(std::string(op) + ": axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

// ---- builder core --------------------------------------------------------------------------

Builder::Builder(int64_t partitions) : partitions_(partitions) {
  if (partitions < 1) throw std::invalid_argument("builder: partitions must be >= 1, got " + std::to_string(partitions));
}

std::string Builder::ShardingAttr(const char* op, const Shape& shape, Sharding s) const {
  if (!s.replicated()) {
    if (s.dim >= static_cast<int>(shape.size()))
      throw std::invalid_argument(std::string(op) + ": split dimension " + std::to_string(s.dim) + " of a value of shape " + ShapeString(shape));
    if (shape[s.dim] % partitions_ != 0)
      throw std::invalid_argument(std::string(op) + ": dimension " + std::to_string(s.dim) + " of " + ShapeString(shape) +
                                  " does not split into " + std::to_string(partitions_) + " equal parts");
  }
  std::string dims;
  for (size_t d = 0; d < shape.size(); ++d) dims += std::string(d ? ", " : "") + (static_cast<int>(d) == s.dim ? "{\"tp\"}" : "{}");
  return "#sdy.sharding<@mesh, [" + dims + "]>";
}

Value Builder::Constrain(const Value& x, Sharding s) {
  const std::string attr = ShardingAttr("sharding_constraint", x.shape, s);
  if (partitions_ == 1) return x;
  const Value out{NewName(), x.shape, x.dtype};
  body_ += "    " + out.name + " = \"sdy.sharding_constraint\"(" + x.name + ") <{sharding = " + attr + "}> : (" + TensorType(x) +
           ") -> " + TensorType(out) + "\n";
  return out;
}

std::string Builder::NewName() { return "%v" + std::to_string(next_id_++); }

Value Builder::Emit(const std::string& op, const std::vector<Value>& operands, const Shape& shape,
                    DType dtype, const std::string& attrs, const std::string& region) {
  return EmitMulti(op, operands, {{shape, dtype}}, attrs, region)[0];
}

std::vector<Value> Builder::EmitMulti(const std::string& op, const std::vector<Value>& operands,
                                      const std::vector<std::pair<Shape, DType>>& results,
                                      const std::string& attrs, const std::string& region) {
  const std::string base = NewName();
  std::vector<Value> outs;
  std::string result_types;
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string name = results.size() == 1 ? base : base + "#" + std::to_string(i);
    outs.push_back(Value{name, results[i].first, results[i].second});
    result_types += (i ? ", " : "") + TensorType(outs.back());
  }
  // "top_k" -> "stablehlo.top_k"; a dotted name is another dialect's op as it is ("chlo.top_k").
  const std::string full = op.find('.') == std::string::npos ? "stablehlo." + op : op;
  std::string line = "    " + base + (results.size() == 1 ? "" : ":" + std::to_string(results.size())) + " = \"" + full + "\"(";
  std::string types;
  for (size_t i = 0; i < operands.size(); ++i) {
    line += (i ? ", " : "") + operands[i].name;
    types += (i ? ", " : "") + TensorType(operands[i]);
  }
  line += ")";
  if (!region.empty()) line += " (" + region + ")";
  if (!attrs.empty()) line += " {" + attrs + "}";
  line += " : (" + types + ") -> ";
  line += results.size() == 1 ? result_types : "(" + result_types + ")";
  body_ += line + "\n";
  return outs;
}

std::string Builder::Region(const std::vector<DType>& arg_types,
                            const std::function<std::vector<Value>(const std::vector<Value>&)>& body) {
  std::vector<std::pair<Shape, DType>> args;
  for (DType t : arg_types) args.push_back({{}, t});
  return Region(args, body);
}

std::string Builder::Region(const std::vector<std::pair<Shape, DType>>& arg_types,
                            const std::function<std::vector<Value>(const std::vector<Value>&)>& body) {
  std::vector<Value> args;
  std::string text = "{\n";
  if (!arg_types.empty()) {  // a block without arguments (if/else branches) has no label
    text += "    ^bb0(";
    for (size_t i = 0; i < arg_types.size(); ++i) {
      args.push_back(Value{NewName(), arg_types[i].first, arg_types[i].second});
      text += (i ? ", " : "") + args.back().name + ": " + TensorType(args.back());
    }
    text += "):\n";
  }
  // Build the region's ops with the ordinary methods, collecting them apart from the body.
  std::string outer;
  std::swap(outer, body_);
  std::vector<Value> rets;
  try {
    rets = body(args);
  } catch (...) {
    std::swap(outer, body_);
    throw;
  }
  std::swap(outer, body_);
  for (size_t pos = 0; pos < outer.size();) {  // indent the region's ops one level deeper
    const size_t nl = outer.find('\n', pos);
    text += "  " + outer.substr(pos, nl - pos + 1);
    pos = nl + 1;
  }
  std::string names, types;
  for (size_t i = 0; i < rets.size(); ++i) {
    names += (i ? ", " : "") + rets[i].name;
    types += (i ? ", " : "") + TensorType(rets[i]);
  }
  return text + "      \"stablehlo.return\"(" + names + ") : (" + types + ") -> ()\n    }";
}

Value Builder::Parameter(const Shape& shape, DType dtype, std::optional<int> alias_output) {
  return Input("", shape, dtype, alias_output);
}

Value Builder::Input(const std::string& name, const Shape& shape, DType dtype, std::optional<int> alias_output, Sharding sharding) {
  CheckShape("parameter", shape);
  ShardingAttr(name.empty() ? "parameter" : ("input " + name).c_str(), shape, sharding);  // checks that it fits
  if (!name.empty())
    for (const Param& p : params_)
      if (p.name == name) throw std::invalid_argument("parameter: duplicate input name " + name);
  params_.push_back({name, shape, dtype, alias_output, sharding});
  return Value{"%arg" + std::to_string(params_.size() - 1), shape, dtype};
}

std::vector<Builder::ParamInfo> Builder::params() const {
  std::vector<ParamInfo> out;
  for (const Param& p : params_) out.push_back({p.name, p.shape, p.dtype, p.sharding});
  return out;
}

Value Builder::Scalar(double v, DType dtype) { return Splat(v, {}, dtype); }

Value Builder::Splat(double v, const Shape& shape, DType dtype) {
  CheckShape("constant", shape);
  return Emit("constant", {}, shape, dtype, "value = dense<" + ElementLiteral(v, dtype) + "> : " + TensorType(shape, dtype));
}

namespace {
// Nested [[...], [...]] literal for a dense constant of any rank (MLIR rejects a flat list for
// a multi-dimensional type).
template <typename T, typename F>
void Nested(const std::vector<T>& v, const Shape& shape, size_t dim, int64_t& pos, std::string& out, F fmt) {
  if (dim == shape.size()) {
    out += fmt(v[pos++]);
    return;
  }
  out += "[";
  for (int64_t i = 0; i < shape[dim]; ++i) {
    if (i) out += ", ";
    Nested(v, shape, dim + 1, pos, out, fmt);
  }
  out += "]";
}
}  // namespace

Value Builder::ConstF32(const std::vector<float>& values, const Shape& shape) {
  CheckShape("constant", shape);
  Value probe{"", shape, DType::kF32};
  if (static_cast<int64_t>(values.size()) != probe.elements())
    throw std::invalid_argument("constant: " + std::to_string(values.size()) + " values for shape " + ShapeString(shape));
  std::string lit;
  int64_t pos = 0;
  Nested(values, shape, 0, pos, lit, [](float f) { return FloatLiteral(f, DType::kF32); });
  return Emit("constant", {}, shape, DType::kF32, "value = dense<" + lit + "> : " + TensorType(shape, DType::kF32));
}

Value Builder::ConstS32(const std::vector<int32_t>& values, const Shape& shape) {
  CheckShape("constant", shape);
  Value probe{"", shape, DType::kS32};
  if (static_cast<int64_t>(values.size()) != probe.elements())
    throw std::invalid_argument("constant: " + std::to_string(values.size()) + " values for shape " + ShapeString(shape));
  std::string lit;
  int64_t pos = 0;
  Nested(values, shape, 0, pos, lit, [](int32_t i) { return std::to_string(i); });
  return Emit("constant", {}, shape, DType::kS32, "value = dense<" + lit + "> : " + TensorType(shape, DType::kS32));
}

Value Builder::Iota(const Shape& shape, DType dtype, int64_t dim) {
  CheckShape("iota", shape);
  const int64_t d = NormAxis("iota", dim, static_cast<int64_t>(shape.size()));
  return Emit("iota", {}, shape, dtype, "iota_dimension = " + std::to_string(d) + " : i64");
}

// ---- elementwise ---------------------------------------------------------------------------

Shape Builder::BroadcastShapes(const char* op, const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(op) + ": shapes " + ShapeString(a) + " and " + ShapeString(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Value Builder::Binary(const char* op, const Value& a, const Value& b) {
  if (a.dtype != b.dtype)
    throw std::invalid_argument(std::string(op) + ": dtype mismatch " + DTypeName(a.dtype) + " vs " + DTypeName(b.dtype));
  const Shape s = BroadcastShapes(op, a.shape, b.shape);
  const Value x = a.shape == s ? a : BroadcastTo(a, s);
  const Value y = b.shape == s ? b : BroadcastTo(b, s);
  return Emit(op, {x, y}, s, a.dtype);
}

Value Builder::Unary(const char* op, const Value& a, bool float_only) {
  if (float_only && !IsFloat(a.dtype)) throw std::invalid_argument(std::string(op) + ": needs a float operand, got " + DTypeName(a.dtype));
  return Emit(op, {a}, a.shape, a.dtype);
}

Value Builder::Add(const Value& a, const Value& b) { return Binary("add", a, b); }
Value Builder::Sub(const Value& a, const Value& b) { return Binary("subtract", a, b); }
Value Builder::Mul(const Value& a, const Value& b) { return Binary("multiply", a, b); }
Value Builder::Div(const Value& a, const Value& b) { return Binary("divide", a, b); }
Value Builder::Rem(const Value& a, const Value& b) { return Binary("remainder", a, b); }
Value Builder::Max(const Value& a, const Value& b) { return Binary("maximum", a, b); }
Value Builder::Min(const Value& a, const Value& b) { return Binary("minimum", a, b); }

Value Builder::And(const Value& a, const Value& b) {
  if (IsFloat(a.dtype)) throw std::invalid_argument("and: needs pred or integer operands");
  return Binary("and", a, b);
}
Value Builder::Or(const Value& a, const Value& b) {
  if (IsFloat(a.dtype)) throw std::invalid_argument("or: needs pred or integer operands");
  return Binary("or", a, b);
}
Value Builder::ShiftRightLogical(const Value& a, const Value& bits) {
  if (IsFloat(a.dtype) || a.dtype == DType::kPred) throw std::invalid_argument("shift_right_logical: needs integer operands");
  return Binary("shift_right_logical", a, bits);
}
Value Builder::Not(const Value& a) {
  if (IsFloat(a.dtype)) throw std::invalid_argument("not: needs a pred or integer operand");
  return Emit("not", {a}, a.shape, a.dtype);
}

Value Builder::Neg(const Value& a) {
  if (a.dtype == DType::kPred || IsUnsigned(a.dtype)) throw std::invalid_argument("negate: needs a signed operand");
  return Unary("negate", a, false);
}
Value Builder::Abs(const Value& a) {
  if (a.dtype == DType::kPred || IsUnsigned(a.dtype)) throw std::invalid_argument("abs: needs a signed operand");
  return Unary("abs", a, false);
}
Value Builder::Exp(const Value& a) { return Unary("exponential", a, true); }
Value Builder::Log(const Value& a) { return Unary("log", a, true); }
Value Builder::Log1p(const Value& a) { return Unary("log_plus_one", a, true); }
Value Builder::Rsqrt(const Value& a) { return Unary("rsqrt", a, true); }
Value Builder::Sqrt(const Value& a) { return Unary("sqrt", a, true); }
Value Builder::Tanh(const Value& a) { return Unary("tanh", a, true); }
Value Builder::Logistic(const Value& a) { return Unary("logistic", a, true); }
Value Builder::Cos(const Value& a) { return Unary("cosine", a, true); }
Value Builder::Sin(const Value& a) { return Unary("sine", a, true); }

Value Builder::Compare(const Value& a, const Value& b, Cmp dir) {
  if (a.dtype != b.dtype)
    throw std::invalid_argument(std::string("compare: dtype mismatch ") + DTypeName(a.dtype) + " vs " + DTypeName(b.dtype));
  const Shape s = BroadcastShapes("compare", a.shape, b.shape);
  const Value x = a.shape == s ? a : BroadcastTo(a, s);
  const Value y = b.shape == s ? b : BroadcastTo(b, s);
  static const char* kDir[] = {"EQ", "NE", "LT", "LE", "GT", "GE"};
  const char* type = IsFloat(a.dtype) ? "FLOAT" : (IsSigned(a.dtype) ? "SIGNED" : "UNSIGNED");
  const std::string attrs = std::string("comparison_direction = #stablehlo<comparison_direction ") +
                            kDir[static_cast<int>(dir)] + ">, compare_type = #stablehlo<comparison_type " + type + ">";
  return Emit("compare", {x, y}, s, DType::kPred, attrs);
}

Value Builder::Select(const Value& pred, const Value& on_true, const Value& on_false) {
  if (pred.dtype != DType::kPred) throw std::invalid_argument("select: predicate must be pred");
  if (on_true.dtype != on_false.dtype)
    throw std::invalid_argument(std::string("select: dtype mismatch ") + DTypeName(on_true.dtype) + " vs " + DTypeName(on_false.dtype));
  const Shape s = BroadcastShapes("select", BroadcastShapes("select", pred.shape, on_true.shape), on_false.shape);
  const Value p = pred.shape == s ? pred : BroadcastTo(pred, s);
  const Value t = on_true.shape == s ? on_true : BroadcastTo(on_true, s);
  const Value f = on_false.shape == s ? on_false : BroadcastTo(on_false, s);
  return Emit("select", {p, t, f}, s, on_true.dtype);
}

Value Builder::Clamp(const Value& lo, const Value& x, const Value& hi) {
  if (lo.dtype != x.dtype || hi.dtype != x.dtype) throw std::invalid_argument("clamp: dtype mismatch");
  for (const Value* b : {&lo, &hi})
    if (!b->shape.empty() && b->shape != x.shape)
      throw std::invalid_argument("clamp: bound shape " + ShapeString(b->shape) + " is neither scalar nor " + ShapeString(x.shape));
  return Emit("clamp", {lo, x, hi}, x.shape, x.dtype);
}

Value Builder::Convert(const Value& x, DType dtype) {
  if (x.dtype == dtype) return x;
  return Emit("convert", {x}, x.shape, dtype);
}

// ---- finish --------------------------------------------------------------------------------

std::string Builder::Finish(const std::vector<Value>& results, const std::vector<Sharding>& shardings) {
  if (results.empty()) throw std::invalid_argument("finish: no results");
  if (!shardings.empty() && shardings.size() != results.size())
    throw std::invalid_argument("finish: " + std::to_string(shardings.size()) + " shardings for " + std::to_string(results.size()) + " results");
  auto result_sharding = [&](size_t i) { return shardings.empty() ? Sharding{} : shardings[i]; };
  const bool spmd = partitions_ > 1;
  std::ostringstream os;
  os << "module @dflash attributes {mhlo.num_partitions = " << partitions_ << " : i32, mhlo.num_replicas = 1 : i32} {\n";
  if (spmd) os << "  sdy.mesh @mesh = <[\"tp\"=" << partitions_ << "]>\n";
  os << "  func.func public @main(";
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    os << (i ? ", " : "") << "%arg" << i << ": " << TensorType(p.shape, p.dtype);
    std::string attrs;
    if (spmd) attrs = "sdy.sharding = " + ShardingAttr("parameter", p.shape, p.sharding);
    if (p.alias) {
      if (*p.alias < 0 || *p.alias >= static_cast<int>(results.size()))
        throw std::invalid_argument("finish: parameter " + std::to_string(i) + " aliases missing result " + std::to_string(*p.alias));
      const Value& r = results[*p.alias];
      if (r.shape != p.shape || r.dtype != p.dtype)
        throw std::invalid_argument("finish: parameter " + std::to_string(i) + " " + TensorType(p.shape, p.dtype) +
                                    " aliases result " + std::to_string(*p.alias) + " of type " + TensorType(r));
      if (spmd && !(result_sharding(*p.alias) == p.sharding))
        throw std::invalid_argument("finish: parameter " + std::to_string(i) + " aliases result " + std::to_string(*p.alias) +
                                    " of another sharding");
      attrs += std::string(attrs.empty() ? "" : ", ") + "tf.aliasing_output = " + std::to_string(*p.alias) + " : i32";
    }
    if (!attrs.empty()) os << " {" << attrs << "}";
  }
  os << ") -> (";
  std::string types, names, signature;
  for (size_t i = 0; i < results.size(); ++i) {
    types += (i ? ", " : "") + TensorType(results[i]);
    signature += (i ? ", " : "") + TensorType(results[i]);
    if (spmd) signature += " {sdy.sharding = " + ShardingAttr("result", results[i].shape, result_sharding(i)) + "}";
    names += (i ? ", " : "") + results[i].name;
  }
  os << signature << ") {\n" << body_ << "    func.return " << names << " : " << types << "\n  }\n}\n";
  return os.str();
}

}  // namespace dflash::hlo
