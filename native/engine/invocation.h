// One execution of a compiled program with its inputs bound by name and its outputs taken by
// name (never by position). Counts executions, device seconds and the KV-cache donations that
// a plugin failed to honour.
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
  Outputs(const CompiledProgram* p, std::vector<std::unique_ptr<pjrt::Buffer>> buffers);
  // Moves the named output out; throws std::logic_error naming the program and output when the
  // program has no such output or it was taken already.
  std::unique_ptr<pjrt::Buffer> Take(const std::string& name);
  bool Has(const std::string& name) const;

 private:
  const CompiledProgram* program_;
  std::vector<std::unique_ptr<pjrt::Buffer>> buffers_;
};

class Invocation {
 public:
  explicit Invocation(const CompiledProgram& p);
  Invocation& Bind(const std::string& name, pjrt::Buffer* buffer);
  // Binds every input whose name is a key of `weights`.
  Invocation& BindWeights(const WeightMap& weights);
  // Binds `buffer` under `name` and remembers that the program donates it: after Run() the
  // buffer must be marked donated, else the plugin copied it (counted in cache_copies).
  Invocation& BindDonated(const std::string& name, pjrt::Buffer* buffer);
  // Runs and waits; throws std::logic_error naming every unbound input.
  Outputs Run(DeviceCounters& counters);

 private:
  const CompiledProgram& program_;
  std::vector<pjrt::Buffer*> args_;
  std::vector<pjrt::Buffer*> donated_;
};

// Blocking copy of a whole buffer to the host, counted as one host transfer.
template <typename T>
std::vector<T> CopyToHost(pjrt::Buffer& b, DeviceCounters& counters);

}  // namespace dflash::engine
