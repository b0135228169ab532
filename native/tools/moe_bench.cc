// moe_bench: times the Qwen3-MoE block (models/moe.h) through a PJRT plugin, computing every
// expert (kDense) against computing only the selected ones (kGathered), side by side in one run,
// at several token counts. Expert weights are bf16 (as checkpoints ship them) and converted to f32
// in-graph, or f32 with --f32.
//   moe_bench /path/to/plugin.so [--f32] [hidden intermediate experts top_k [tokens...]]
// Default: a Qwen3-30B-A3B layer (H 2048, I 768, E 128, k 8) scaled down 4x in H and I.
// Prints a markdown table: median ms of `reps` timed runs after one warm-up, per impl.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hlo/builder.h"
#include "models/moe.h"
#include "pjrt/client.h"
#include "pjrt/plugin.h"

using namespace dflash;

namespace {

std::vector<float> ToF32(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t j = 0; j < bits.size(); ++j) {
    const uint32_t u = uint32_t(bits[j]) << 16;
    std::memcpy(&out[j], &u, 4);
  }
  return out;
}

std::vector<uint16_t> RandomBf16(size_t n, float std, std::mt19937& gen) {
  std::normal_distribution<float> d(0.0f, std);
  std::vector<uint16_t> out(n);
  for (auto& v : out) {
    const float f = d(gen);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    v = static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
  }
  return out;
}

double MedianMs(pjrt::Client& c, const models::MoeConfig& cfg, int64_t h, int64_t tokens, models::MoeImpl impl,
                hlo::DType wt, const std::vector<pjrt::Buffer*>& weights, int reps) {
  hlo::Builder b;
  const hlo::Value x = b.Parameter({tokens, h}, hlo::DType::kF32);
  const int64_t e = cfg.num_experts, i = cfg.intermediate;
  const models::MoeWeights w{b.Parameter({e, h}, wt), b.Parameter({e, i, h}, wt), b.Parameter({e, i, h}, wt),
                             b.Parameter({e, h, i}, wt)};
  auto exe = c.Compile(b.Finish({models::MoeMlp(b, x, w, cfg, impl)}));
  std::mt19937 gen(7);
  std::normal_distribution<float> d;
  std::vector<float> xs(tokens * h);
  for (auto& v : xs) v = d(gen);
  auto bx = c.BufferFromHost(xs.data(), pjrt::DType::kF32, {tokens, h}, c.addressable_devices()[0]);
  std::vector<pjrt::Buffer*> args{bx.get()};
  args.insert(args.end(), weights.begin(), weights.end());
  std::vector<float> host(tokens * h);
  std::vector<double> ms;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = exe->Execute(args);
    out[0]->ToHost(host.data(), host.size() * sizeof(float));
    const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) ms.push_back(dt);  // run 0 warms up
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: moe_bench PLUGIN.so [hidden intermediate experts top_k [tokens...]]\n");
    return 2;
  }
  int first = 2;
  const bool f32 = argc > 2 && std::string(argv[2]) == "--f32";
  if (f32) ++first;
  int64_t h = 512, inter = 192, experts = 128, k = 8;
  std::vector<int64_t> token_counts{1, 4, 8, 16, 64, 256};
  if (argc >= first + 4) {
    h = std::atoll(argv[first]), inter = std::atoll(argv[first + 1]), experts = std::atoll(argv[first + 2]), k = std::atoll(argv[first + 3]);
    if (argc > first + 4) token_counts.assign({});
    for (int a = first + 4; a < argc; ++a) token_counts.push_back(std::atoll(argv[a]));
  }
  const models::MoeConfig cfg{experts, k, inter, true};
  auto client = pjrt::Client::Create(pjrt::Plugin::Load(argv[1]));
  std::mt19937 gen(1);
  const auto router = RandomBf16(experts * h, 0.5f, gen), gate = RandomBf16(experts * inter * h, 0.05f, gen),
             up = RandomBf16(experts * inter * h, 0.05f, gen), down = RandomBf16(experts * h * inter, 0.05f, gen);
  const auto upload = [&](const std::vector<uint16_t>& bits, const std::vector<int64_t>& dims) {
    if (!f32) return client->BufferFromHost(bits.data(), pjrt::DType::kBF16, dims, client->addressable_devices()[0]);
    const std::vector<float> wide = ToF32(bits);
    return client->BufferFromHost(wide.data(), pjrt::DType::kF32, dims, client->addressable_devices()[0]);
  };
  auto br = upload(router, {experts, h}), bg = upload(gate, {experts, inter, h});
  auto bu = upload(up, {experts, inter, h}), bd = upload(down, {experts, h, inter});
  const hlo::DType wt = f32 ? hlo::DType::kF32 : hlo::DType::kBF16;
  const std::vector<pjrt::Buffer*> weights{br.get(), bg.get(), bu.get(), bd.get()};
  std::printf("MoE block H %lld, I %lld, E %lld, k %lld, %s experts (%.0f MB), %s %s\n\n", (long long)h, (long long)inter,
              (long long)experts, (long long)k, f32 ? "f32" : "bf16", 3.0 * experts * inter * h * (f32 ? 4 : 2) / 1e6, client->platform_name().c_str(),
              client->platform_version().c_str());
  std::printf("| tokens T | T*k vs E | all experts (ms) | selected experts (ms) | dense / gathered | kAuto picks |\n");
  std::printf("|---:|---|---:|---:|---:|---|\n");
  for (int64_t t : token_counts) {
    const int reps = t <= 16 ? 9 : 5;
    const double dense = MedianMs(*client, cfg, h, t, models::MoeImpl::kDense, wt, weights, reps);
    const double gathered = MedianMs(*client, cfg, h, t, models::MoeImpl::kGathered, wt, weights, reps);
    const bool auto_gathered = models::ChooseMoeImpl(t, cfg) == models::MoeImpl::kGathered;
    std::printf("| %lld | %lld %s %lld | %.2f | %.2f | %.2fx | %s |\n", (long long)t, (long long)(t * k),
                t * k < experts ? "<" : ">=", (long long)experts, dense, gathered, dense / gathered,
                auto_gathered ? "selected" : "all");
    std::fflush(stdout);
  }
  return 0;
}
