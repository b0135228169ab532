// Unit tests of the engine's host-side parts: the option schema (one place for names, defaults
// and ranges), the dtype policy, the adaptive-speculation cost model, and the disk program cache's
// refusal of entries that are not what they claim to be.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>

#include "engine/dtype_policy.h"
#include "engine/options.h"
#include "engine/program_cache.h"
#include "engine/speculation.h"
#include "hlo/builder.h"
#include "hlo_test_runtime.h"
#include "models/program.h"

namespace dflash::engine {
namespace {

TEST(Options, DefaultsComeFromTheSchema) {
  const EngineOptions o = DefaultEngineOptions();
  EXPECT_EQ(o.page_size, 16);
  EXPECT_EQ(o.max_sequences, 8);
  EXPECT_EQ(o.dtype, "auto");
  EXPECT_TRUE(o.adaptive);
  const RequestOptions r = DefaultRequestOptions();
  EXPECT_EQ(r.max_tokens, 256);
  EXPECT_EQ(r.block_size, 0);
}

TEST(Options, ErrorsNameTheOptionTheValueAndTheRange) {
  auto err = [](const std::map<std::string, OptionValue>& v) {
    try {
      ParseRequestOptions(v, "generate");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err({{"blockSize", 2.5}}), "generate: option 'blockSize' must be an integer in [0, 1024], got 2.5");
  EXPECT_EQ(err({{"blockSize", std::string("4")}}), "generate: option 'blockSize' must be an integer in [0, 1024], got '4'");
  EXPECT_EQ(err({{"maxTokens", 2147483648.0}}), "generate: option 'maxTokens' must be an integer in [1, 16777216], got 2147483648");
  EXPECT_EQ(err({{"maxTokens", std::nan("")}}), "generate: option 'maxTokens' must be an integer in [1, 16777216], got NaN");
  EXPECT_EQ(err({{"topK", OtherValue{"null"}}}), "generate: option 'topK' must be an integer in [0, 16777216], got null");
  EXPECT_EQ(err({{"maxToken", 3.0}}).rfind("generate: unknown option 'maxToken'", 0), 0u);
  EXPECT_THROW(ParseEngineOptions({{"pageSize", 12.0}}, "Engine.load"), std::invalid_argument);  // not a power of two
  EXPECT_THROW(ParseEngineOptions({{"dtype", std::string("fp8")}}, "Engine.load"), std::invalid_argument);
  EXPECT_EQ(ParseEngineOptions({{"pageSize", 32.0}, {"dtype", std::string("bf16")}}, "x").page_size, 32);
}

TEST(DtypePolicy, SixteenBitStaysSixteenBitAndCpuPadsSingleRowDots) {
  auto cpu = ChooseDtypes("cpu", pjrt::DType::kBF16, "auto", "auto");
  EXPECT_EQ(cpu.numerics.dtype, pjrt::DType::kBF16);
  EXPECT_EQ(cpu.numerics.kv_dtype, pjrt::DType::kBF16);
  EXPECT_EQ(cpu.numerics.min_dot_rows, 3);
  auto gpu = ChooseDtypes("cuda", pjrt::DType::kBF16, "auto", "auto");
  EXPECT_EQ(gpu.numerics.dtype, pjrt::DType::kBF16);
  EXPECT_EQ(gpu.numerics.min_dot_rows, 1);
  EXPECT_EQ(ChooseDtypes("cpu", pjrt::DType::kF32, "auto", "auto").numerics.min_dot_rows, 2);
  EXPECT_EQ(ChooseDtypes("cpu", pjrt::DType::kF32, "auto", "auto", false).numerics.min_dot_rows, 1);
  EXPECT_EQ(ChooseDtypes("cpu", pjrt::DType::kBF16, "auto", "auto", false).numerics.min_dot_rows, 3);
  EXPECT_EQ(ChooseDtypes("cpu", pjrt::DType::kF32, "auto", "auto").numerics.dtype, pjrt::DType::kF32);
  EXPECT_EQ(ChooseDtypes("cpu", pjrt::DType::kF16, "auto", "auto").numerics.dtype, pjrt::DType::kF32);
  EXPECT_EQ(ChooseDtypes("tpu", pjrt::DType::kF16, "auto", "auto").numerics.dtype, pjrt::DType::kBF16);
  auto forced = ChooseDtypes("cpu", pjrt::DType::kF32, "bf16", "f32");
  EXPECT_EQ(forced.numerics.dtype, pjrt::DType::kBF16);
  EXPECT_EQ(forced.numerics.kv_dtype, pjrt::DType::kF32);
  EXPECT_NE(forced.reason.find("requested"), std::string::npos);
  // A block-quantized GGUF expands to f32 on CPU (faster one-row decode there), bf16 elsewhere.
  auto q_cpu = ChooseDtypes("cpu", pjrt::DType::kF32, "auto", "auto", true, "Q4_K");
  EXPECT_EQ(q_cpu.numerics.dtype, pjrt::DType::kF32);
  EXPECT_EQ(q_cpu.reason, "Q4_K GGUF checkpoint expanded at load to f32 on cpu");
  EXPECT_EQ(ChooseDtypes("cuda", pjrt::DType::kF32, "auto", "auto", true, "Q4_K").numerics.dtype, pjrt::DType::kBF16);
  EXPECT_EQ(ChooseDtypes("tpu", pjrt::DType::kF32, "auto", "auto", true, "Q8_0").numerics.dtype, pjrt::DType::kBF16);
}

TEST(Speculation, ExpectedTokensFollowsTheConditionalAcceptance) {
  EXPECT_DOUBLE_EQ(ExpectedTokens({0, 0.5, 0.5}, 1), 1.0);
  EXPECT_DOUBLE_EQ(ExpectedTokens({0, 0.5, 0.5}, 2), 1.5);
  EXPECT_DOUBLE_EQ(ExpectedTokens({0, 0.5, 0.5}, 3), 1.75);
  AcceptanceStats s(4);
  s.Record(3, 1);  // positions 1 offered + accepted, 2 offered + rejected, 3 never reached
  EXPECT_EQ(s.offered(1), 1);
  EXPECT_EQ(s.accepted(1), 1);
  EXPECT_EQ(s.offered(2), 1);
  EXPECT_EQ(s.accepted(2), 0);
  EXPECT_EQ(s.offered(3), 0);
}

// Feeds the policy measured costs and acceptance, and checks the block it picks.
int32_t Pick(std::vector<std::pair<int32_t, double>> verify_costs, double acceptance) {
  BlockPolicy p(16, true);
  for (auto [k, c] : verify_costs) p.RecordCost(BlockPolicy::Stage::kVerify, 1, k, c);
  AcceptanceStats s(16);
  for (int i = 0; i < 200; ++i) {
    int32_t a = 0;
    while (a < 15 && ((i * 7919 + a * 104729) % 1000) < acceptance * 1000) ++a;
    s.Record(15, a);
  }
  return p.Choose(1, {16}, {&s});
}

TEST(Speculation, KFlatHardwareKeepsTheFullBlock) {
  // Verify cost independent of K (TPU v5p: K=128 costs K=16; H100: 1.00-1.04x): every extra
  // position that can be accepted is free, so the full block wins at any acceptance.
  EXPECT_EQ(Pick({{1, 1e-3}, {16, 1e-3}}, 0.3), 16);
  EXPECT_EQ(Pick({{1, 1e-3}, {16, 1e-3}}, 0.6), 16);
  EXPECT_EQ(Pick({{1, 1e-3}, {16, 1.04e-3}}, 0.9), 16);
}

TEST(Speculation, ComputeBoundCpuWithPoorDraftsDecodesPlainly) {
  // A CPU's measured curve (f32 dots with 2+ rows run slower than the one-row path): with
  // acceptance 0.3 plain decoding wins; with near-perfect drafts the full block does.
  const std::vector<std::pair<int32_t, double>> cpu{{1, 3.3e-3}, {2, 6.6e-3}, {4, 7.0e-3}, {8, 7.7e-3}, {16, 8.6e-3}};
  EXPECT_EQ(Pick(cpu, 0.3), 1);
  EXPECT_EQ(Pick(cpu, 0.97), 16);
}

TEST(Speculation, AnInterpolatedBlockThatLooksBestGetsTried) {
  // Only the ends measured: K = 2 looks nearly free by interpolation, so it is chosen (and its
  // real cost then measured).
  EXPECT_EQ(Pick({{1, 3.3e-3}, {16, 8.6e-3}}, 0.3), 2);
}

TEST(Speculation, MeasuresBothEndsBeforeTrustingTheModel) {
  BlockPolicy p(8, true);
  AcceptanceStats s(8);
  EXPECT_EQ(p.Choose(1, {8}, {&s}), 1);  // nothing measured: plain first
  p.RecordCost(BlockPolicy::Stage::kVerify, 1, 1, 1e-3);
  EXPECT_EQ(p.Choose(1, {8}, {&s}), 8);  // then the full block
  BlockPolicy off(8, false);
  EXPECT_EQ(off.Choose(1, {8}, {&s}), 8);  // adaptive off: always the cap
  EXPECT_EQ(off.Choose(1, {4}, {&s}), 4);
}

TEST(Speculation, AnUnreachedPositionTakesTheEstimateOfThePositionBeforeIt) {
  // One block that held for 6 of 15 positions: positions 2..6 are estimated above position 1's
  // flat prior, and the never-reached 8.. follow the rejected 7 instead of snapping back to 0.5.
  AcceptanceStats s(16);
  s.Record(15, 6);
  const std::vector<double> a = s.Conditional(nullptr);
  EXPECT_DOUBLE_EQ(a[1], 2.0 / 3.0);
  for (int i = 2; i <= 6; ++i) EXPECT_GT(a[i], a[i - 1]);
  EXPECT_LT(a[7], a[6]);
  EXPECT_DOUBLE_EQ(a[8], a[7]);
  EXPECT_GT(ExpectedTokens(a, 16), 4.0);  // one good block is enough evidence to try blocks again
}

TEST(Speculation, TheFirstRunOfAProgramIsAWarmUp) {
  // A first verify at 50 ms (page faults, kernel packing) would otherwise sit in the EMA for many
  // runs of a block that is rarely tried: the second run replaces it.
  BlockPolicy p(16, true);
  p.RecordCost(BlockPolicy::Stage::kVerify, 1, 16, 50e-3);
  p.RecordCost(BlockPolicy::Stage::kVerify, 1, 16, 5e-3);
  EXPECT_DOUBLE_EQ(p.Cost(1, 16), 5e-3);
  p.RecordCost(BlockPolicy::Stage::kVerify, 1, 16, 10e-3);
  EXPECT_DOUBLE_EQ(p.Cost(1, 16), 0.8 * 5e-3 + 0.2 * 10e-3);
}

// The program the cache tests store: y = x + value over f32[2].
std::function<models::Program()> AddConstant(double value) {
  return [value] {
    hlo::Builder b;
    const auto x = b.Input("x", {2}, hlo::DType::kF32);
    return models::FinishProgram(b, {{"y", b.Add(x, b.Splat(value, {2}, hlo::DType::kF32))}});
  };
}

TEST(ProgramCacheDisk, AForeignEntryIsRejectedAndRecompiled) {
  DFLASH_REQUIRE_PLUGIN();
  const auto dir = std::filesystem::temp_directory_path() / ("dflash-pc-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const auto build = AddConstant;
  std::string first_file;
  {
    ProgramCache c(testing::TestMesh(), dir.string());
    c.Get("add one", build(1));
    EXPECT_EQ(c.compiles(), 1);
    for (auto& e : std::filesystem::directory_iterator(dir)) first_file = e.path().string();
  }
  {
    ProgramCache c(testing::TestMesh(), dir.string());  // a second start loads it
    c.Get("add one", build(1));
    EXPECT_EQ(c.compiles(), 0);
    EXPECT_EQ(c.disk_hits(), 1);
  }
  // Another program's entry copied over this one's file: refused by its header, recompiled.
  {
    ProgramCache other(testing::TestMesh(), (dir / "other").string());
    other.Get("add two", build(2));
  }
  std::string other_file;
  for (auto& e : std::filesystem::directory_iterator(dir / "other")) other_file = e.path().string();
  std::filesystem::copy_file(other_file, first_file, std::filesystem::copy_options::overwrite_existing);
  std::vector<std::string> log;
  {
    ProgramCache c(testing::TestMesh(), dir.string());
    c.set_observer([&](const ProgramEvent& e) {
      if (e.kind == ProgramEvent::kDiskReject) log.push_back(e.detail);
    });
    auto p = c.Get("add one", build(1));
    EXPECT_EQ(c.disk_rejects(), 1);
    EXPECT_EQ(c.compiles(), 1);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log[0].find("another program"), std::string::npos) << log[0];
    auto x = testing::Upload(std::vector<float>{1, 2}, {2});
    auto out = p->exe->Execute({x.get()});
    EXPECT_EQ(testing::Download<float>(*out[0]), (std::vector<float>{2, 3}));
  }
  // A truncated entry: refused too.
  std::filesystem::resize_file(first_file, 40);
  {
    ProgramCache c(testing::TestMesh(), dir.string());
    c.Get("add one", build(1));
    EXPECT_EQ(c.disk_rejects(), 1);
  }
  std::filesystem::remove_all(dir);
}

TEST(ProgramCacheBound, UnloadsTheLeastRecentlyUsedProgramNobodyHoldsAndReloadsItFromDisk) {
  DFLASH_REQUIRE_PLUGIN();
  const auto dir = std::filesystem::temp_directory_path() / ("dflash-lru-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const auto build = AddConstant;
  auto run = [](const ProgramRef& p) {
    auto x = testing::Upload(std::vector<float>{1, 2}, {2});
    return testing::Download<float>(*p->exe->Execute({x.get()})[0]);
  };
  ProgramCache c(testing::TestMesh(), dir.string());
  std::vector<std::string> unloaded;
  c.set_observer([&](const ProgramEvent& e) {
    if (e.kind == ProgramEvent::kUnload) unloaded.push_back(e.key);
  });
  c.set_max_loaded(2);
  c.Get("one", build(1));
  c.Get("two", build(2));
  c.Get("one", build(1));                           // "two" is now the least recently used
  EXPECT_EQ(run(c.Get("three", build(3))), (std::vector<float>{4, 5}));
  EXPECT_EQ(unloaded, (std::vector<std::string>{"two"}));
  EXPECT_EQ(c.size(), 2u);
  EXPECT_FALSE(c.Has("two"));
  EXPECT_EQ(run(c.Get("two", build(2))), (std::vector<float>{3, 4}));  // back from the disk cache
  EXPECT_EQ(c.disk_hits(), 1);
  EXPECT_EQ(c.compiles(), 3);
  EXPECT_EQ(unloaded.back(), "one");
  // A program someone holds is never unloaded: with both held, the bound gives way.
  const ProgramRef two = c.Get("two", build(2)), three = c.Get("three", build(3));
  c.Get("four", build(4));
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(run(two), (std::vector<float>{3, 4}));
  EXPECT_EQ(c.evictions(), 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dflash::engine
