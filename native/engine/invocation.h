// One execution of a compiled program with its inputs bound by name and its outputs taken by
// name (never by position), every one an Array over the program's mesh laid out as the
// program's signature says (a mismatch is an error naming the input). Counts executions, device
// seconds and the KV-cache donations that a plugin failed to honour.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/program_cache.h"
#include "engine/weights.h"

namespace dflash::engine {

struct DeviceCounters {
  int64_t executions = 0;
  int64_t host_transfers = 0;
  int64_t cache_copies = 0;  // executions where a donated cache was copied instead of updated in place
  double device_seconds = 0;
};

class Outputs {
 public:
  Outputs(ProgramRef p, std::vector<std::unique_ptr<pjrt::Array>> arrays);
  // Moves the named output out; throws std::logic_error naming the program and output when the
  // program has no such output or it was taken already.
  std::unique_ptr<pjrt::Array> Take(const std::string& name);
  bool Has(const std::string& name) const;

 private:
  ProgramRef program_;  // held: the cache does not unload a program while its outputs are read
  std::vector<std::unique_ptr<pjrt::Array>> arrays_;
};

class Invocation {
 public:
  Invocation(ProgramRef p, const pjrt::Mesh& mesh);
  // Throws std::logic_error naming the input when the array's shape or layout is not the program's.
  Invocation& Bind(const std::string& name, pjrt::Array* array);
  // Binds every input whose name is a key of `weights`.
  Invocation& BindWeights(const WeightMap& weights);
  // Binds `array` under `name` and remembers that the program donates it: after Run() the
  // array must be marked donated, else the plugin copied it (counted in cache_copies).
  Invocation& BindDonated(const std::string& name, pjrt::Array* array);
  // Runs and waits; throws std::logic_error naming every unbound input.
  Outputs Run(DeviceCounters& counters);

 private:
  ProgramRef holder_;  // held while it runs: the cache never unloads a program in use
  const CompiledProgram& program_;
  const pjrt::Mesh& mesh_;
  std::vector<pjrt::Array*> args_;
  std::vector<pjrt::Array*> donated_;
};

// Blocking copy of a whole replicated array to the host (from its first device), counted as one
// host transfer.
template <typename T>
std::vector<T> CopyToHost(pjrt::Array& a, DeviceCounters& counters);

}  // namespace dflash::engine
