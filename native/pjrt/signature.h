// Reads the parameter types of `func.func public @main(...)` from StableHLO text, so execute()
// can reject a wrong arity, shape or element type with a clear message before the plugin sees
// it (XLA:CPU, for one, accepts an s32[4] buffer for an f32[4] parameter: same byte size).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dflash::pjrt {

enum class DType;

struct ParamType {
  std::vector<int64_t> dims;
  DType dtype;
};

// nullopt when the text is not MLIR we can read (bytecode, another entry name, unknown types).
std::optional<std::vector<ParamType>> ParseMainSignature(const std::string& mlir);

}  // namespace dflash::pjrt
