// Uploads checkpoint tensors to the device. Each safetensors file is mapped with mmap and every
// tensor is handed to PJRT straight from the mapping, so the host never holds a second full copy
// of the weights. Names, shapes and dtypes are checked against the model's weight specs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/weight_spec.h"
#include "pjrt/client.h"

namespace dflash::engine {

// Where one tensor lives: `file` bytes [offset, offset + nbytes), as read from the header by lib/.
struct TensorSource {
  std::string name;
  std::string file;
  int64_t offset = 0;
  int64_t nbytes = 0;
  std::string dtype;  // safetensors spelling: F32, BF16, F16
  std::vector<int64_t> shape;
};

struct LoadProgress {
  int64_t tensors = 0, total_tensors = 0, bytes = 0, total_bytes = 0;
};

// Returns device buffers in `specs` order. Throws std::runtime_error naming the tensor (and file)
// for a missing tensor, a wrong shape, an unsupported dtype or a file shorter than its header says.
std::vector<std::unique_ptr<pjrt::Buffer>> UploadWeights(
    pjrt::Client& client, const std::vector<models::WeightSpec>& specs,
    const std::vector<TensorSource>& sources, const std::function<void(const LoadProgress&)>& progress);

}  // namespace dflash::engine
