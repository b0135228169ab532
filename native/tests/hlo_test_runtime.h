// Test helper for the hlo_* and model_* tests: one shared CPU-plugin client (from
// DFLASH_PJRT_PLUGIN; tests skip when it is unset) with kTestDevices virtual devices, plus typed
// upload/download/run helpers. One-device programs run on its first device.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pjrt/client.h"
#include "pjrt/mesh.h"
#include "pjrt/plugin.h"

namespace dflash::testing {

inline constexpr int64_t kTestDevices = 8;

// The process-wide client, or nullptr when DFLASH_PJRT_PLUGIN is not set.
inline std::shared_ptr<pjrt::Client> TestClient() {
  static std::shared_ptr<pjrt::Client> client = [] {
    const char* path = std::getenv("DFLASH_PJRT_PLUGIN");
    if (!path || !*path) return std::shared_ptr<pjrt::Client>();
    return pjrt::Client::Create(pjrt::Plugin::Load(path), {{"cpu_device_count", kTestDevices}});
  }();
  return client;
}

// The device one-device tests use, and a mesh of the first n devices.
inline PJRT_Device* TestDevice() { return TestClient()->addressable_devices().at(0); }
inline pjrt::Mesh TestMesh(size_t n = 1) {
  const auto& all = TestClient()->addressable_devices();
  return pjrt::Mesh(TestClient(), std::vector<PJRT_Device*>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n)));
}

#define DFLASH_REQUIRE_PLUGIN()                                                  \
  do {                                                                           \
    if (!::dflash::testing::TestClient()) GTEST_SKIP() << "DFLASH_PJRT_PLUGIN unset"; \
  } while (0)

template <typename T>
pjrt::DType DTypeOf();
template <>
inline pjrt::DType DTypeOf<float>() { return pjrt::DType::kF32; }
template <>
inline pjrt::DType DTypeOf<int32_t>() { return pjrt::DType::kS32; }
template <>
inline pjrt::DType DTypeOf<uint16_t>() { return pjrt::DType::kBF16; }  // raw bf16 bits

template <typename T>
std::unique_ptr<pjrt::Buffer> Upload(const std::vector<T>& data, const std::vector<int64_t>& dims) {
  return TestClient()->BufferFromHost(data.data(), DTypeOf<T>(), dims, TestDevice());
}

template <typename T>
std::vector<T> Download(pjrt::Buffer& b) {
  std::vector<T> out(static_cast<size_t>(b.element_count()));
  b.ToHost(out.data(), out.size() * sizeof(T));
  return out;
}

// Compiles `mlir` and runs it once on `args`.
inline std::vector<std::unique_ptr<pjrt::Buffer>> CompileAndRun(const std::string& mlir, const std::vector<pjrt::Buffer*>& args) {
  auto exe = TestClient()->Compile(mlir);
  return exe->Execute(args);
}

// f32 -> bf16 bits, round to nearest even (finite inputs).
inline uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace dflash::testing
