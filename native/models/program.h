// A built model program: StableHLO module text plus its named signature. Callers bind input
// buffers and read results by these names (engine/invocation.h), never by position, so adding
// an input or an output to a program cannot silently shift another one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hlo/builder.h"
#include "pjrt/client.h"  // pjrt::DType

namespace dflash::models {

struct IoSpec {
  std::string name;
  std::vector<int64_t> shape;     // the logical (global) shape
  pjrt::DType dtype;
  hlo::Sharding sharding = {};    // how it lies over the program's devices (hlo/builder.h)
};

// A program result: its name, value and sharding.
struct NamedResult {
  std::string name;
  hlo::Value value;
  hlo::Sharding sharding = {};
};

struct Program {
  std::string mlir;              // module text for PJRT_Client_Compile ("mlir" format)
  std::vector<IoSpec> inputs;    // in parameter order
  std::vector<IoSpec> outputs;   // in result order
  int64_t partitions = 1;        // devices the program runs on (an SPMD program when > 1)
  int input_index(std::string_view name) const;   // -1 when absent
  int output_index(std::string_view name) const;  // -1 when absent
};

pjrt::DType FromHlo(hlo::DType t);
hlo::DType ToHlo(pjrt::DType t);  // f32/bf16/f16/s32 and the narrow weight types s8/u8/f8e4m3fn; throws otherwise

// Finishes `b` into a Program whose outputs carry the given names. Every parameter of `b` must
// have been declared with Builder::Input (a name).
Program FinishProgram(hlo::Builder& b, const std::vector<NamedResult>& results);

}  // namespace dflash::models
