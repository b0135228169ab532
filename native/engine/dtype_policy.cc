// The dtype policy: see dtype_policy.h.
#include "engine/dtype_policy.h"

#include <stdexcept>

namespace dflash::engine {

pjrt::DType ParseDtypeName(const std::string& name) {
  if (name == "f32") return pjrt::DType::kF32;
  if (name == "bf16") return pjrt::DType::kBF16;
  if (name == "f16") return pjrt::DType::kF16;
  throw std::invalid_argument("dtype must be f32, bf16 or f16, got '" + name + "'");
}

DtypeChoice ChooseDtypes(const std::string& platform, pjrt::DType checkpoint, const std::string& dtype,
                         const std::string& kv_dtype, bool batch_invariant, const std::string& quantized) {
  const bool cpu = platform == "cpu" || platform == "host";
  const bool tpu = platform == "tpu";
  DtypeChoice c;
  const std::string from = quantized.empty() ? std::string(pjrt::DTypeName(checkpoint)) + " checkpoint" : quantized + " GGUF checkpoint";
  if (dtype != "auto") {
    c.numerics.dtype = ParseDtypeName(dtype);
    c.reason = from + ", dtype '" + dtype + "' requested";
  } else if (!quantized.empty()) {
    c.numerics.dtype = cpu ? pjrt::DType::kF32 : pjrt::DType::kBF16;
    c.reason = from + " expanded at load to " + pjrt::DTypeName(c.numerics.dtype) + " on " + platform;
  } else if (checkpoint == pjrt::DType::kF16 && cpu) {
    c.numerics.dtype = pjrt::DType::kF32;
    c.reason = from + " computed in f32 on " + platform + " (XLA:CPU has no fast f16 matmul)";
  } else if (checkpoint == pjrt::DType::kF16 && tpu) {
    c.numerics.dtype = pjrt::DType::kBF16;
    c.reason = from + " computed in bf16 on tpu";
  } else {
    c.numerics.dtype = checkpoint;
    c.reason = from + " kept in " + pjrt::DTypeName(checkpoint) + " on " + platform;
  }
  c.numerics.kv_dtype = kv_dtype == "auto" ? c.numerics.dtype : ParseDtypeName(kv_dtype);
  // XLA:CPU computes each row's dot the same way for any row count from 2 (f32) or 3 (16-bit)
  // on: padding to that makes results independent of the batch (bench/NOTES.md).
  // Without batch invariance f32 keeps its faster one-row path; 16-bit pads anyway (speed).
  if (cpu) c.numerics.min_dot_rows = c.numerics.dtype == pjrt::DType::kF32 ? (batch_invariant ? 2 : 1) : 3;
  // The attention loop's chunk (models/paged_attention.h): on XLA:CPU 64 slots beat 256 at the
  // Qwen3-0.6B shape up to 1024 tokens of context (bench/NOTES.md); accelerators pay per iteration.
  c.numerics.key_chunk_slots = cpu ? 64 : 512;
  if (cpu && !batch_invariant && c.numerics.dtype == pjrt::DType::kF32) c.reason += " (not batch-invariant)";
  if (c.numerics.kv_dtype != c.numerics.dtype) c.reason += ", KV cache in " + std::string(pjrt::DTypeName(c.numerics.kv_dtype));
  return c;
}

bool QuantizedExpandAtLoad(const std::string& how, const std::string& platform) {
  return how == "dequantize" || (how == "auto" && platform == "cpu");
}

}  // namespace dflash::engine
