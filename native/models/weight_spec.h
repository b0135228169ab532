// One weight tensor a model program takes as a parameter: HF checkpoint name, shape and the
// dtype it is uploaded in (the checkpoint's; programs convert to f32 in-graph).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pjrt/client.h"  // pjrt::DType

namespace dflash::models {

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  pjrt::DType dtype;
};

}  // namespace dflash::models
