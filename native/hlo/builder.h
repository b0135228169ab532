// A typed builder for StableHLO text: one `func.func public @main` inside `module @dflash`.
// Every op infers its result shape and checks its operands at build time, throwing
// std::invalid_argument that names the op, so a malformed graph fails in C++ with a useful
// message instead of deep inside the plugin's MLIR parser. Ops are emitted in the generic
// form ("stablehlo.op"(%a) {attrs} : (types) -> types), which is the syntax that stays
// stable across StableHLO versions.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "hlo/dtype.h"

namespace dflash::hlo {

using Shape = std::vector<int64_t>;

// One SSA value: its name in the text ("%v3", "%arg0", "%v7#1"), shape and element type.
struct Value {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t i) const;  // negative i counts from the end; throws when out of range
  int64_t elements() const;
};

enum class Cmp { kEQ, kNE, kLT, kLE, kGT, kGE };
enum class ReduceKind { kSum, kMax, kMin };

struct DotDims {
  std::vector<int64_t> lhs_batch, rhs_batch, lhs_contract, rhs_contract;
};

// How a value lies over the program's devices (one mesh axis, "tp": a tensor-parallel group):
// replicated (dim -1: every device holds all of it) or split along `dim` into equal parts, part
// i on device i. Inputs and results carry it as dtypes do (models/program.h); XLA's SPMD
// partitioner (Shardy) propagates it through the graph and inserts the collectives.
struct Sharding {
  int dim = -1;
  static Sharding Replicated() { return {}; }
  static Sharding Split(int d) { return {d}; }
  bool replicated() const { return dim < 0; }
  bool operator==(const Sharding& o) const { return dim == o.dim; }
};

// StableHLO gather dimension numbers (no operand batching dims).
struct GatherDims {
  std::vector<int64_t> offset_dims, collapsed_slice_dims, start_index_map;
  int64_t index_vector_dim = 0;
};

// StableHLO scatter dimension numbers (no operand batching dims).
struct ScatterDims {
  std::vector<int64_t> update_window_dims, inserted_window_dims, scatter_dims_to_operand_dims;
  int64_t index_vector_dim = 0;
};

// "tensor<2x3xf32>" / "tensor<f32>".
std::string TensorType(const Shape& shape, DType dtype);
inline std::string TensorType(const Value& v) { return TensorType(v.shape, v.dtype); }
std::string ShapeString(const Shape& shape);  // "[2, 3]", for error messages

class Builder {
 public:
  // A program for `partitions` devices (an SPMD program with a one-axis mesh "tp" when > 1;
  // with 1 the text carries no sharding at all).
  explicit Builder(int64_t partitions = 1);
  int64_t partitions() const { return partitions_; }

  // ---- arguments and constants ------------------------------------------------------------
  // Appends an argument of @main. alias_output = N marks it donated into result N
  // (`tf.aliasing_output = N : i32`); the result must have the same type.
  Value Parameter(const Shape& shape, DType dtype, std::optional<int> alias_output = std::nullopt);
  // The same, with a name the program's callers bind buffers by (models/program.h), and how it
  // lies over the devices (a split dimension must divide by partitions()).
  Value Input(const std::string& name, const Shape& shape, DType dtype, std::optional<int> alias_output = std::nullopt,
              Sharding sharding = {});
  int num_params() const { return static_cast<int>(params_.size()); }
  struct ParamInfo {
    std::string name;  // "" for unnamed Parameter()s
    Shape shape;
    DType dtype;
    Sharding sharding;
  };
  std::vector<ParamInfo> params() const;

  Value Scalar(double v, DType dtype);                        // rank-0 constant
  Value Splat(double v, const Shape& shape, DType dtype);     // constant filled with v
  Value ConstF32(const std::vector<float>& values, const Shape& shape);
  Value ConstS32(const std::vector<int32_t>& values, const Shape& shape);
  Value Iota(const Shape& shape, DType dtype, int64_t dim);

  // ---- elementwise ------------------------------------------------------------------------
  // Binary ops broadcast numpy-style (ranks aligned on the right, size-1 dims stretch); both
  // operands must have the same dtype.
  Value Add(const Value& a, const Value& b);
  Value Sub(const Value& a, const Value& b);
  Value Mul(const Value& a, const Value& b);
  Value Div(const Value& a, const Value& b);
  Value Rem(const Value& a, const Value& b);
  Value Max(const Value& a, const Value& b);
  Value Min(const Value& a, const Value& b);
  Value And(const Value& a, const Value& b);  // pred or integer
  Value Or(const Value& a, const Value& b);
  Value Not(const Value& a);
  Value ShiftRightLogical(const Value& a, const Value& bits);  // integers
  Value Neg(const Value& a);
  Value Abs(const Value& a);
  Value Exp(const Value& a);
  Value Log(const Value& a);
  Value Log1p(const Value& a);  // log(1 + a), accurate near 0 (softplus)
  Value Rsqrt(const Value& a);
  Value Sqrt(const Value& a);
  Value Tanh(const Value& a);
  Value Logistic(const Value& a);
  Value Cos(const Value& a);
  Value Sin(const Value& a);
  // compare_type follows the dtype: FLOAT, SIGNED or UNSIGNED. Result is pred.
  Value Compare(const Value& a, const Value& b, Cmp dir);
  // pred broadcasts against on_true/on_false (numpy-style).
  Value Select(const Value& pred, const Value& on_true, const Value& on_false);
  // lo/hi are scalars or the shape of x.
  Value Clamp(const Value& lo, const Value& x, const Value& hi);
  Value Convert(const Value& x, DType dtype);  // no-op (returns x) when the dtype already matches
  // The same bits as another type of the same width (f32 <-> s32): to pack floats into an integer
  // output (one host transfer for several results).
  Value BitcastConvert(const Value& x, DType dtype);

  // ---- shape ops --------------------------------------------------------------------------
  // dims[i] = result dim of operand dim i; operand dims must be 1 or equal to the result's.
  Value BroadcastInDim(const Value& x, const Shape& shape, const std::vector<int64_t>& dims);
  // numpy-style broadcast of x to shape (ranks aligned on the right).
  Value BroadcastTo(const Value& x, const Shape& shape);
  Value Reshape(const Value& x, const Shape& shape);  // one dim may be -1
  Value Transpose(const Value& x, const std::vector<int64_t>& perm);
  Value Slice(const Value& x, const std::vector<int64_t>& start, const std::vector<int64_t>& limit,
              std::vector<int64_t> strides = {});
  // Slice [start, start + size) along one axis.
  Value SliceAxis(const Value& x, int64_t axis, int64_t start, int64_t size);
  // starts: one rank-0 integer Value per dim (XLA clamps them so the slice stays in bounds).
  Value DynamicSlice(const Value& x, const std::vector<Value>& starts, const Shape& sizes);
  Value DynamicUpdateSlice(const Value& x, const Value& update, const std::vector<Value>& starts);
  Value Concatenate(const std::vector<Value>& xs, int64_t dim);

  // ---- contractions, reductions, indexing -------------------------------------------------
  // Result dims: batch, lhs free (in order), rhs free (in order). result_dtype defaults to
  // f32 for float operands (accumulate in f32), else the operand dtype.
  // exact_f32: precision HIGHEST on both operands, so that TPUs and GPUs keep f32 operands in f32
  // (their default is one bf16 / TF32 pass): for recurrent state math, not for weights.
  Value DotGeneral(const Value& lhs, const Value& rhs, const DotDims& dims,
                   std::optional<DType> result_dtype = std::nullopt, bool exact_f32 = false);
  // Solves a x = b for x, a (..., M, M) lower triangular with a unit diagonal (its diagonal and
  // upper part are not read), b (..., M, N), the same float dtype and batch dims:
  // stablehlo.triangular_solve (forward substitution; XLA's expander on CPU, cuBLAS / the TPU
  // kernel elsewhere).
  Value SolveUnitLower(const Value& a, const Value& b);
  // x[..., in] @ w[out, in]^T -> [..., out]  (torch.nn.Linear without bias)
  Value Linear(const Value& x, const Value& w);
  Value Reduce(const Value& x, const std::vector<int64_t>& dims, ReduceKind kind);
  // Index (s32) of the largest value along dim; ties and all-equal rows give the smallest
  // index, NaN counts as the largest (numpy/torch argmax). Result drops dim.
  Value Argmax(const Value& x, int64_t dim);
  // The k largest values along the last dim, largest first, and their s32 indices (ties: the
  // smaller index first): XLA's TopK (chlo.top_k).
  std::pair<Value, Value> TopK(const Value& x, int64_t k);
  Value Gather(const Value& operand, const Value& indices, const GatherDims& dims,
               const Shape& slice_sizes);
  // rows of table[V, ...] picked by integer ids of any shape -> ids.shape + table.shape[1:]
  Value Take(const Value& table, const Value& ids);
  // Replaces operand slices with updates (last write wins for duplicate indices, unspecified
  // which one).
  Value Scatter(const Value& operand, const Value& indices, const Value& updates,
                const ScatterDims& dims);

  // ---- control flow -----------------------------------------------------------------------
  // stablehlo.while over the loop-carried values `init`: `cond` maps them to a pred scalar,
  // `body` to their next values (the same shapes and dtypes); returns the values after the last
  // iteration. Both regions may read values defined before the loop (implicit capture: XLA
  // passes them in without copying), which keeps read-only tensors such as caches out of the
  // carried state.
  std::vector<Value> While(const std::vector<Value>& init, const std::function<Value(const std::vector<Value>&)>& cond,
                           const std::function<std::vector<Value>(const std::vector<Value>&)>& body);

  // stablehlo.if: the values `then_fn` builds when `pred` (a pred scalar) holds, else those of
  // `else_fn` (the same shapes and dtypes). Work a batch does not need (sampling math in an
  // all-greedy batch) is skipped at run time instead of compiled into a program of its own.
  std::vector<Value> If(const Value& pred, const std::function<std::vector<Value>()>& then_fn,
                        const std::function<std::vector<Value>()>& else_fn);

  // ---- sharding ----------------------------------------------------------------------------
  // x, required to lie as `s` over the devices from here on (`sdy.sharding_constraint`): where
  // the partitioner's propagation alone would choose another layout. x itself with one device.
  Value Constrain(const Value& x, Sharding s);

  // ---- output ------------------------------------------------------------------------------
  // Returns the complete module text. Results aliased by a Parameter must match its type (and
  // sharding). `shardings`: one per result (default: all replicated).
  std::string Finish(const std::vector<Value>& results, const std::vector<Sharding>& shardings = {});

 private:
  struct Param {
    std::string name;
    Shape shape;
    DType dtype;
    std::optional<int> alias;
    Sharding sharding;
  };
  // `#sdy.sharding<@mesh, [{}, {"tp"}]>` for a value of `rank`; throws when `s` does not fit shape.
  std::string ShardingAttr(const char* op, const Shape& shape, Sharding s) const;
  std::string NewName();
  // Emits `%vN = "stablehlo.<op>"(operands) <region> <attrs> : (operand types) -> result`
  // and returns the result value.
  Value Emit(const std::string& op, const std::vector<Value>& operands, const Shape& shape,
             DType dtype, const std::string& attrs = "", const std::string& region = "");
  // Same for ops with several results (`%vN:2 = ...`, values named %vN#0, %vN#1).
  std::vector<Value> EmitMulti(const std::string& op, const std::vector<Value>& operands,
                               const std::vector<std::pair<Shape, DType>>& results,
                               const std::string& attrs, const std::string& region);
  // Region text `{ ^bb0(args): body "stablehlo.return"(rets) }`. `body` builds the region's
  // ops with this builder's ordinary methods from the block arguments and returns the results.
  std::string Region(const std::vector<DType>& arg_types,
                     const std::function<std::vector<Value>(const std::vector<Value>&)>& body);
  // The same with block arguments of any shape (while loops carry tensors).
  std::string Region(const std::vector<std::pair<Shape, DType>>& arg_types,
                     const std::function<std::vector<Value>(const std::vector<Value>&)>& body);
  Value Unary(const char* op, const Value& a, bool float_only);
  Value Binary(const char* op, const Value& a, const Value& b);
  // Returns the common broadcast shape; throws naming op.
  Shape BroadcastShapes(const char* op, const Shape& a, const Shape& b);

  int64_t partitions_ = 1;
  std::vector<Param> params_;
  std::string body_;
  int64_t next_id_ = 0;
};

}  // namespace dflash::hlo
