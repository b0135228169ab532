// Contractions, reductions and indexing ops of the StableHLO builder: dot_general, reduce,
// argmax (two-operand reduce), gather and scatter, with shape inference per the StableHLO spec.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "hlo/builder.h"
#include "hlo/text.h"

namespace dflash::hlo {
namespace {

bool Contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Checks dims are distinct and within [0, rank).
void CheckDims(const char* op, const char* what, const std::vector<int64_t>& dims, int64_t rank) {
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= rank)
      throw std::invalid_argument(std::string(op) + ": " + what + " [" + JoinInts(dims) + "] out of range for rank " + std::to_string(rank));
    for (size_t j = 0; j < i; ++j)
      if (dims[j] == dims[i]) throw std::invalid_argument(std::string(op) + ": " + what + " [" + JoinInts(dims) + "] repeats a dim");
  }
}

void CheckSorted(const char* op, const char* what, const std::vector<int64_t>& dims) {
  if (!std::is_sorted(dims.begin(), dims.end()))
    throw std::invalid_argument(std::string(op) + ": " + what + " [" + JoinInts(dims) + "] must be sorted");
}

std::string DimList(const char* key, const std::vector<int64_t>& v) {
  return std::string(key) + " = [" + JoinInts(v) + "]";
}

// Batch dims of gather/scatter indices: every dim but index_vector_dim.
Shape IndexBatchShape(const char* op, const Value& indices, int64_t ivd, int64_t* index_len) {
  if (!IsInteger(indices.dtype)) throw std::invalid_argument(std::string(op) + ": indices must be integers");
  if (ivd < 0 || ivd > indices.rank())
    throw std::invalid_argument(std::string(op) + ": index_vector_dim " + std::to_string(ivd) + " out of range");
  *index_len = ivd == indices.rank() ? 1 : indices.shape[ivd];
  Shape batch;
  for (int64_t i = 0; i < indices.rank(); ++i)
    if (i != ivd) batch.push_back(indices.shape[i]);
  return batch;
}

}  // namespace

Value Builder::DotGeneral(const Value& lhs, const Value& rhs, const DotDims& d, std::optional<DType> result_dtype, bool exact_f32) {
  const char* op = "dot_general";
  if (lhs.dtype != rhs.dtype)
    throw std::invalid_argument(std::string(op) + ": dtype mismatch " + DTypeName(lhs.dtype) + " vs " + DTypeName(rhs.dtype));
  CheckDims(op, "lhs dims", [&] { auto v = d.lhs_batch; v.insert(v.end(), d.lhs_contract.begin(), d.lhs_contract.end()); return v; }(), lhs.rank());
  CheckDims(op, "rhs dims", [&] { auto v = d.rhs_batch; v.insert(v.end(), d.rhs_contract.begin(), d.rhs_contract.end()); return v; }(), rhs.rank());
  if (d.lhs_batch.size() != d.rhs_batch.size() || d.lhs_contract.size() != d.rhs_contract.size())
    throw std::invalid_argument(std::string(op) + ": lhs and rhs list different numbers of batch or contracting dims");
  Shape out;
  for (size_t i = 0; i < d.lhs_batch.size(); ++i) {
    if (lhs.shape[d.lhs_batch[i]] != rhs.shape[d.rhs_batch[i]])
      throw std::invalid_argument(std::string(op) + ": batch dims differ, lhs " + ShapeString(lhs.shape) + " rhs " + ShapeString(rhs.shape));
    out.push_back(lhs.shape[d.lhs_batch[i]]);
  }
  for (size_t i = 0; i < d.lhs_contract.size(); ++i)
    if (lhs.shape[d.lhs_contract[i]] != rhs.shape[d.rhs_contract[i]])
      throw std::invalid_argument(std::string(op) + ": contracting dims differ, lhs " + ShapeString(lhs.shape) + " rhs " + ShapeString(rhs.shape));
  for (int64_t i = 0; i < lhs.rank(); ++i)
    if (!Contains(d.lhs_batch, i) && !Contains(d.lhs_contract, i)) out.push_back(lhs.shape[i]);
  for (int64_t i = 0; i < rhs.rank(); ++i)
    if (!Contains(d.rhs_batch, i) && !Contains(d.rhs_contract, i)) out.push_back(rhs.shape[i]);
  const DType rt = result_dtype ? *result_dtype : (IsFloat(lhs.dtype) ? DType::kF32 : lhs.dtype);
  std::string dn = "dot_dimension_numbers = #stablehlo.dot<";
  std::vector<std::string> parts;
  if (!d.lhs_batch.empty()) parts.push_back(DimList("lhs_batching_dimensions", d.lhs_batch));
  if (!d.rhs_batch.empty()) parts.push_back(DimList("rhs_batching_dimensions", d.rhs_batch));
  parts.push_back(DimList("lhs_contracting_dimensions", d.lhs_contract));
  parts.push_back(DimList("rhs_contracting_dimensions", d.rhs_contract));
  for (size_t i = 0; i < parts.size(); ++i) dn += (i ? ", " : "") + parts[i];
  dn += ">";
  if (exact_f32) dn += ", precision_config = [#stablehlo<precision HIGHEST>, #stablehlo<precision HIGHEST>]";
  return Emit(op, {lhs, rhs}, out, rt, dn);
}

Value Builder::SolveUnitLower(const Value& a, const Value& b) {
  const char* op = "triangular_solve";
  if (a.dtype != b.dtype || !IsFloat(a.dtype))
    throw std::invalid_argument(std::string(op) + ": a and b must share a float dtype, got " + DTypeName(a.dtype) + " and " + DTypeName(b.dtype));
  const int64_t r = a.rank();
  if (r < 2 || b.rank() != r || a.shape[r - 1] != a.shape[r - 2] || b.shape[r - 2] != a.shape[r - 1] ||
      !std::equal(a.shape.begin(), a.shape.end() - 2, b.shape.begin()))
    throw std::invalid_argument(std::string(op) + ": a " + ShapeString(a.shape) + " must be (..., M, M) and b " + ShapeString(b.shape) +
                                " (..., M, N) with the same batch dims");
  return Emit(op, {a, b}, b.shape, b.dtype,
              "left_side = true, lower = true, transpose_a = #stablehlo<transpose NO_TRANSPOSE>, unit_diagonal = true");
}

Value Builder::Linear(const Value& x, const Value& w) {
  // x: (..., in)  w: (out, in)  ->  (..., out)
  if (w.rank() != 2 || x.rank() < 1 || x.shape.back() != w.shape[1])
    throw std::invalid_argument("linear: input " + ShapeString(x.shape) + " does not match weight " + ShapeString(w.shape));
  return DotGeneral(x, w, DotDims{{}, {}, {x.rank() - 1}, {1}});
}

Value Builder::Reduce(const Value& x, const std::vector<int64_t>& dims_in, ReduceKind kind) {
  const char* op = "reduce";
  std::vector<int64_t> dims;
  for (int64_t d : dims_in) dims.push_back(NormAxis(op, d, x.rank()));
  std::sort(dims.begin(), dims.end());
  CheckDims(op, "dimensions", dims, x.rank());
  if (x.dtype == DType::kPred) throw std::invalid_argument("reduce: pred operands are not supported");
  Shape out;
  for (int64_t i = 0; i < x.rank(); ++i)
    if (!Contains(dims, i)) out.push_back(x.shape[i]);
  double init = 0;
  const double inf = std::numeric_limits<double>::infinity();
  if (kind == ReduceKind::kMax) {
    init = IsFloat(x.dtype) ? -inf : (IsUnsigned(x.dtype) ? 0.0 : (x.dtype == DType::kS32 ? -2147483648.0 : -9.2233720368547758e18));
  } else if (kind == ReduceKind::kMin) {
    init = IsFloat(x.dtype) ? inf : (x.dtype == DType::kS32 ? 2147483647.0 : x.dtype == DType::kU8 ? 255.0 : x.dtype == DType::kU32 ? 4294967295.0 : 9.2233720368547748e18);
  }
  const Value init_v = Scalar(init, x.dtype);
  const std::string region = Region({x.dtype, x.dtype}, [&](const std::vector<Value>& a) {
    if (kind == ReduceKind::kSum) return std::vector<Value>{Add(a[0], a[1])};
    if (kind == ReduceKind::kMax) return std::vector<Value>{Max(a[0], a[1])};
    return std::vector<Value>{Min(a[0], a[1])};
  });
  return Emit(op, {x, init_v}, out, x.dtype, "dimensions = " + I64Array(dims), region);
}

Value Builder::Argmax(const Value& x, int64_t dim) {
  const char* op = "argmax";
  const int64_t d = NormAxis(op, dim, x.rank());
  if (x.dtype == DType::kPred) throw std::invalid_argument("argmax: pred operands are not supported");
  Shape out;
  for (int64_t i = 0; i < x.rank(); ++i)
    if (i != d) out.push_back(x.shape[i]);
  const Value idx = Iota(x.shape, DType::kS32, d);
  const double lowest = IsFloat(x.dtype) ? -std::numeric_limits<double>::infinity()
                                         : (IsUnsigned(x.dtype) ? 0.0 : (x.dtype == DType::kS32 ? -2147483648.0 : -9.2233720368547758e18));
  const Value init_v = Scalar(lowest, x.dtype), init_i = Scalar(0, DType::kS32);
  // Block args: (acc value, acc index, next value, next index). Picking "a" when it is larger,
  // or equal with a smaller index, makes the combiner associative and commutative, so XLA's
  // reduction order cannot change the answer: the first maximum wins, as in numpy/torch.
  // NaN counts as larger than any number (numpy returns the first NaN).
  const std::string region = Region({x.dtype, DType::kS32, x.dtype, DType::kS32}, [&](const std::vector<Value>& a) {
    Value pick = Compare(a[0], a[2], Cmp::kGT);
    Value tie = Compare(a[0], a[2], Cmp::kEQ);
    if (IsFloat(x.dtype)) {
      const Value a_nan = Compare(a[0], a[0], Cmp::kNE), b_nan = Compare(a[2], a[2], Cmp::kNE);
      pick = Or(pick, And(a_nan, Not(b_nan)));
      tie = Or(tie, And(a_nan, b_nan));
    }
    pick = Or(pick, And(tie, Compare(a[1], a[3], Cmp::kLT)));
    return std::vector<Value>{Select(pick, a[0], a[2]), Select(pick, a[1], a[3])};
  });
  return EmitMulti("reduce", {x, idx, init_v, init_i}, {{out, x.dtype}, {out, DType::kS32}},
                   "dimensions = " + I64Array({d}), region)[1];
}

std::pair<Value, Value> Builder::TopK(const Value& x, int64_t k) {
  if (x.rank() < 1 || k < 1 || k > x.shape.back())
    throw std::invalid_argument("top_k: k = " + std::to_string(k) + " for " + ShapeString(x.shape));
  if (!IsFloat(x.dtype) && x.dtype != DType::kS32) throw std::invalid_argument("top_k: operand must be float or s32");
  Shape out = x.shape;
  out.back() = k;
  const auto r = EmitMulti("chlo.top_k", {x}, {{out, x.dtype}, {out, DType::kS32}}, "k = " + std::to_string(k) + " : i64", "");
  return {r[0], r[1]};
}

Value Builder::Gather(const Value& operand, const Value& indices, const GatherDims& g, const Shape& slice_sizes) {
  const char* op = "gather";
  int64_t index_len = 0;
  const Shape batch = IndexBatchShape(op, indices, g.index_vector_dim, &index_len);
  if (static_cast<int64_t>(slice_sizes.size()) != operand.rank())
    throw std::invalid_argument("gather: slice_sizes " + ShapeString(slice_sizes) + " for operand " + ShapeString(operand.shape));
  if (static_cast<int64_t>(g.start_index_map.size()) != index_len)
    throw std::invalid_argument("gather: start_index_map [" + JoinInts(g.start_index_map) + "] does not match index vector length " + std::to_string(index_len));
  CheckDims(op, "start_index_map", g.start_index_map, operand.rank());
  CheckDims(op, "collapsed_slice_dims", g.collapsed_slice_dims, operand.rank());
  CheckSorted(op, "collapsed_slice_dims", g.collapsed_slice_dims);
  CheckSorted(op, "offset_dims", g.offset_dims);
  Shape offsets;
  for (int64_t i = 0; i < operand.rank(); ++i) {
    if (slice_sizes[i] < 0 || slice_sizes[i] > operand.shape[i])
      throw std::invalid_argument("gather: slice_sizes " + ShapeString(slice_sizes) + " exceed operand " + ShapeString(operand.shape));
    if (Contains(g.collapsed_slice_dims, i)) {
      if (slice_sizes[i] > 1) throw std::invalid_argument("gather: collapsed dim " + std::to_string(i) + " must have slice size 1");
    } else {
      offsets.push_back(slice_sizes[i]);
    }
  }
  if (offsets.size() != g.offset_dims.size())
    throw std::invalid_argument("gather: offset_dims [" + JoinInts(g.offset_dims) + "] must list " + std::to_string(offsets.size()) + " dims");
  const int64_t rank = static_cast<int64_t>(batch.size() + offsets.size());
  CheckDims(op, "offset_dims", g.offset_dims, rank);
  Shape out(rank);
  size_t bi = 0, oi = 0;
  for (int64_t i = 0; i < rank; ++i) out[i] = Contains(g.offset_dims, i) ? offsets[oi++] : batch[bi++];
  std::vector<std::string> parts;
  if (!g.offset_dims.empty()) parts.push_back(DimList("offset_dims", g.offset_dims));
  if (!g.collapsed_slice_dims.empty()) parts.push_back(DimList("collapsed_slice_dims", g.collapsed_slice_dims));
  parts.push_back(DimList("start_index_map", g.start_index_map));
  parts.push_back("index_vector_dim = " + std::to_string(g.index_vector_dim));
  std::string dn = "dimension_numbers = #stablehlo.gather<";
  for (size_t i = 0; i < parts.size(); ++i) dn += (i ? ", " : "") + parts[i];
  return Emit(op, {operand, indices}, out, operand.dtype,
              dn + ">, indices_are_sorted = false, slice_sizes = " + I64Array(slice_sizes));
}

Value Builder::Take(const Value& table, const Value& ids) {
  // table: (V, rest...)  ids: (I...)  ->  (I..., rest...)
  if (table.rank() < 1) throw std::invalid_argument("take: table must have rank >= 1");
  GatherDims g;
  for (int64_t i = 1; i < table.rank(); ++i) g.offset_dims.push_back(ids.rank() + i - 1);
  g.collapsed_slice_dims = {0};
  g.start_index_map = {0};
  g.index_vector_dim = ids.rank();
  Shape sizes = table.shape;
  sizes[0] = 1;
  return Gather(table, ids, g, sizes);
}

Value Builder::Scatter(const Value& operand, const Value& indices, const Value& updates, const ScatterDims& s) {
  const char* op = "scatter";
  if (updates.dtype != operand.dtype) throw std::invalid_argument("scatter: updates dtype differs from operand");
  int64_t index_len = 0;
  const Shape batch = IndexBatchShape(op, indices, s.index_vector_dim, &index_len);
  if (static_cast<int64_t>(s.scatter_dims_to_operand_dims.size()) != index_len)
    throw std::invalid_argument("scatter: scatter_dims_to_operand_dims [" + JoinInts(s.scatter_dims_to_operand_dims) +
                                "] does not match index vector length " + std::to_string(index_len));
  CheckDims(op, "scatter_dims_to_operand_dims", s.scatter_dims_to_operand_dims, operand.rank());
  CheckDims(op, "inserted_window_dims", s.inserted_window_dims, operand.rank());
  CheckSorted(op, "inserted_window_dims", s.inserted_window_dims);
  CheckDims(op, "update_window_dims", s.update_window_dims, updates.rank());
  CheckSorted(op, "update_window_dims", s.update_window_dims);
  if (static_cast<int64_t>(s.update_window_dims.size() + s.inserted_window_dims.size()) != operand.rank())
    throw std::invalid_argument("scatter: update_window_dims + inserted_window_dims must cover operand rank " + std::to_string(operand.rank()));
  if (static_cast<int64_t>(batch.size() + s.update_window_dims.size()) != updates.rank())
    throw std::invalid_argument("scatter: updates " + ShapeString(updates.shape) + " have the wrong rank for indices " + ShapeString(indices.shape));
  // Window dims of updates line up with the operand dims that are not inserted.
  size_t wi = 0, bi = 0;
  int64_t od = 0;
  for (int64_t i = 0; i < updates.rank(); ++i) {
    if (Contains(s.update_window_dims, i)) {
      while (Contains(s.inserted_window_dims, od)) ++od;
      if (updates.shape[i] > operand.shape[od])
        throw std::invalid_argument("scatter: update window " + ShapeString(updates.shape) + " larger than operand " + ShapeString(operand.shape));
      ++od;
      ++wi;
    } else if (updates.shape[i] != batch[bi++]) {
      throw std::invalid_argument("scatter: updates " + ShapeString(updates.shape) + " do not match indices " + ShapeString(indices.shape));
    }
  }
  std::vector<std::string> parts;
  if (!s.update_window_dims.empty()) parts.push_back(DimList("update_window_dims", s.update_window_dims));
  if (!s.inserted_window_dims.empty()) parts.push_back(DimList("inserted_window_dims", s.inserted_window_dims));
  parts.push_back(DimList("scatter_dims_to_operand_dims", s.scatter_dims_to_operand_dims));
  parts.push_back("index_vector_dim = " + std::to_string(s.index_vector_dim));
  std::string dn = "scatter_dimension_numbers = #stablehlo.scatter<";
  for (size_t i = 0; i < parts.size(); ++i) dn += (i ? ", " : "") + parts[i];
  // The update computation returns the new value: replace, not accumulate.
  const std::string region = Region({operand.dtype, operand.dtype}, [](const std::vector<Value>& a) { return std::vector<Value>{a[1]}; });
  return Emit(op, {operand, indices, updates}, operand.shape, operand.dtype,
              dn + ">, indices_are_sorted = false, unique_indices = false", region);
}

}  // namespace dflash::hlo
