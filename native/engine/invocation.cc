// Named program invocation: see invocation.h.
#include "engine/invocation.h"

#include <chrono>
#include <stdexcept>

namespace dflash::engine {

namespace {

std::string Dims(const std::vector<int64_t>& d) {
  std::string s;
  for (auto x : d) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "[" + s + "]";
}

std::string Layout(int split) { return split < 0 ? "replicated" : "split along dim " + std::to_string(split); }

}  // namespace

Outputs::Outputs(ProgramRef p, std::vector<std::unique_ptr<pjrt::Array>> arrays)
    : program_(std::move(p)), arrays_(std::move(arrays)) {}

bool Outputs::Has(const std::string& name) const {
  const int i = program_->output_index(name);
  return i >= 0 && arrays_[i] != nullptr;
}

std::unique_ptr<pjrt::Array> Outputs::Take(const std::string& name) {
  const int i = program_->output_index(name);
  if (i < 0) throw std::logic_error("program '" + program_->key + "' has no output " + name);
  if (!arrays_[i]) throw std::logic_error("output " + name + " of program '" + program_->key + "' was taken already");
  return std::move(arrays_[i]);
}

Invocation::Invocation(ProgramRef p, const pjrt::Mesh& mesh)
    : holder_(std::move(p)), program_(*holder_), mesh_(mesh), args_(program_.inputs.size(), nullptr) {}

Invocation& Invocation::Bind(const std::string& name, pjrt::Array* array) {
  const int i = program_.input_index(name);
  if (i < 0) throw std::logic_error("program '" + program_.key + "' has no input " + name);
  const models::IoSpec& spec = program_.inputs[i];
  const int split = mesh_.size() > 1 ? spec.sharding.dim : -1;
  const int have = array->num_shards() > 1 ? array->split() : -1;
  if (array->dims() != spec.shape || array->dtype() != spec.dtype || array->num_shards() != mesh_.size() || have != split)
    throw std::logic_error("program '" + program_.key + "': input " + name + " is " + pjrt::DTypeName(array->dtype()) + Dims(array->dims()) +
                           " over " + std::to_string(array->num_shards()) + " device(s), " + Layout(have) + "; the program takes " +
                           pjrt::DTypeName(spec.dtype) + Dims(spec.shape) + " over " + std::to_string(mesh_.size()) + ", " + Layout(split));
  args_[i] = array;
  return *this;
}

Invocation& Invocation::BindDonated(const std::string& name, pjrt::Array* array) {
  donated_.push_back(array);
  return Bind(name, array);
}

Invocation& Invocation::BindWeights(const WeightMap& weights) {
  for (size_t i = 0; i < program_.inputs.size(); ++i) {
    auto it = weights.find(program_.inputs[i].name);
    if (it != weights.end()) Bind(it->first, it->second.get());
  }
  return *this;
}

Outputs Invocation::Run(DeviceCounters& counters) {
  std::string missing;
  for (size_t i = 0; i < args_.size(); ++i)
    if (!args_[i]) missing += (missing.empty() ? "" : ", ") + program_.inputs[i].name;
  if (!missing.empty()) throw std::logic_error("program '" + program_.key + "': unbound inputs " + missing);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> splits;
  for (const auto& o : program_.outputs) splits.push_back(mesh_.size() > 1 ? o.sharding.dim : -1);
  auto out = mesh_.Run(*program_.exe, args_, splits);
  counters.device_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++counters.executions;
  for (pjrt::Array* a : donated_)
    if (!a->donated()) ++counters.cache_copies;
  return Outputs(holder_, std::move(out));
}

template <typename T>
std::vector<T> CopyToHost(pjrt::Array& a, DeviceCounters& counters) {
  if (a.num_shards() > 1 && a.split() >= 0) throw std::logic_error("host copy of an array split over devices");
  pjrt::Buffer& b = a.shard(0);
  std::vector<T> host(static_cast<size_t>(b.element_count()));
  const auto t0 = std::chrono::steady_clock::now();
  b.ToHost(host.data(), host.size() * sizeof(T));
  counters.device_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++counters.host_transfers;
  return host;
}

template std::vector<int32_t> CopyToHost<int32_t>(pjrt::Array&, DeviceCounters&);
template std::vector<float> CopyToHost<float>(pjrt::Array&, DeviceCounters&);
template std::vector<uint16_t> CopyToHost<uint16_t>(pjrt::Array&, DeviceCounters&);

}  // namespace dflash::engine
