// Runs builder-made programs on the CPU plugin (DFLASH_PJRT_PLUGIN) and compares them with
// results computed here: matmul, reductions, softmax, argmax (ties, NaN), gather, scatter,
// dynamic slicing and donation. Skips when no plugin is configured.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "hlo/builder.h"
#include "hlo_test_runtime.h"

namespace dflash::hlo {
namespace {

using testing::CompileAndRun;
using testing::Download;
using testing::Upload;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

TEST(HloRuntime, BatchedMatmulAndLinear) {
  DFLASH_REQUIRE_PLUGIN();
  Builder b;
  const Value x = b.Parameter({2, 3, 4}, DType::kF32);
  const Value y = b.Parameter({2, 4, 5}, DType::kF32);
  const Value w = b.Parameter({6, 4}, DType::kBF16);
  const Value mm = b.DotGeneral(x, y, DotDims{{0}, {0}, {2}, {1}});  // (2, 3, 5)
  const Value lin = b.Linear(x, b.Convert(w, DType::kF32));            // (2, 3, 6)
  const auto xs = Random(24, 1), ys = Random(40, 2), ws = Random(24, 3);
  std::vector<uint16_t> wb;
  std::vector<float> wf;
  for (float f : ws) {
    wb.push_back(testing::ToBf16(f));
    uint32_t u = uint32_t(wb.back()) << 16;
    float g;
    std::memcpy(&g, &u, 4);
    wf.push_back(g);
  }
  auto bx = Upload(xs, {2, 3, 4}), by = Upload(ys, {2, 4, 5}), bw = Upload(wb, {6, 4});
  auto out = CompileAndRun(b.Finish({mm, lin}), {bx.get(), by.get(), bw.get()});
  const auto got = Download<float>(*out[0]), got_lin = Download<float>(*out[1]);
  for (int n = 0; n < 2; ++n)
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 5; ++j) {
        float want = 0;
        for (int k = 0; k < 4; ++k) want += xs[n * 12 + i * 4 + k] * ys[n * 20 + k * 5 + j];
        EXPECT_NEAR(got[n * 15 + i * 5 + j], want, 1e-5);
      }
      for (int o = 0; o < 6; ++o) {
        float want = 0;
        for (int k = 0; k < 4; ++k) want += xs[n * 12 + i * 4 + k] * wf[o * 4 + k];
        EXPECT_NEAR(got_lin[n * 18 + i * 6 + o], want, 1e-5);
      }
    }
}

TEST(HloRuntime, ReduceAndSoftmax) {
  DFLASH_REQUIRE_PLUGIN();
  Builder b;
  const Value x = b.Parameter({3, 5}, DType::kF32);
  const Value sum = b.Reduce(x, {1}, ReduceKind::kSum);
  const Value mx = b.Reduce(x, {0}, ReduceKind::kMax);
  const Value mn = b.Reduce(x, {0, 1}, ReduceKind::kMin);
  const Value e = b.Exp(b.Sub(x, b.Reshape(b.Reduce(x, {1}, ReduceKind::kMax), {3, 1})));
  const Value sm = b.Div(e, b.Reshape(b.Reduce(e, {1}, ReduceKind::kSum), {3, 1}));
  const auto xs = Random(15, 4);
  auto bx = Upload(xs, {3, 5});
  auto out = CompileAndRun(b.Finish({sum, mx, mn, sm}), {bx.get()});
  const auto s = Download<float>(*out[0]), m = Download<float>(*out[1]), n = Download<float>(*out[2]), p = Download<float>(*out[3]);
  float all_min = xs[0];
  for (float v : xs) all_min = std::min(all_min, v);
  EXPECT_EQ(n[0], all_min);
  for (int i = 0; i < 3; ++i) {
    float want = 0, rmax = -INFINITY, z = 0;
    for (int j = 0; j < 5; ++j) want += xs[i * 5 + j], rmax = std::max(rmax, xs[i * 5 + j]);
    EXPECT_NEAR(s[i], want, 1e-5);
    for (int j = 0; j < 5; ++j) z += std::exp(xs[i * 5 + j] - rmax);
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(p[i * 5 + j], std::exp(xs[i * 5 + j] - rmax) / z, 1e-6);
  }
  for (int j = 0; j < 5; ++j) EXPECT_EQ(m[j], std::max({xs[j], xs[5 + j], xs[10 + j]}));
}

TEST(HloRuntime, ArgmaxFirstMaxAndNaN) {
  DFLASH_REQUIRE_PLUGIN();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // Rows: ties (first max wins), all equal, NaN (first NaN wins, like numpy), all -inf, a long
  // row with the max twice far apart (exercises XLA's tree reduction).
  const int64_t W = 300;
  std::vector<float> xs(5 * W, 0.0f);
  for (int64_t j = 0; j < W; ++j) xs[j] = static_cast<float>(j % 7);  // max 6 first at j = 6
  for (int64_t j = 0; j < W; ++j) xs[W + j] = 1.5f;
  xs[2 * W + 10] = 5;
  xs[2 * W + 20] = nan;
  xs[2 * W + 30] = nan;
  for (int64_t j = 0; j < W; ++j) xs[3 * W + j] = -inf;
  xs[4 * W + 290] = 9;
  xs[4 * W + 17] = 9;
  Builder b;
  const Value x = b.Parameter({5, W}, DType::kF32);
  const Value xi = b.Parameter({2, 4}, DType::kS32);
  auto bx = Upload(xs, {5, W});
  auto bi = Upload(std::vector<int32_t>{3, -1, 3, 2, -5, -5, -7, -5}, {2, 4});
  auto out = CompileAndRun(b.Finish({b.Argmax(x, 1), b.Argmax(xi, 1), b.Argmax(x, 0)}), {bx.get(), bi.get()});
  EXPECT_EQ(Download<int32_t>(*out[0]), (std::vector<int32_t>{6, 0, 20, 0, 17}));
  EXPECT_EQ(Download<int32_t>(*out[1]), (std::vector<int32_t>{0, 0}));
  const auto cols = Download<int32_t>(*out[2]);
  EXPECT_EQ(cols[20], 2);  // NaN in row 2 beats everything
  EXPECT_EQ(cols[0], 1);   // column 0: 0, 1.5, 0, -inf, 0 -> row 1
}

TEST(HloRuntime, GatherRowsAndPages) {
  DFLASH_REQUIRE_PLUGIN();
  Builder b;
  const Value table = b.Parameter({5, 3}, DType::kF32);
  const Value ids = b.Parameter({2, 2}, DType::kS32);
  const Value bt = b.Parameter({2, 3}, DType::kS32);  // "block table"
  const Value rows = b.Take(table, ids);             // (2, 2, 3)
  // Per-row lookup bt[r, c[r, k]] as the target program does: indices (2, 2, 2) = (r, c).
  const Value col = b.Parameter({2, 2}, DType::kS32);
  const Value idx = b.Concatenate({b.Iota({2, 2, 1}, DType::kS32, 0), b.Reshape(col, {2, 2, 1})}, 2);
  const Value picked = b.Gather(bt, idx, GatherDims{{}, {0, 1}, {0, 1}, 2}, {1, 1});  // (2, 2)
  std::vector<float> ts(15);
  for (int i = 0; i < 15; ++i) ts[i] = static_cast<float>(i);
  auto b1 = Upload(ts, {5, 3}), b2 = Upload(std::vector<int32_t>{4, 0, 2, 2}, {2, 2});
  auto b3 = Upload(std::vector<int32_t>{10, 11, 12, 20, 21, 22}, {2, 3}), b4 = Upload(std::vector<int32_t>{2, 0, 1, 1}, {2, 2});
  auto out = CompileAndRun(b.Finish({rows, picked}), {b1.get(), b2.get(), b3.get(), b4.get()});
  EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{12, 13, 14, 0, 1, 2, 6, 7, 8, 6, 7, 8}));
  EXPECT_EQ(Download<int32_t>(*out[1]), (std::vector<int32_t>{12, 10, 21, 21}));
}

TEST(HloRuntime, ScatterReplacesWindows) {
  DFLASH_REQUIRE_PLUGIN();
  // cache (3 pages, 2 slots, 2 features); write two rows at (page, slot) = (2, 1) and (0, 0).
  Builder b;
  const Value cache = b.Parameter({3, 2, 2}, DType::kF32, 0);
  const Value idx = b.Parameter({2, 2}, DType::kS32);
  const Value upd = b.Parameter({2, 2}, DType::kF32);
  const Value out_v = b.Scatter(cache, idx, upd, ScatterDims{{1}, {0, 1}, {0, 1}, 1});
  std::vector<float> c(12, -1.0f);
  auto bc = Upload(c, {3, 2, 2}), bi = Upload(std::vector<int32_t>{2, 1, 0, 0}, {2, 2});
  auto bu = Upload(std::vector<float>{7, 8, 5, 6}, {2, 2});
  auto out = CompileAndRun(b.Finish({out_v}), {bc.get(), bi.get(), bu.get()});
  EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{5, 6, -1, -1, -1, -1, -1, -1, -1, -1, 7, 8}));
}

TEST(HloRuntime, DynamicSliceAndUpdate) {
  DFLASH_REQUIRE_PLUGIN();
  Builder b;
  const Value x = b.Parameter({4, 3}, DType::kF32, 0);
  const Value at = b.Parameter({}, DType::kS32);
  const Value zero = b.Scalar(0, DType::kS32);
  const Value upd = b.Splat(9, {2, 3}, DType::kF32);
  const Value y = b.DynamicUpdateSlice(x, upd, {at, zero});
  const Value s = b.DynamicSlice(y, {at, b.Scalar(1, DType::kS32)}, {2, 2});
  std::vector<float> xs(12);
  for (int i = 0; i < 12; ++i) xs[i] = static_cast<float>(i);
  const std::string text = b.Finish({y, s});
  {
    auto bx = Upload(xs, {4, 3});
    auto ba = Upload(std::vector<int32_t>{1}, {});
    auto out = CompileAndRun(text, {bx.get(), ba.get()});
    EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{0, 1, 2, 9, 9, 9, 9, 9, 9, 9, 10, 11}));
    EXPECT_EQ(Download<float>(*out[1]), (std::vector<float>{9, 9, 9, 9}));
  }
  {
    // Out-of-range starts are clamped (why the drafter requires ctx_len + A <= C).
    auto bx = Upload(xs, {4, 3});
    auto ba = Upload(std::vector<int32_t>{3}, {});
    auto out = CompileAndRun(text, {bx.get(), ba.get()});
    EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{0, 1, 2, 3, 4, 5, 9, 9, 9, 9, 9, 9}));
  }
}

TEST(HloRuntime, ElementwiseShapeOps) {
  DFLASH_REQUIRE_PLUGIN();
  Builder b;
  const Value x = b.Parameter({2, 3}, DType::kF32);
  const Value i = b.Iota({2, 3}, DType::kS32, 1);
  const Value sel = b.Select(b.Compare(i, b.Scalar(1, DType::kS32), Cmp::kGE), x, b.Neg(x));
  const Value t = b.Transpose(b.Concatenate({sel, b.Splat(0.5, {2, 1}, DType::kF32)}, 1), {1, 0});  // (4, 2)
  const Value sl = b.Slice(t, {1, 0}, {4, 2}, {2, 1});                                               // rows 1, 3
  const Value r = b.Rem(b.Parameter({4}, DType::kS32), b.Scalar(3, DType::kS32));
  const Value cl = b.Clamp(b.Scalar(-1, DType::kF32), x, b.Scalar(1, DType::kF32));
  const Value act = b.Mul(b.Logistic(x), b.Add(b.Tanh(x), b.Rsqrt(b.Add(b.Abs(x), b.Scalar(1, DType::kF32)))));
  const std::vector<float> xs{-2, 0.5, 3, 1, -0.25, -4};
  auto bx = Upload(xs, {2, 3}), bi = Upload(std::vector<int32_t>{7, 3, 5, 0}, {4});
  auto out = CompileAndRun(b.Finish({sl, r, cl, act}), {bx.get(), bi.get()});
  EXPECT_EQ(Download<float>(*out[0]), (std::vector<float>{0.5, -0.25, 0.5, 0.5}));
  EXPECT_EQ(Download<int32_t>(*out[1]), (std::vector<int32_t>{1, 0, 2, 0}));
  EXPECT_EQ(Download<float>(*out[2]), (std::vector<float>{-1, 0.5, 1, 1, -0.25, -1}));
  const auto a = Download<float>(*out[3]);
  for (int k = 0; k < 6; ++k)
    EXPECT_NEAR(a[k], 1 / (1 + std::exp(-xs[k])) * (std::tanh(xs[k]) + 1 / std::sqrt(std::fabs(xs[k]) + 1)), 1e-6);
}

}  // namespace
}  // namespace dflash::hlo

namespace dflash::hlo {
namespace {

TEST(HloRuntime, TopKAndBitcastPacking) {
  DFLASH_REQUIRE_PLUGIN();
  // Two rows of 6: the 3 largest, largest first, ties by smaller index; then the values packed
  // bit for bit into an s32 result beside the indices (one host transfer).
  Builder b;
  const Value x = b.Parameter({2, 6}, DType::kF32);
  const auto [vals, idx] = b.TopK(x, 3);
  const Value packed = b.Concatenate({idx, b.BitcastConvert(vals, DType::kS32)}, 1);  // (2, 6) s32
  const std::vector<float> xs = {0.5f, 2.0f, -1.0f, 2.0f, 7.0f, 0.0f, -3.0f, -2.0f, -1.0f, -4.0f, -5.0f, -6.0f};
  auto in = Upload(xs, {2, 6});
  auto out = CompileAndRun(b.Finish({packed}), {in.get()});
  const auto got = Download<int32_t>(*out[0]);
  EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + 3), (std::vector<int32_t>{4, 1, 3}));
  EXPECT_EQ(std::vector<int32_t>(got.begin() + 6, got.begin() + 9), (std::vector<int32_t>{2, 1, 0}));
  float v[3];
  std::memcpy(v, got.data() + 3, sizeof v);
  EXPECT_EQ(v[0], 7.0f);
  EXPECT_EQ(v[1], 2.0f);
  EXPECT_EQ(v[2], 2.0f);
  EXPECT_THROW(b.BitcastConvert(vals, DType::kBF16), std::invalid_argument);
  EXPECT_THROW(b.TopK(x, 7), std::invalid_argument);
}

// SolveUnitLower against forward substitution on the host: batched, the diagonal taken as 1 and
// the upper triangle never read (filled with garbage here); DotGeneral's exact_f32 form runs and
// gives the f32 product.
TEST(HloRuntime, SolveUnitLowerAndExactDot) {
  DFLASH_REQUIRE_PLUGIN();
  constexpr int B = 3, M = 5, N = 2;
  Builder b;
  const Value a = b.Parameter({B, M, M}, DType::kF32);
  const Value rhs = b.Parameter({B, M, N}, DType::kF32);
  const Value x = b.SolveUnitLower(a, rhs);
  const Value ax = b.DotGeneral(a, x, DotDims{{0}, {0}, {2}, {1}}, std::nullopt, true);
  auto as = Random(B * M * M, 7);
  const auto bs = Random(B * M * N, 8);
  for (int n = 0; n < B; ++n)
    for (int i = 0; i < M; ++i)
      for (int j = i; j < M; ++j) as[(n * M + i) * M + j] = 1e3f * (1 + i + j);  // diagonal and above: not read
  auto ba = Upload(as, {B, M, M}), bb = Upload(bs, {B, M, N});
  auto out = CompileAndRun(b.Finish({x, ax}), {ba.get(), bb.get()});
  const auto got = Download<float>(*out[0]), prod = Download<float>(*out[1]);
  for (int n = 0; n < B; ++n)
    for (int c = 0; c < N; ++c) {
      std::vector<double> want(M);
      for (int i = 0; i < M; ++i) {
        double v = bs[(n * M + i) * N + c];
        for (int j = 0; j < i; ++j) v -= as[(n * M + i) * M + j] * want[j];
        want[i] = v;
        EXPECT_NEAR(got[(n * M + i) * N + c], want[i], 1e-4 * (1 + std::abs(want[i]))) << "batch " << n << " row " << i;
      }
    }
  // The product with the full a (garbage upper part included) is what the dot computes.
  for (int n = 0; n < B; ++n)
    for (int i = 0; i < M; ++i)
      for (int c = 0; c < N; ++c) {
        double want = 0;
        for (int j = 0; j < M; ++j) want += as[(n * M + i) * M + j] * got[(n * M + j) * N + c];
        EXPECT_NEAR(prod[(n * M + i) * N + c], want, 1e-3 * (1 + std::abs(want)));
      }
  EXPECT_THROW(b.SolveUnitLower(rhs, a), std::invalid_argument);
}

}  // namespace
}  // namespace dflash::hlo
