// Shape ops of the StableHLO builder: broadcast_in_dim, reshape, transpose, slice,
// dynamic_slice, dynamic_update_slice, concatenate and bitcast_convert, each with build-time
// shape checks.
#include <algorithm>
#include <stdexcept>

#include "hlo/builder.h"
#include "hlo/text.h"

namespace dflash::hlo {

Value Builder::BitcastConvert(const Value& x, DType dtype) {
  const auto width = [](DType t) { return t == DType::kBF16 || t == DType::kF16 ? 2 : t == DType::kS64 ? 8 : t == DType::kU8 || t == DType::kPred ? 1 : 4; };
  if (width(x.dtype) != width(dtype))
    throw std::invalid_argument(std::string("bitcast_convert: ") + DTypeName(x.dtype) + " and " + DTypeName(dtype) + " differ in width");
  if (x.dtype == dtype) return x;
  return Emit("bitcast_convert", {x}, x.shape, dtype);
}

Value Builder::BroadcastInDim(const Value& x, const Shape& shape, const std::vector<int64_t>& dims) {
  CheckShape("broadcast_in_dim", shape);
  if (static_cast<int64_t>(dims.size()) != x.rank())
    throw std::invalid_argument("broadcast_in_dim: " + std::to_string(dims.size()) + " dims for operand of rank " + std::to_string(x.rank()));
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= static_cast<int64_t>(shape.size()) || (i && dims[i] <= dims[i - 1]))
      throw std::invalid_argument("broadcast_in_dim: dims [" + JoinInts(dims) + "] must increase within rank " + std::to_string(shape.size()));
    if (x.shape[i] != 1 && x.shape[i] != shape[dims[i]])
      throw std::invalid_argument("broadcast_in_dim: operand " + ShapeString(x.shape) + " does not fit " + ShapeString(shape) + " via dims [" + JoinInts(dims) + "]");
  }
  return Emit("broadcast_in_dim", {x}, shape, x.dtype, "broadcast_dimensions = " + I64Array(dims));
}

Value Builder::BroadcastTo(const Value& x, const Shape& shape) {
  if (x.shape == shape) return x;
  if (x.rank() > static_cast<int64_t>(shape.size()))
    throw std::invalid_argument("broadcast: cannot broadcast " + ShapeString(x.shape) + " to " + ShapeString(shape));
  std::vector<int64_t> dims(x.rank());
  const int64_t off = static_cast<int64_t>(shape.size()) - x.rank();
  for (int64_t i = 0; i < x.rank(); ++i) dims[i] = off + i;
  return BroadcastInDim(x, shape, dims);
}

Value Builder::Reshape(const Value& x, const Shape& shape) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("reshape: more than one -1 in " + ShapeString(shape));
      infer = static_cast<int64_t>(i);
    } else if (out[i] < 0) {
      throw std::invalid_argument("reshape: negative dimension in " + ShapeString(shape));
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.elements() % known != 0)
      throw std::invalid_argument("reshape: cannot infer -1 reshaping " + ShapeString(x.shape) + " to " + ShapeString(shape));
    out[infer] = x.elements() / known;
    known *= out[infer];
  }
  if (known != x.elements())
    throw std::invalid_argument("reshape: " + ShapeString(x.shape) + " and " + ShapeString(shape) + " differ in element count");
  if (out == x.shape) return x;
  return Emit("reshape", {x}, out, x.dtype);
}

Value Builder::Transpose(const Value& x, const std::vector<int64_t>& perm) {
  if (static_cast<int64_t>(perm.size()) != x.rank())
    throw std::invalid_argument("transpose: permutation [" + JoinInts(perm) + "] for rank " + std::to_string(x.rank()));
  std::vector<bool> seen(perm.size(), false);
  Shape out(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] < 0 || perm[i] >= x.rank() || seen[perm[i]])
      throw std::invalid_argument("transpose: [" + JoinInts(perm) + "] is not a permutation");
    seen[perm[i]] = true;
    out[i] = x.shape[perm[i]];
  }
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) identity = identity && perm[i] == static_cast<int64_t>(i);
  if (identity) return x;
  return Emit("transpose", {x}, out, x.dtype, "permutation = " + I64Array(perm));
}

Value Builder::Slice(const Value& x, const std::vector<int64_t>& start, const std::vector<int64_t>& limit,
                     std::vector<int64_t> strides) {
  if (strides.empty()) strides.assign(x.rank(), 1);
  if (static_cast<int64_t>(start.size()) != x.rank() || static_cast<int64_t>(limit.size()) != x.rank() ||
      static_cast<int64_t>(strides.size()) != x.rank())
    throw std::invalid_argument("slice: start/limit/strides must have rank " + std::to_string(x.rank()) + " entries");
  Shape out(x.rank());
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (start[i] < 0 || limit[i] > x.shape[i] || start[i] > limit[i] || strides[i] < 1)
      throw std::invalid_argument("slice: [" + JoinInts(start) + "] .. [" + JoinInts(limit) + "] out of bounds for " + ShapeString(x.shape));
    out[i] = (limit[i] - start[i] + strides[i] - 1) / strides[i];
  }
  if (out == x.shape) return x;
  return Emit("slice", {x}, out, x.dtype,
              "start_indices = " + I64Array(start) + ", limit_indices = " + I64Array(limit) + ", strides = " + I64Array(strides));
}

Value Builder::SliceAxis(const Value& x, int64_t axis, int64_t start, int64_t size) {
  const int64_t a = NormAxis("slice", axis, x.rank());
  std::vector<int64_t> lo(x.rank(), 0), hi = x.shape;
  lo[a] = start;
  hi[a] = start + size;
  return Slice(x, lo, hi);
}

namespace {
void CheckStarts(const char* op, const Value& x, const std::vector<Value>& starts) {
  if (static_cast<int64_t>(starts.size()) != x.rank())
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(starts.size()) + " start indices for rank " + std::to_string(x.rank()));
  for (const Value& s : starts) {
    if (s.rank() != 0 || !IsInteger(s.dtype))
      throw std::invalid_argument(std::string(op) + ": start indices must be integer scalars");
    if (s.dtype != starts[0].dtype) throw std::invalid_argument(std::string(op) + ": start indices must share one dtype");
  }
}
}  // namespace

Value Builder::DynamicSlice(const Value& x, const std::vector<Value>& starts, const Shape& sizes) {
  CheckStarts("dynamic_slice", x, starts);
  if (static_cast<int64_t>(sizes.size()) != x.rank())
    throw std::invalid_argument("dynamic_slice: slice sizes " + ShapeString(sizes) + " for rank " + std::to_string(x.rank()));
  for (int64_t i = 0; i < x.rank(); ++i)
    if (sizes[i] < 0 || sizes[i] > x.shape[i])
      throw std::invalid_argument("dynamic_slice: slice sizes " + ShapeString(sizes) + " exceed " + ShapeString(x.shape));
  std::vector<Value> ops{x};
  ops.insert(ops.end(), starts.begin(), starts.end());
  return Emit("dynamic_slice", ops, sizes, x.dtype, "slice_sizes = " + I64Array(sizes));
}

Value Builder::DynamicUpdateSlice(const Value& x, const Value& update, const std::vector<Value>& starts) {
  CheckStarts("dynamic_update_slice", x, starts);
  if (update.dtype != x.dtype) throw std::invalid_argument("dynamic_update_slice: update dtype differs from operand");
  if (update.rank() != x.rank()) throw std::invalid_argument("dynamic_update_slice: update rank differs from operand");
  for (int64_t i = 0; i < x.rank(); ++i)
    if (update.shape[i] > x.shape[i])
      throw std::invalid_argument("dynamic_update_slice: update " + ShapeString(update.shape) + " larger than " + ShapeString(x.shape));
  std::vector<Value> ops{x, update};
  ops.insert(ops.end(), starts.begin(), starts.end());
  return Emit("dynamic_update_slice", ops, x.shape, x.dtype);
}

Value Builder::Concatenate(const std::vector<Value>& xs, int64_t dim) {
  if (xs.empty()) throw std::invalid_argument("concatenate: no operands");
  if (xs.size() == 1) return xs[0];
  const int64_t d = NormAxis("concatenate", dim, xs[0].rank());
  Shape out = xs[0].shape;
  out[d] = 0;
  for (const Value& x : xs) {
    if (x.dtype != xs[0].dtype || x.rank() != xs[0].rank())
      throw std::invalid_argument("concatenate: operands differ in dtype or rank");
    for (int64_t i = 0; i < x.rank(); ++i)
      if (i != d && x.shape[i] != xs[0].shape[i])
        throw std::invalid_argument("concatenate: " + ShapeString(x.shape) + " vs " + ShapeString(xs[0].shape) + " along dim " + std::to_string(d));
    out[d] += x.shape[d];
  }
  return Emit("concatenate", xs, out, xs[0].dtype, "dimension = " + std::to_string(d) + " : i64");
}

}  // namespace dflash::hlo
