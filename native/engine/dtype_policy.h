// The compute-dtype policy: which dtype weights, activations and the KV cache use on a platform,
// decided once per engine from the checkpoint's dtype and the dtype / kvDtype options, and
// reported (engine.stats(), `dflash doctor`, the CLI) with the reason.
//   GPU/TPU: 16-bit checkpoints stay 16-bit (bf16 matmuls on the matrix units, f32 accumulation);
//            f16 checkpoints run in bf16 on TPU (no fast f16 there).
//   CPU:     the checkpoint's dtype. XLA:CPU's bf16 dots beat its f32 ones from two rows up on
//            the machines measured (bench/NOTES.md, "dot variants"), so bf16 stays bf16; f16
//            computes in f32 (XLA:CPU has no fast f16 path). Matmuls are padded to 2 (f32) / 3
//            (16-bit) rows, the row counts from which XLA:CPU's results no longer depend on the
//            number of rows: batch-invariant decoding (numerics.h).
//   Block-quantized GGUF checkpoints (expanded at load): bf16 on GPU/TPU, f32 on CPU (XLA:CPU's
//            one-row bf16 decode measured slower than f32 on SmolLM2-135M, bench/NOTES.md).
// Weights are converted at load, tensor by tensor, when the chosen dtype differs from the file's.
#pragma once
#include <string>

#include "models/numerics.h"

namespace dflash::engine {

struct DtypeChoice {
  models::Numerics numerics;
  std::string reason;  // one line for reports, e.g. "bf16 checkpoint kept in bf16 on cpu"
};

// platform: the PJRT platform name ("cpu", "cuda", "tpu", ...); checkpoint: the dtype most of the
// checkpoint's bytes use; dtype / kv_dtype: option values ("auto" or a dtype name); quantized: the
// GGUF block format most of the bytes use (Q4_K, ...), "" for a float checkpoint.
DtypeChoice ChooseDtypes(const std::string& platform, pjrt::DType checkpoint, const std::string& dtype,
                         const std::string& kv_dtype, bool batch_invariant = true, const std::string& quantized = "");

pjrt::DType ParseDtypeName(const std::string& name);  // "f32" | "bf16" | "f16"

// Engine option quantizedWeights: whether a quantized checkpoint is expanded at load on
// `platform` ("dequantize", or "auto" on the CPU plugin, where XLA:CPU would re-expand every
// weight every step: bench/NOTES.md) rather than kept narrow on the device.
bool QuantizedExpandAtLoad(const std::string& quantized_weights, const std::string& platform);

}  // namespace dflash::engine
