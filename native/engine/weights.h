// Uploads checkpoint tensors to the device, tensor by tensor: each tensor's byte range of its
// safetensors file is mapped on its own, handed to PJRT (or converted into one tensor-sized host
// buffer when the engine's dtype differs from the file's; a GGUF block-quantized tensor is
// expanded to f32 there first) and unmapped again, so the host never
// holds a second copy of the model and file pages do not pile up in the process's RSS.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/float_codec.h"  // EncodeFloats / DecodeFloats for the weights' callers
#include "models/weight_spec.h"
#include "pjrt/client.h"
#include "pjrt/mesh.h"

namespace dflash::engine {

// Where one tensor lives: `file` bytes [offset, offset + nbytes), as read from the header by lib/.
struct TensorSource {
  std::string name;
  std::string file;
  int64_t offset = 0;
  int64_t nbytes = 0;
  std::string dtype;  // safetensors spelling: F32, BF16, F16; GGUF block formats: Q8_0, Q4_K, ... (gguf_blocks.h)
  std::vector<int64_t> shape;
  // Where the file's data section starts: -1 for a safetensors file (read from its header); a
  // GGUF file's is given by lib/gguf.ts, which parsed its header.
  int64_t data_start = -1;
  // > 0: the rows are in llama.cpp's interleaved-RoPE order over this many heads (a GGUF Llama
  // q/k projection); the loader restores Hugging Face's order (gguf_blocks.h UnpermuteRopeRows).
  int64_t rope_heads = 0;
};

struct LoadProgress {
  std::string model;  // "target" | "drafter"
  int64_t tensors = 0, total_tensors = 0, bytes = 0, total_bytes = 0;
};

// Device weights by the name programs bind them with (models/program.h), each laid out over the
// mesh as its spec says.
using WeightMap = std::map<std::string, std::unique_ptr<pjrt::Array>>;


// The dtype most of the sources' bytes use (F32 / BF16 / F16).
pjrt::DType CheckpointDtype(const std::vector<TensorSource>& sources);

// The GGUF block format (Q4_K, ...) most of the sources' bytes use, or "" when most are floats.
std::string QuantizedFormat(const std::vector<TensorSource>& sources);

// Checks every source before a byte is mapped, so a bad range never reaches the upload whoever
// built the list (lib/safetensors.ts checks the same from the header; this keeps the native API
// safe on its own): each name once, offset and size non-negative, the range inside its file's data section (after
// the 8-byte length and the JSON header, not past the end), no two ranges of one file overlapping,
// dimensions non-negative, and nbytes == product(shape) * element size for every dtype with a
// known size. Throws std::runtime_error naming the tensor and the file.
void CheckTensorSources(const std::vector<TensorSource>& sources);

// Uploads every spec (converted to spec.dtype) into `out` under `prefix + spec.name`, over the
// mesh's devices as spec.sharding says: a split tensor sends each device only its part, read
// from the mapped file (directly when it is one contiguous run in the right dtype, else through a
// staging buffer of that part's size alone); a spec made of parts (spec.parts, or MoE experts "*")
// is assembled the same way.
// Missing or misshapen parts are named as the checkpoint's tensors. Throws
// std::runtime_error naming the tensor (and file) for a missing tensor, a wrong shape, an
// unsupported dtype or a file shorter than its header says. Returns the names of source tensors
// no spec uses (the caller warns about them).
std::vector<std::string> UploadWeights(const pjrt::Mesh& mesh, const std::vector<models::WeightSpec>& specs,
                                       const std::vector<TensorSource>& sources, const std::string& prefix, WeightMap& out,
                                       const std::function<void(const LoadProgress&)>& progress, LoadProgress base);

}  // namespace dflash::engine
