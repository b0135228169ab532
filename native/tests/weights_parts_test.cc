// UploadWeights with program inputs made of several checkpoint tensors (WeightSpec::parts): the
// parts land stacked along dim 0 in spec order, converted to the spec's dtype on the way, and a
// missing or misshapen part is named as the checkpoint's tensor. Over a mesh, each device gets
// exactly its part of a split tensor.
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
  const auto unused = UploadWeights(testing::TestMesh(), specs, sources, "x.", out, nullptr, {});
  EXPECT_TRUE(unused.empty());
  ASSERT_EQ(out.count("x.mlp.gate_up_proj.weight"), 1u);
  const auto got = testing::Download<float>(out.at("x.mlp.gate_up_proj.weight")->shard(0));
  EXPECT_EQ(got, (std::vector<float>{1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}));
}

TEST(UploadWeightsParts, EachDeviceGetsItsPartOfASplitTensor) {
  DFLASH_REQUIRE_PLUGIN();
  // w (4, 3) = 0..11 in F32; gate (2, 3) = 100.. and up (2, 3) = 200.. in BF16.
  std::vector<float> w(12), gate(6), up(6);
  for (int i = 0; i < 12; ++i) w[i] = static_cast<float>(i);
  for (int i = 0; i < 6; ++i) gate[i] = 100.0f + i, up[i] = 200.0f + i;
  std::vector<uint8_t> data = Bytes(w);
  for (const auto* part : {&gate, &up})
    for (float f : *part) {
      const uint16_t h = testing::ToBf16(f);
      data.push_back(static_cast<uint8_t>(h & 0xff));
      data.push_back(static_cast<uint8_t>(h >> 8));
    }
  File file(kHeader, data), other(kHeader, Bytes(w));
  const std::vector<TensorSource> sources = {{"rows", file.path, kStart, 48, "F32", {4, 3}},
                                             {"mlp.gate_proj.weight", file.path, kStart + 48, 12, "BF16", {2, 3}},
                                             {"mlp.up_proj.weight", file.path, kStart + 60, 12, "BF16", {2, 3}},
                                             {"cols", other.path, kStart, 48, "F32", {3, 4}}};
  const std::vector<models::WeightSpec> specs = {
      {"rows", {4, 3}, pjrt::DType::kF32, {}, hlo::Sharding::Split(0)},  // straight from the mapped file
      {"cols", {3, 4}, pjrt::DType::kF32, {}, hlo::Sharding::Split(1)},  // a strided part: staged
      {"mlp.gate_up_proj.weight", {2, 2, 3}, pjrt::DType::kF32, {"mlp.gate_proj.weight", "mlp.up_proj.weight"}, hlo::Sharding::Split(1)}};
  WeightMap out;
  UploadWeights(testing::TestMesh(2), specs, sources, "", out, nullptr, {});
  const pjrt::Array& rows = *out.at("rows");
  ASSERT_EQ(rows.num_shards(), 2u);
  EXPECT_EQ(rows.dims(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(testing::Download<float>(rows.shard(0)), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(testing::Download<float>(rows.shard(1)), (std::vector<float>{6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(rows.shard(1).device(), testing::TestClient()->addressable_devices()[1]);
  const pjrt::Array& cols = *out.at("cols");
  EXPECT_EQ(cols.shard(0).dims(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(testing::Download<float>(cols.shard(0)), (std::vector<float>{0, 1, 4, 5, 8, 9}));
  EXPECT_EQ(testing::Download<float>(cols.shard(1)), (std::vector<float>{2, 3, 6, 7, 10, 11}));
  // A spec that does not split evenly is refused before anything moves.
  WeightMap none;
  EXPECT_THROW(UploadWeights(testing::TestMesh(2), {{"rows", {4, 3}, pjrt::DType::kF32, {}, hlo::Sharding::Split(1)}}, sources, "", none,
                             nullptr, {}),
               std::logic_error);
  const pjrt::Array& gu = *out.at("mlp.gate_up_proj.weight");
  EXPECT_EQ(gu.shard(0).dims(), (std::vector<int64_t>{2, 1, 3}));
  EXPECT_EQ(testing::Download<float>(gu.shard(0)), (std::vector<float>{100, 101, 102, 200, 201, 202}));
  EXPECT_EQ(testing::Download<float>(gu.shard(1)), (std::vector<float>{103, 104, 105, 203, 204, 205}));
}

// Row ranges "name[a:b]" of one tensor, concatenated in part order (a Gated DeltaNet's [q | k | v]
// regrouped device-major): q = rows 0..1, k = rows 2..3, v = rows 4..7 of a (8, 2) tensor, split
// over 2 devices as [q0 k0 v0 v1 | q1 k1 v2 v3]; bf16 rows widened on the way; the tensor counts
// as used.
TEST(UploadWeightsParts, RowRangesRegroupOneTensor) {
  DFLASH_REQUIRE_PLUGIN();
  std::vector<uint8_t> data;
  for (int i = 0; i < 16; ++i) {
    const uint16_t h = testing::ToBf16(static_cast<float>(i));
    data.push_back(static_cast<uint8_t>(h & 0xff));
    data.push_back(static_cast<uint8_t>(h >> 8));
  }
  File file(kHeader, data);
  const std::vector<TensorSource> sources = {{"qkv", file.path, kStart, 32, "BF16", {8, 2}}};
  const std::vector<models::WeightSpec> specs = {
      {"qkv", {8, 2}, pjrt::DType::kF32, {"qkv[0:1]", "qkv[2:3]", "qkv[4:6]", "qkv[1:2]", "qkv[3:4]", "qkv[6:8]"}, hlo::Sharding::Split(0)}};
  WeightMap out;
  EXPECT_TRUE(UploadWeights(testing::TestMesh(2), specs, sources, "", out, nullptr, {}).empty());
  const pjrt::Array& a = *out.at("qkv");
  EXPECT_EQ(testing::Download<float>(a.shard(0)), (std::vector<float>{0, 1, 4, 5, 8, 9, 10, 11}));
  EXPECT_EQ(testing::Download<float>(a.shard(1)), (std::vector<float>{2, 3, 6, 7, 12, 13, 14, 15}));
  // Ranges that overrun the tensor or do not add up to the spec's rows are refused.
  WeightMap none;
  EXPECT_THROW(UploadWeights(testing::TestMesh(), {{"qkv", {8, 2}, pjrt::DType::kF32, {"qkv[0:9]"}}}, sources, "", none, nullptr, {}),
               std::runtime_error);
  EXPECT_THROW(UploadWeights(testing::TestMesh(), {{"qkv", {8, 2}, pjrt::DType::kF32, {"qkv[0:4]", "qkv[4:6]"}}}, sources, "", none, nullptr, {}),
               std::logic_error);
}

TEST(UploadWeightsParts, NamesAMissingOrMisshapenPart) {
  DFLASH_REQUIRE_PLUGIN();
  File file(kHeader, Bytes(std::vector<float>(12, 0.5f)));
  const std::vector<models::WeightSpec> specs = {
      {"mlp.gate_up_proj.weight", {2, 2, 3}, pjrt::DType::kF32, {"mlp.gate_proj.weight", "mlp.up_proj.weight"}}};
  WeightMap out;
  auto problem = [&](const std::vector<TensorSource>& sources) {
    try {
      UploadWeights(testing::TestMesh(), specs, sources, "", out, nullptr, {});
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
