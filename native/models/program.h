// A built model program: StableHLO module text plus what the caller needs to run it.
#pragma once
#include <string>
#include <vector>

namespace dflash::models {

struct Program {
  std::string mlir;                       // module text for PJRT_Client_Compile ("mlir" format)
  int num_outputs = 0;
  std::vector<std::string> output_names;  // e.g. {"k_cache", "v_cache", "argmax", "hidden", "accept"}
  int num_params = 0;
};

}  // namespace dflash::models
