// Named program invocation: see invocation.h.
#include "engine/invocation.h"

#include <chrono>
#include <stdexcept>

namespace dflash::engine {

Outputs::Outputs(const CompiledProgram* p, std::vector<std::unique_ptr<pjrt::Buffer>> buffers)
    : program_(p), buffers_(std::move(buffers)) {}

bool Outputs::Has(const std::string& name) const {
  const int i = program_->output_index(name);
  return i >= 0 && buffers_[i] != nullptr;
}

std::unique_ptr<pjrt::Buffer> Outputs::Take(const std::string& name) {
  const int i = program_->output_index(name);
  if (i < 0) throw std::logic_error("program '" + program_->key + "' has no output " + name);
  if (!buffers_[i]) throw std::logic_error("output " + name + " of program '" + program_->key + "' was taken already");
  return std::move(buffers_[i]);
}

Invocation::Invocation(const CompiledProgram& p) : program_(p), args_(p.inputs.size(), nullptr) {}

Invocation& Invocation::Bind(const std::string& name, pjrt::Buffer* buffer) {
  const int i = program_.input_index(name);
  if (i < 0) throw std::logic_error("program '" + program_.key + "' has no input " + name);
  args_[i] = buffer;
  return *this;
}

Invocation& Invocation::BindDonated(const std::string& name, pjrt::Buffer* buffer) {
  donated_.push_back(buffer);
  return Bind(name, buffer);
}

Invocation& Invocation::BindWeights(const WeightMap& weights) {
  for (size_t i = 0; i < program_.inputs.size(); ++i) {
    auto it = weights.find(program_.inputs[i].name);
    if (it != weights.end()) args_[i] = it->second.get();
  }
  return *this;
}

Outputs Invocation::Run(DeviceCounters& counters) {
  std::string missing;
  for (size_t i = 0; i < args_.size(); ++i)
    if (!args_[i]) missing += (missing.empty() ? "" : ", ") + program_.inputs[i].name;
  if (!missing.empty()) throw std::logic_error("program '" + program_.key + "': unbound inputs " + missing);
  const auto t0 = std::chrono::steady_clock::now();
  auto out = program_.exe->Execute(args_, {});
  counters.device_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++counters.executions;
  for (pjrt::Buffer* b : donated_)
    if (!b->donated()) ++counters.cache_copies;
  return Outputs(&program_, std::move(out));
}

template <typename T>
std::vector<T> CopyToHost(pjrt::Buffer& b, DeviceCounters& counters) {
  std::vector<T> host(static_cast<size_t>(b.element_count()));
  const auto t0 = std::chrono::steady_clock::now();
  b.ToHost(host.data(), host.size() * sizeof(T));
  counters.device_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++counters.host_transfers;
  return host;
}

template std::vector<int32_t> CopyToHost<int32_t>(pjrt::Buffer&, DeviceCounters&);
template std::vector<float> CopyToHost<float>(pjrt::Buffer&, DeviceCounters&);
template std::vector<uint16_t> CopyToHost<uint16_t>(pjrt::Buffer&, DeviceCounters&);

}  // namespace dflash::engine
