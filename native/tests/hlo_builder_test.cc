// Build-time behaviour of hlo::Builder: shape inference, the errors it throws (naming the op),
// and the shape of the module text. Running builder-made programs on the CPU plugin is covered
// by hlo_runtime_test.cc.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "hlo/builder.h"

namespace dflash::hlo {
namespace {

// Expects fn to throw std::invalid_argument whose message contains `op`.
template <typename F>
void ExpectOpError(F fn, const std::string& op) {
  try {
    fn();
    ADD_FAILURE() << "expected std::invalid_argument naming " << op;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << "message: " << e.what();
  }
}

TEST(HloBuilder, TypeStrings) {
  EXPECT_EQ(TensorType({2, 3}, DType::kF32), "tensor<2x3xf32>");
  EXPECT_EQ(TensorType({}, DType::kS32), "tensor<i32>");
  EXPECT_EQ(TensorType({4}, DType::kPred), "tensor<4xi1>");
  EXPECT_EQ(TensorType({1}, DType::kU8), "tensor<1xui8>");
  EXPECT_STREQ(MlirName(DType::kBF16), "bf16");
  EXPECT_STREQ(MlirName(DType::kS64), "i64");
  EXPECT_STREQ(MlirName(DType::kU32), "ui32");
}

TEST(HloBuilder, ShapeInference) {
  Builder b;
  const Value x = b.Parameter({2, 3, 4}, DType::kF32);
  const Value w = b.Parameter({5, 4}, DType::kF32);
  EXPECT_EQ(b.Linear(x, w).shape, (Shape{2, 3, 5}));
  const Value y = b.Parameter({2, 4, 6}, DType::kF32);
  EXPECT_EQ(b.DotGeneral(x, y, DotDims{{0}, {0}, {2}, {1}}).shape, (Shape{2, 3, 6}));
  EXPECT_EQ(b.Reduce(x, {1}, ReduceKind::kSum).shape, (Shape{2, 4}));
  EXPECT_EQ(b.Reduce(x, {-1, 0}, ReduceKind::kMax).shape, (Shape{3}));
  const Value am = b.Argmax(x, 1);
  EXPECT_EQ(am.shape, (Shape{2, 4}));
  EXPECT_EQ(am.dtype, DType::kS32);
  EXPECT_EQ(b.Add(x, b.Parameter({3, 1}, DType::kF32)).shape, (Shape{2, 3, 4}));  // numpy broadcast
  EXPECT_EQ(b.Reshape(x, {-1, 4}).shape, (Shape{6, 4}));
  EXPECT_EQ(b.Transpose(x, {2, 0, 1}).shape, (Shape{4, 2, 3}));
  EXPECT_EQ(b.Slice(x, {0, 1, 0}, {2, 3, 4}, {1, 1, 2}).shape, (Shape{2, 2, 2}));
  EXPECT_EQ(b.Concatenate({x, x}, -1).shape, (Shape{2, 3, 8}));
  const Value ids = b.Parameter({7, 2}, DType::kS32);
  EXPECT_EQ(b.Take(w, ids).shape, (Shape{7, 2, 4}));
  const Value c = b.Compare(x, b.Scalar(0, DType::kF32), Cmp::kGT);
  EXPECT_EQ(c.dtype, DType::kPred);
  EXPECT_EQ(b.Select(c, x, b.Scalar(1, DType::kF32)).shape, x.shape);
  const Value i0 = b.Scalar(0, DType::kS32);
  EXPECT_EQ(b.DynamicSlice(x, {i0, i0, i0}, {1, 2, 3}).shape, (Shape{1, 2, 3}));
  EXPECT_EQ(b.Convert(x, DType::kBF16).dtype, DType::kBF16);
}

TEST(HloBuilder, ShapeErrorsNameTheOp) {
  Builder b;
  const Value x = b.Parameter({2, 3}, DType::kF32);
  const Value y = b.Parameter({4, 5}, DType::kF32);
  const Value s = b.Parameter({2, 3}, DType::kS32);
  const Value i0 = b.Scalar(0, DType::kS32);
  ExpectOpError([&] { b.DotGeneral(x, y, DotDims{{}, {}, {1}, {0}}); }, "dot_general");
  ExpectOpError([&] { b.Linear(x, y); }, "linear");
  ExpectOpError([&] { b.Add(x, y); }, "add");
  ExpectOpError([&] { b.Add(x, s); }, "add");  // dtype mismatch
  ExpectOpError([&] { b.Reshape(x, {4, 2}); }, "reshape");
  ExpectOpError([&] { b.Transpose(x, {0, 0}); }, "transpose");
  ExpectOpError([&] { b.Slice(x, {0, 0}, {3, 3}); }, "slice");
  ExpectOpError([&] { b.Concatenate({x, y}, 0); }, "concatenate");
  ExpectOpError([&] { b.BroadcastInDim(x, {2, 4}, {0, 1}); }, "broadcast_in_dim");
  ExpectOpError([&] { b.Reduce(x, {2}, ReduceKind::kSum); }, "reduce");
  ExpectOpError([&] { b.Argmax(x, 5); }, "argmax");
  ExpectOpError([&] { b.Select(x, x, x); }, "select");
  ExpectOpError([&] { b.Compare(x, s, Cmp::kEQ); }, "compare");
  ExpectOpError([&] { b.Clamp(b.Parameter({3}, DType::kF32), x, x); }, "clamp");
  ExpectOpError([&] { b.Exp(s); }, "exponential");
  ExpectOpError([&] { b.DynamicSlice(x, {i0}, {1, 1}); }, "dynamic_slice");
  ExpectOpError([&] { b.DynamicSlice(x, {i0, i0}, {3, 1}); }, "dynamic_slice");
  ExpectOpError([&] { b.DynamicUpdateSlice(x, y, {i0, i0}); }, "dynamic_update_slice");
  ExpectOpError([&] { b.Gather(x, s, GatherDims{{1}, {0}, {0}, 2}, {1, 4}); }, "gather");
  ExpectOpError([&] { b.Gather(x, s, GatherDims{{}, {0}, {0}, 2}, {1, 3}); }, "gather");
  ExpectOpError([&] { b.Scatter(x, b.Parameter({2, 1}, DType::kS32), b.Parameter({2, 4}, DType::kF32), ScatterDims{{1}, {0}, {0}, 1}); },
                "scatter");
  ExpectOpError([&] { b.Iota({2, 3}, DType::kS32, 2); }, "iota");
  ExpectOpError([&] { b.Parameter({-1}, DType::kF32); }, "parameter");
}

TEST(HloBuilder, FinishWritesModuleAndAliases) {
  Builder b;
  const Value cache = b.Parameter({4, 2}, DType::kF32, 0);
  const Value upd = b.Parameter({1, 2}, DType::kF32);
  const Value pos = b.Parameter({}, DType::kS32);
  const Value out = b.DynamicUpdateSlice(cache, upd, {pos, b.Scalar(0, DType::kS32)});
  const std::string text = b.Finish({out, b.Reduce(out, {0, 1}, ReduceKind::kSum)});
  EXPECT_EQ(b.num_params(), 3);
  EXPECT_EQ(text.rfind("module @dflash attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32}", 0), 0u);
  EXPECT_NE(text.find("func.func public @main(%arg0: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}"), std::string::npos);
  EXPECT_NE(text.find("-> (tensor<4x2xf32>, tensor<f32>)"), std::string::npos);
  EXPECT_NE(text.find("\"stablehlo.dynamic_update_slice\""), std::string::npos);
  EXPECT_NE(text.find("func.return"), std::string::npos);
}

TEST(HloBuilder, FinishRejectsBadAlias) {
  Builder b;
  const Value x = b.Parameter({4, 2}, DType::kF32, 0);
  ExpectOpError([&] { b.Finish({b.Reshape(x, {8})}); }, "finish");
  Builder b2;
  const Value y = b2.Parameter({4}, DType::kF32, 3);
  ExpectOpError([&] { b2.Finish({y}); }, "finish");
}

TEST(HloBuilder, ConstantsAreNestedAndExact) {
  Builder b;
  const Value c = b.ConstF32({0.1f, 2.0f, -3.5f, 4.0f}, {2, 2});
  const Value inf = b.Scalar(-1.0 / 0.0, DType::kF32);
  const std::string text = b.Finish({c, inf});
  EXPECT_NE(text.find("dense<[[1.000000015e-01, 2.000000000e+00], [-3.500000000e+00, 4.000000000e+00]]> : tensor<2x2xf32>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dense<0xFF800000> : tensor<f32>"), std::string::npos);
  Builder b3;
  ExpectOpError([&] { b3.ConstF32({1, 2, 3}, {2, 2}); }, "constant");
}

}  // namespace
}  // namespace dflash::hlo
