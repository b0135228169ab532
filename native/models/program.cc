// Program signatures: see program.h.
#include "models/program.h"

#include <stdexcept>

namespace dflash::models {

int Program::input_index(std::string_view name) const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].name == name) return static_cast<int>(i);
  return -1;
}

int Program::output_index(std::string_view name) const {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].name == name) return static_cast<int>(i);
  return -1;
}

pjrt::DType FromHlo(hlo::DType t) {
  switch (t) {
    case hlo::DType::kF32: return pjrt::DType::kF32;
    case hlo::DType::kBF16: return pjrt::DType::kBF16;
    case hlo::DType::kF16: return pjrt::DType::kF16;
    case hlo::DType::kS32: return pjrt::DType::kS32;
    case hlo::DType::kS64: return pjrt::DType::kS64;
    case hlo::DType::kU8: return pjrt::DType::kU8;
    case hlo::DType::kU32: return pjrt::DType::kU32;
    case hlo::DType::kPred: return pjrt::DType::kPred;
    case hlo::DType::kS8: return pjrt::DType::kS8;
    case hlo::DType::kF8E4M3FN: return pjrt::DType::kF8E4M3FN;
  }
  throw std::invalid_argument("program: unknown element type");
}

hlo::DType ToHlo(pjrt::DType t) {
  switch (t) {
    case pjrt::DType::kF32: return hlo::DType::kF32;
    case pjrt::DType::kBF16: return hlo::DType::kBF16;
    case pjrt::DType::kF16: return hlo::DType::kF16;
    case pjrt::DType::kS32: return hlo::DType::kS32;
    // The narrow storage types of quantized weights (models/quant.h).
    case pjrt::DType::kS8: return hlo::DType::kS8;
    case pjrt::DType::kU8: return hlo::DType::kU8;
    case pjrt::DType::kF8E4M3FN: return hlo::DType::kF8E4M3FN;
    default: break;
  }
  throw std::invalid_argument(std::string("models: unsupported element type ") + pjrt::DTypeName(t));
}

Program FinishProgram(hlo::Builder& b, const std::vector<NamedResult>& results) {
  Program p;
  for (const auto& in : b.params()) {
    if (in.name.empty()) throw std::invalid_argument("program: every input needs a name");
    p.inputs.push_back({in.name, in.shape, FromHlo(in.dtype), in.sharding});
  }
  std::vector<hlo::Value> values;
  std::vector<hlo::Sharding> shardings;
  for (const auto& r : results) {
    if (p.output_index(r.name) >= 0) throw std::invalid_argument("program: duplicate output name " + r.name);
    p.outputs.push_back({r.name, r.value.shape, FromHlo(r.value.dtype), r.sharding});
    values.push_back(r.value);
    shardings.push_back(r.sharding);
  }
  p.partitions = b.partitions();
  p.mlir = b.Finish(values, shardings);
  return p;
}

}  // namespace dflash::models
