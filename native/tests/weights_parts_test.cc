// UploadWeights with program inputs made of several checkpoint tensors (WeightSpec::parts): the
// parts land concatenated along dim 0 in spec order, converted to the spec's dtype on the way, and
// a missing or misshapen part is named as the checkpoint's tensor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/weights.h"
#include "hlo_test_runtime.h"

namespace fs = std::filesystem;

namespace dflash::engine {
namespace {

// A safetensors-shaped file: 8-byte length, a blank header of `header` bytes, then `data`.
struct File {
  std::string path;
  File(int64_t header, const std::vector<uint8_t>& data) {
    path = (fs::temp_directory_path() / "dflash-parts-XXXXXX").string();
    ::close(mkstemp(path.data()));
    std::ofstream out(path, std::ios::binary);
    uint8_t len[8] = {static_cast<uint8_t>(header), 0, 0, 0, 0, 0, 0, 0};
    out.write(reinterpret_cast<const char*>(len), 8);
    out << std::string(header, ' ');
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  ~File() { fs::remove(path); }
};

std::vector<uint8_t> Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

constexpr int64_t kHeader = 16, kStart = 8 + kHeader;

TEST(UploadWeightsParts, ConcatenatesThePartsInSpecOrder) {
  DFLASH_REQUIRE_PLUGIN();
  // gate (2, 3) f32 then up (2, 3) as bf16 bits, back to back.
  const std::vector<float> gate = {1, 2, 3, 4, 5, 6}, up = {-1, -2, -3, -4, -5, -6};
  std::vector<uint8_t> data = Bytes(gate);
  for (float f : up) {
    const uint16_t h = testing::ToBf16(f);
    data.push_back(static_cast<uint8_t>(h & 0xff));
    data.push_back(static_cast<uint8_t>(h >> 8));
  }
  File file(kHeader, data);
  const std::vector<TensorSource> sources = {{"mlp.gate_proj.weight", file.path, kStart, 24, "F32", {2, 3}},
                                             {"mlp.up_proj.weight", file.path, kStart + 24, 12, "BF16", {2, 3}}};
  const std::vector<models::WeightSpec> specs = {
      {"mlp.gate_up_proj.weight", {4, 3}, pjrt::DType::kF32, {"mlp.gate_proj.weight", "mlp.up_proj.weight"}}};
  WeightMap out;
  const auto unused = UploadWeights(*testing::TestClient(), specs, sources, "x.", out, nullptr, {});
  EXPECT_TRUE(unused.empty());
  ASSERT_EQ(out.count("x.mlp.gate_up_proj.weight"), 1u);
  const auto got = testing::Download<float>(*out.at("x.mlp.gate_up_proj.weight"));
  EXPECT_EQ(got, (std::vector<float>{1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}));
}

TEST(UploadWeightsParts, NamesAMissingOrMisshapenPart) {
  DFLASH_REQUIRE_PLUGIN();
  File file(kHeader, Bytes(std::vector<float>(12, 0.5f)));
  const std::vector<models::WeightSpec> specs = {
      {"mlp.gate_up_proj.weight", {4, 3}, pjrt::DType::kF32, {"mlp.gate_proj.weight", "mlp.up_proj.weight"}}};
  WeightMap out;
  auto problem = [&](const std::vector<TensorSource>& sources) {
    try {
      UploadWeights(*testing::TestClient(), specs, sources, "", out, nullptr, {});
      return std::string();
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(problem({{"mlp.gate_proj.weight", file.path, kStart, 24, "F32", {2, 3}}}).find("missing tensor mlp.up_proj.weight"),
            std::string::npos);
  EXPECT_NE(problem({{"mlp.gate_proj.weight", file.path, kStart, 24, "F32", {2, 3}},
                     {"mlp.up_proj.weight", file.path, kStart + 24, 24, "F32", {3, 2}}})
                .find("mlp.up_proj.weight in " + file.path + " has shape [3,2], expected [2,3]"),
            std::string::npos);
  EXPECT_NE(problem({{"mlp.gate_proj.weight", file.path, kStart, 12, "F32", {1, 3}},
                     {"mlp.up_proj.weight", file.path, kStart + 12, 12, "F32", {1, 3}}})
                .find("mlp.gate_proj.weight in " + file.path + " has shape [1,3], expected [2,3]"),
            std::string::npos);
}

}  // namespace
}  // namespace dflash::engine
