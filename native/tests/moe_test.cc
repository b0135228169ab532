// The Qwen3-MoE block (models/moe.h) on the CPU plugin against a reference computed here in
// double precision from the equations (softmax router, top-k, optional renormalisation, weighted
// SiLU experts): routing ids and weights, and the dense and gathered implementations' outputs,
// with f32 and bf16 expert weights, with and without norm_topk_prob. Plus build-time checks:
// shape errors name "moe", kAuto's choice, and the stacked weight-spec names.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "hlo/builder.h"
#include "hlo_test_runtime.h"
#include "models/moe.h"

namespace dflash::models {
namespace {

using hlo::DType;
using hlo::Value;
using testing::CompileAndRun;
using testing::Download;
using testing::Upload;

struct Case {
  int64_t t, h, e, k, i;
  bool norm;
  bool bf16;
};

struct Reference {
  std::vector<int32_t> ids;   // (T, k)
  std::vector<double> w;      // (T, k)
  std::vector<double> y;      // (T, H)
  double min_gap = 1e9;       // smallest logit gap between the k-th and (k+1)-th expert
};

float RoundBf16(float f) {
  uint32_t u = uint32_t(testing::ToBf16(f)) << 16;
  float g;
  std::memcpy(&g, &u, 4);
  return g;
}

// Weights as the device sees them (bf16-rounded when the case stores bf16).
struct Data {
  std::vector<float> x, router, gate, up, down;
};

Data MakeData(const Case& c, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> n;
  auto fill = [&](size_t len, float std) {
    std::vector<float> v(len);
    for (auto& f : v) f = c.bf16 ? RoundBf16(std * n(gen)) : std * n(gen);
    return v;
  };
  Data d;
  d.x = fill(c.t * c.h, 1.0f);
  d.router = fill(c.e * c.h, 0.5f);
  d.gate = fill(c.e * c.i * c.h, 0.3f);
  d.up = fill(c.e * c.i * c.h, 0.3f);
  d.down = fill(c.e * c.h * c.i, 0.3f);
  return d;
}

Reference Compute(const Case& c, const Data& d) {
  Reference r;
  r.y.assign(c.t * c.h, 0.0);
  for (int64_t t = 0; t < c.t; ++t) {
    std::vector<double> logit(c.e), p(c.e);
    for (int64_t e = 0; e < c.e; ++e)
      for (int64_t j = 0; j < c.h; ++j) logit[e] += double(d.router[e * c.h + j]) * d.x[t * c.h + j];
    const double m = *std::max_element(logit.begin(), logit.end());
    double z = 0;
    for (int64_t e = 0; e < c.e; ++e) z += p[e] = std::exp(logit[e] - m);
    for (auto& v : p) v /= z;
    std::vector<int32_t> order(c.e);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    r.min_gap = std::min(r.min_gap, logit[order[c.k - 1]] - (c.k < c.e ? logit[order[c.k]] : -1e9));
    double sum = 0;
    for (int64_t j = 0; j < c.k; ++j) sum += p[order[j]];
    for (int64_t j = 0; j < c.k; ++j) {
      const int32_t e = order[j];
      const double w = c.norm ? p[e] / sum : p[e];
      r.ids.push_back(e);
      r.w.push_back(w);
      std::vector<double> act(c.i);
      for (int64_t a = 0; a < c.i; ++a) {
        double g = 0, u = 0;
        for (int64_t j2 = 0; j2 < c.h; ++j2) {
          g += double(d.gate[(e * c.i + a) * c.h + j2]) * d.x[t * c.h + j2];
          u += double(d.up[(e * c.i + a) * c.h + j2]) * d.x[t * c.h + j2];
        }
        act[a] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t o = 0; o < c.h; ++o) {
        double s = 0;
        for (int64_t a = 0; a < c.i; ++a) s += double(d.down[(e * c.h + o) * c.i + a]) * act[a];
        r.y[t * c.h + o] += w * s;
      }
    }
  }
  return r;
}

std::unique_ptr<pjrt::Buffer> UploadWeights(const std::vector<float>& v, const std::vector<int64_t>& dims, bool bf16) {
  if (!bf16) return Upload(v, dims);
  std::vector<uint16_t> bits(v.size());
  for (size_t j = 0; j < v.size(); ++j) bits[j] = testing::ToBf16(v[j]);
  return Upload(bits, dims);
}

// Runs routing + the block with `impl`; returns {ids, weights, y}.
void RunCase(const Case& c, MoeImpl impl, uint32_t seed) {
  const Data d = MakeData(c, seed);
  const Reference ref = Compute(c, d);
  ASSERT_GT(ref.min_gap, 1e-3) << "random data with a near tie in the top-k: pick another seed";
  const DType wt = c.bf16 ? DType::kBF16 : DType::kF32;
  hlo::Builder b;
  const MoeConfig cfg{c.e, c.k, c.i, c.norm};
  const Value x = b.Parameter({c.t, c.h}, DType::kF32);
  const MoeWeights w{b.Parameter({c.e, c.h}, wt), b.Parameter({c.e, c.i, c.h}, wt), b.Parameter({c.e, c.i, c.h}, wt),
                     b.Parameter({c.e, c.h, c.i}, wt)};
  const MoeRouting r = MoeRoute(b, x, w.router, cfg);
  const Value y = MoeMlp(b, x, w, cfg, impl);
  auto bx = Upload(d.x, {c.t, c.h});
  auto br = UploadWeights(d.router, {c.e, c.h}, c.bf16), bg = UploadWeights(d.gate, {c.e, c.i, c.h}, c.bf16);
  auto bu = UploadWeights(d.up, {c.e, c.i, c.h}, c.bf16), bd = UploadWeights(d.down, {c.e, c.h, c.i}, c.bf16);
  auto out = CompileAndRun(b.Finish({r.experts, r.weights, y}), {bx.get(), br.get(), bg.get(), bu.get(), bd.get()});
  const auto ids = Download<int32_t>(*out[0]);
  const auto ws = Download<float>(*out[1]);
  const auto ys = Download<float>(*out[2]);
  EXPECT_EQ(ids, ref.ids);
  for (size_t j = 0; j < ws.size(); ++j) EXPECT_NEAR(ws[j], ref.w[j], 1e-5) << "routing weight " << j;
  double worst = 0, scale = 0;
  for (size_t j = 0; j < ys.size(); ++j) {
    worst = std::max(worst, std::abs(ys[j] - ref.y[j]));
    scale = std::max(scale, std::abs(ref.y[j]));
  }
  EXPECT_LT(worst, 1e-4 * std::max(1.0, scale)) << "worst |y - reference| over " << ys.size() << " values";
}

TEST(Moe, DenseMatchesReference) {
  DFLASH_REQUIRE_PLUGIN();
  RunCase({5, 16, 6, 2, 8, true, false}, MoeImpl::kDense, 1);
  RunCase({7, 24, 8, 3, 12, false, false}, MoeImpl::kDense, 2);
}

TEST(Moe, GatheredMatchesReference) {
  DFLASH_REQUIRE_PLUGIN();
  RunCase({5, 16, 6, 2, 8, true, false}, MoeImpl::kGathered, 1);
  RunCase({7, 24, 8, 3, 12, false, false}, MoeImpl::kGathered, 2);
  RunCase({1, 32, 16, 4, 8, true, false}, MoeImpl::kGathered, 3);  // one token (decode)
}

TEST(Moe, Bf16ExpertWeights) {
  DFLASH_REQUIRE_PLUGIN();
  RunCase({4, 16, 8, 2, 8, true, true}, MoeImpl::kDense, 4);
  RunCase({4, 16, 8, 2, 8, true, true}, MoeImpl::kGathered, 4);
}

TEST(Moe, EveryExpertSelected) {
  DFLASH_REQUIRE_PLUGIN();
  RunCase({3, 16, 4, 4, 8, false, false}, MoeImpl::kGathered, 5);  // k == E: weights are the softmax itself
  RunCase({3, 16, 4, 4, 8, true, false}, MoeImpl::kDense, 5);
}

TEST(Moe, AutoPicksGatheredOnlyWhileItReadsFewerExperts) {
  const MoeConfig cfg{128, 8, 768, true};
  EXPECT_EQ(ChooseMoeImpl(1, cfg), MoeImpl::kGathered);
  EXPECT_EQ(ChooseMoeImpl(15, cfg), MoeImpl::kGathered);
  EXPECT_EQ(ChooseMoeImpl(16, cfg), MoeImpl::kDense);
  EXPECT_EQ(ChooseMoeImpl(512, cfg), MoeImpl::kDense);
}

TEST(Moe, ShapeErrorsNameTheBlock) {
  hlo::Builder b;
  const MoeConfig cfg{4, 2, 8, true};
  const Value x = b.Parameter({3, 16}, DType::kF32);
  const Value r = b.Parameter({4, 16}, DType::kF32), g = b.Parameter({4, 8, 16}, DType::kF32), d = b.Parameter({4, 16, 8}, DType::kF32);
  EXPECT_NO_THROW(MoeMlp(b, x, {r, g, g, d}, cfg));
  const auto expect_error = [&](const MoeWeights& w, const MoeConfig& c, const char* what) {
    try {
      MoeMlp(b, x, w, c);
      ADD_FAILURE() << "expected an error about " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("moe: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error({r, g, g, g}, cfg, "down");
  expect_error({g, g, g, d}, cfg, "router");
  expect_error({r, g, g, d}, MoeConfig{4, 5, 8, true}, "experts_per_token");
  expect_error({r, d, g, d}, cfg, "gate");
}

TEST(Moe, StackedWeightSpecs) {
  std::vector<WeightSpec> specs;
  AppendMoeLayerSpecs(specs, "model.layers.3.", 64, MoeConfig{3, 2, 32, true}, pjrt::DType::kBF16);
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].name, "model.layers.3.mlp.gate.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(specs[1].name, "model.layers.3.mlp.experts.*.gate_proj.weight");
  EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{3, 32, 64}));
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{3, 64, 32}));
  EXPECT_EQ(StackedExpertSources(specs[3]), (std::vector<std::string>{"model.layers.3.mlp.experts.0.down_proj.weight",
                                                                      "model.layers.3.mlp.experts.1.down_proj.weight",
                                                                      "model.layers.3.mlp.experts.2.down_proj.weight"}));
  EXPECT_EQ(StackedExpertSources(specs[0]), (std::vector<std::string>{"model.layers.3.mlp.gate.weight"}));
}

}  // namespace
}  // namespace dflash::models
