// DFlash2's building blocks (models/drafter2.h) on the CPU plugin against loops written here from
// the equations of docs/DRAFTERS.md §5: the grouped dynamic causal convolution (both sides, taps
// reaching past the block start, a kernel longer than the block, several batch rows) and the
// top-k (order, ties to the lower id); plus the weight-spec names and build-time errors.
#include <gtest/gtest.h>

#include <random>

#include "hlo/builder.h"
#include "hlo_test_runtime.h"
#include "models/drafter2.h"

namespace dflash::models {
namespace {

using hlo::DType;
using hlo::Value;
using testing::CompileAndRun;
using testing::Download;
using testing::Upload;

std::vector<float> Random(size_t n, float std, std::mt19937& gen) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& f : v) f = std * d(gen);
  return v;
}

struct ConvCase {
  int64_t rows, tokens, hidden, kernel, group;
};

class GroupedConvTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(GroupedConvTest, MatchesTheEquationOnBothSides) {
  DFLASH_REQUIRE_PLUGIN();
  const auto c = GetParam();
  const int64_t R = c.rows, T = c.tokens, H = c.hidden, K = c.kernel, G = H / c.group;
  std::mt19937 gen(static_cast<uint32_t>(R * 1000 + T * 100 + K * 10 + G));
  const auto x = Random(R * T * H, 1.0f, gen), base = Random(2 * K * H, 0.5f, gen), coeffs = Random(R * T * 2 * K * G, 0.5f, gen);
  for (int64_t side = 0; side < 2; ++side) {
    hlo::Builder b;
    const Value vx = b.Parameter({R, T, H}, DType::kF32), vb = b.Parameter({2, K, H}, DType::kF32),
                vc = b.Parameter({R, T, 2, K, G}, DType::kF32);
    const Numerics nm;  // f32
    const std::string mlir = b.Finish({GroupedCausalConv(b, vx, vb, vc, side, c.group, nm)});
    auto bx = Upload(x, {R, T, H}), bb = Upload(base, {2, K, H}), bc = Upload(coeffs, {R, T, 2, K, G});
    auto out = CompileAndRun(mlir, {bx.get(), bb.get(), bc.get()});
    const auto y = Download<float>(*out[0]);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t ch = 0; ch < H; ++ch) {
          double want = 0;
          for (int64_t tap = 0; tap < K && tap <= t; ++tap)  // nothing before the block's first row
            want += (double(base[(side * K + tap) * H + ch]) + coeffs[(((r * T + t) * 2 + side) * K + tap) * G + ch / c.group]) *
                    x[(r * T + t - tap) * H + ch];
          ASSERT_NEAR(y[(r * T + t) * H + ch], want, 1e-4 * (1 + std::abs(want))) << "side " << side << " row " << r << " t " << t << " ch " << ch;
        }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GroupedConvTest,
                         ::testing::Values(ConvCase{1, 8, 32, 2, 16},   // the published shape: 2 taps, groups of 16
                                           ConvCase{3, 5, 24, 3, 8},    // batch rows, 3 taps, 3 groups
                                           ConvCase{2, 2, 16, 4, 4},    // taps beyond the block
                                           ConvCase{1, 1, 8, 2, 8}));   // a one-row block: only tap 0

TEST(DFlash2TopK, LargestFirstTiesToTheLowerId) {
  DFLASH_REQUIRE_PLUGIN();
  const std::vector<float> x = {0.5f, 2.0f, -1.0f, 2.0f, 7.0f, 0.5f, 0.5f, -3.0f,   // row 0: a tie at 2, three at 0.5
                                1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};    // row 1: all equal
  hlo::Builder b;
  const Value v = b.Parameter({2, 8}, DType::kF32);
  const auto [values, ids] = TopK(b, v, 5);
  auto bx = Upload(x, {2, 8});
  auto out = CompileAndRun(b.Finish({values, ids}), {bx.get()});
  EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{7, 2, 2, 0.5f, 0.5f, 1, 1, 1, 1, 1}));
  EXPECT_EQ(Download<int32_t>(*out[1]), (std::vector<int32_t>{4, 1, 3, 0, 5, 0, 1, 2, 3, 4}));
}

TEST(DFlash2Build, WeightSpecsAndErrors) {
  DrafterConfig d;
  d.hidden_size = 64;
  d.dflash2 = {2, 16, 8, 4, 256, 1.0f, 0.0f};
  std::vector<WeightSpec> s;
  AppendDFlash2ConvSpecs(s, "layers.1.", d, pjrt::DType::kF32);
  AppendDFlash2SelectorSpecs(s, d, pjrt::DType::kF32);
  ASSERT_EQ(s.size(), 7u);
  EXPECT_EQ(s[0].name, "layers.1.attention_conv.base_kernel");
  EXPECT_EQ(s[0].shape, (std::vector<int64_t>{2, 2, 64}));
  EXPECT_EQ(s[1].name, "layers.1.attention_conv.kernel_projection.weight");
  EXPECT_EQ(s[1].shape, (std::vector<int64_t>{2 * 2 * 4, 64}));
  EXPECT_EQ(s[3].name, "layers.1.mlp_conv.kernel_projection.weight");
  EXPECT_EQ(s[5].name, "candidate_selector.predecessor_codebook");  // the hub name: no ".weight"
  EXPECT_EQ(s[5].shape, (std::vector<int64_t>{256, 8}));

  hlo::Builder b;
  const Value x = b.Parameter({1, 4, 64}, DType::kF32), base = b.Parameter({2, 2, 64}, DType::kF32);
  const Value bad = b.Parameter({1, 4, 2, 2, 3}, DType::kF32);
  EXPECT_THROW(GroupedCausalConv(b, x, base, bad, 0, 16, Numerics{}), std::invalid_argument);
  EXPECT_THROW(GroupedCausalConv(b, x, base, bad, 0, 24, Numerics{}), std::invalid_argument);
  EXPECT_THROW(TopK(b, x, 65), std::invalid_argument);
}

}  // namespace
}  // namespace dflash::models
