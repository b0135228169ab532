// Tensor-parallel layouts: see parallel.h.
#include "models/parallel.h"

#include "models/quant.h"

#include <stdexcept>

namespace dflash::models {
namespace {

void Divides(int64_t devices, int64_t n, const std::string& what, const std::string& model) {
  if (n % devices != 0)
    throw std::invalid_argument("tensorParallel " + std::to_string(devices) + " does not divide the " + model + "'s " + std::to_string(n) +
                                " " + what);
}

TensorParallel Layout(int64_t devices, int64_t heads, int64_t kv_heads, int64_t vocab, const std::string& model) {
  if (devices < 1) throw std::invalid_argument("tensorParallel must be at least 1, got " + std::to_string(devices));
  TensorParallel p;
  p.devices = devices;
  Divides(devices, heads, "attention heads (num_attention_heads)", model);
  if (kv_heads % devices == 0) {
    p.kv_heads = kv_heads;
  } else if (devices % kv_heads == 0) {
    p.kv_heads = devices;
    p.kv_repeat = devices / kv_heads;
  } else {
    throw std::invalid_argument("tensorParallel " + std::to_string(devices) + " neither divides nor is a multiple of the " + model + "'s " +
                                std::to_string(kv_heads) + " key/value heads (num_key_value_heads)");
  }
  p.split_vocab = devices > 1 && vocab % devices == 0;
  return p;
}

}  // namespace

TensorParallel TargetParallel(const TargetConfig& c, int64_t devices) {
  TensorParallel p = Layout(devices, c.num_heads, c.num_kv_heads, c.vocab_size, "target");
  if (c.hybrid()) {
    // The Gated DeltaNet splits by heads: each device keeps its key heads and the value heads
    // that read them (models/gated_delta.h).
    Divides(devices, c.linear.key_heads, "linear attention key heads (linear_num_key_heads)", "target");
    Divides(devices, c.linear.value_heads, "linear attention value heads (linear_num_value_heads)", "target");
  }
  bool dense = false;
  for (int64_t l = 0; l < c.num_layers; ++l) dense |= !c.sparse(l);
  if (dense) Divides(devices, c.intermediate_size, "MLP columns (intermediate_size)", "target");
  if (c.moe.num_experts > 0) Divides(devices, c.moe.intermediate, "expert MLP columns (moe_intermediate_size)", "target");
  return p;
}

TensorParallel DrafterParallel(const DrafterConfig& d, const TargetConfig& t, int64_t devices, bool replicated) {
  if (replicated) {
    if (devices < 1) throw std::invalid_argument("tensorParallel must be at least 1, got " + std::to_string(devices));
    TensorParallel p;
    p.devices = devices, p.kv_heads = d.num_kv_heads, p.replicated = true;
    p.split_vocab = devices > 1 && t.vocab_size % devices == 0;  // the target's embedding and lm_head
    return p;
  }
  TensorParallel p = Layout(devices, d.num_heads, d.num_kv_heads, t.vocab_size, "drafter");
  Divides(devices, d.intermediate_size, "MLP columns (intermediate_size)", "drafter");
  return p;
}

int64_t BytesPerDevice(const std::vector<WeightSpec>& specs, int64_t devices) {
  int64_t total = 0;
  for (const auto& s : StoredSpecs(specs, devices)) {  // narrow weights: their payload and scales
    int64_t bytes = pjrt::ByteSize(s.dtype);
    for (int64_t d : s.shape) bytes *= d;
    total += devices > 1 && !s.sharding.replicated() ? bytes / devices : bytes;
  }
  return total;
}

hlo::Value RepeatHeads(hlo::Builder& b, const hlo::Value& x, int64_t repeat) {
  if (repeat == 1) return x;
  const int64_t rank = x.rank(), kvh = x.dim(-2), hd = x.dim(-1);
  hlo::Shape wide(x.shape.begin(), x.shape.end() - 2);
  wide.insert(wide.end(), {kvh, repeat, hd});
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < rank - 2; ++i) dims.push_back(i);
  dims.insert(dims.end(), {rank - 2, rank});  // kvh -> its own axis, hd -> last; repeat broadcasts
  hlo::Shape out(x.shape.begin(), x.shape.end() - 2);
  out.insert(out.end(), {kvh * repeat, hd});
  return b.Reshape(b.BroadcastInDim(x, wide, dims), out);
}

}  // namespace dflash::models
