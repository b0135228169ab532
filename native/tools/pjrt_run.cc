// pjrt_run: the native test driver for hosts without Node (e.g. a GPU box with only
// jax-cuda13-pjrt installed). Loads a PJRT plugin, prints its versions, attributes and devices,
// then compiles and runs the same small programs as test/05-runtime.test.ts and checks every
// number against values computed here. Exit code 0 only if every check passes.
//   pjrt_run /path/to/plugin.so [program.mlir]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "pjrt/client.h"

using namespace dflash::pjrt;

namespace {
int failures = 0;

void Report(const char* name, bool ok, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, detail.empty() ? "" : ": ", detail.c_str());
  if (!ok) ++failures;
}

std::vector<float> RunF32(Client& c, const std::string& mlir, const std::vector<std::vector<float>>& inputs,
                          const std::vector<std::vector<int64_t>>& dims) {
  auto exe = c.Compile(mlir);
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<Buffer*> args;
  for (size_t i = 0; i < inputs.size(); ++i) {
    bufs.push_back(c.BufferFromHost(inputs[i].data(), DType::kF32, dims[i], c.addressable_devices()[0]));
    args.push_back(bufs.back().get());
  }
  auto out = exe->Execute(args);
  std::vector<float> host(static_cast<size_t>(out[0]->element_count()));
  out[0]->ToHost(host.data(), host.size() * sizeof(float));
  return host;
}

void CheckMatmul(Client& c) {
  const int m = 3, k = 5, n = 4;
  std::vector<float> a(m * k), b(k * n);
  for (int i = 0; i < m * k; ++i) a[i] = std::sin(0.3f * i);
  for (int i = 0; i < k * n; ++i) b[i] = std::cos(0.7f * i);
  const std::string mlir =
      "func.func public @main(%a: tensor<3x5xf32>, %b: tensor<5x4xf32>) -> tensor<3x4xf32> {\n"
      "  %0 = \"stablehlo.dot_general\"(%a, %b) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], "
      "rhs_contracting_dimensions = [0]>} : (tensor<3x5xf32>, tensor<5x4xf32>) -> tensor<3x4xf32>\n"
      "  return %0 : tensor<3x4xf32>\n}\n";
  auto got = RunF32(c, mlir, {a, b}, {{m, k}, {k, n}});
  double worst = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double want = 0;
      for (int t = 0; t < k; ++t) want += a[i * k + t] * b[t * n + j];
      worst = std::max(worst, std::abs(want - got[i * n + j]));
    }
  Report("matmul (dot_general)", worst < 1e-3, "max error " + std::to_string(worst));
}

void CheckReduce(Client& c) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = 0.25f * i - 3;
  const std::string mlir =
      "func.func public @main(%x: tensor<4x8xf32>) -> tensor<4xf32> {\n"
      "  %z = stablehlo.constant dense<0.0> : tensor<f32>\n"
      "  %0 = stablehlo.reduce(%x init: %z) applies stablehlo.add across dimensions = [1] : (tensor<4x8xf32>, tensor<f32>) -> tensor<4xf32>\n"
      "  return %0 : tensor<4xf32>\n}\n";
  auto got = RunF32(c, mlir, {x}, {{4, 8}});
  bool ok = true;
  for (int r = 0; r < 4; ++r) {
    float want = 0;
    for (int k = 0; k < 8; ++k) want += x[r * 8 + k];
    ok = ok && std::abs(want - got[r]) < 1e-4;
  }
  Report("reduce-sum", ok);
}

void CheckDonation(Client& c) {
  const std::string mlir =
      "func.func public @main(%x: tensor<8xf32> {tf.aliasing_output = 0 : i32}) -> tensor<8xf32> {\n"
      "  %one = stablehlo.constant dense<1.0> : tensor<8xf32>\n"
      "  %0 = stablehlo.add %x, %one : tensor<8xf32>\n  return %0 : tensor<8xf32>\n}\n";
  auto exe = c.Compile(mlir);
  std::vector<float> v(8, 2.0f);
  auto x = c.BufferFromHost(v.data(), DType::kF32, {8}, c.addressable_devices()[0]);
  auto out = exe->Execute({x.get()});
  std::vector<float> host(8);
  out[0]->ToHost(host.data(), 32);
  Report("donation (tf.aliasing_output)", x->donated() && host[0] == 3.0f && host[7] == 3.0f);
}

void CheckBf16(Client& c) {
  const std::string mlir =
      "func.func public @main(%x: tensor<4xbf16>) -> tensor<4xf32> {\n"
      "  %0 = stablehlo.convert %x : (tensor<4xbf16>) -> tensor<4xf32>\n  return %0 : tensor<4xf32>\n}\n";
  auto exe = c.Compile(mlir);
  const uint16_t bits[4] = {0x3fc0, 0xc010, 0x4049, 0x0000};
  auto x = c.BufferFromHost(bits, DType::kBF16, {4}, c.addressable_devices()[0]);
  auto out = exe->Execute({x.get()});
  float host[4];
  out[0]->ToHost(host, sizeof(host));
  Report("bf16 -> f32", host[0] == 1.5f && host[1] == -2.25f && host[2] == 3.140625f && host[3] == 0.0f);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: pjrt_run PLUGIN.so [program.mlir]\n");
    return 2;
  }
  try {
    auto plugin = Plugin::Load(argv[1]);
    std::printf("plugin %s: PJRT C API %d.%d (dflash written for %d.%d)\n", argv[1], plugin->api_major(), plugin->api_minor(),
                kAbiMajor, kAbiMinor);
    for (auto& [k, v] : plugin->attributes()) std::printf("  attribute %s = %s\n", k.c_str(), v.c_str());
    auto client = Client::Create(plugin);
    std::printf("platform %s (%s)\n", client->platform_name().c_str(), client->platform_version().c_str());
    for (auto& d : client->devices()) {
      std::printf("  device %lld: %s\n", static_cast<long long>(d.id), d.kind.c_str());
      for (auto& [k, v] : d.memory_stats) std::printf("    %s = %lld\n", k.c_str(), static_cast<long long>(v));
    }
    if (argc > 2) {
      std::ifstream in(argv[2]);
      std::stringstream ss;
      ss << in.rdbuf();
      client->Compile(ss.str());
      Report("compile given program", true, argv[2]);
    }
    CheckMatmul(*client);
    CheckReduce(*client);
    CheckDonation(*client);
    CheckBf16(*client);
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%d checks failed\n", failures);
  return failures == 0 ? 0 : 1;
}
