// Meshes and arrays: see mesh.h.
#include "pjrt/mesh.h"

#include <stdexcept>

namespace dflash::pjrt {
namespace {

std::string Dims(const std::vector<int64_t>& d) {
  std::string s;
  for (auto x : d) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "[" + s + "]";
}

}  // namespace

// ------------------------------------------------------------------------- Array

Array::Array(std::vector<std::unique_ptr<Buffer>> shards, int split) : shards_(std::move(shards)), split_(split) {
  if (shards_.empty()) throw std::invalid_argument("array: no shards");
  dims_ = shards_[0]->dims();
  for (const auto& s : shards_)
    if (s->dims() != dims_ || s->dtype() != shards_[0]->dtype())
      throw std::invalid_argument("array: shards of different shapes " + Dims(dims_) + " and " + Dims(s->dims()));
  if (split_ >= 0) {
    if (split_ >= static_cast<int>(dims_.size())) throw std::invalid_argument("array: split dimension past the rank of " + Dims(dims_));
    dims_[split_] *= static_cast<int64_t>(shards_.size());
  }
}

int64_t Array::byte_size() const {
  int64_t n = ByteSize(dtype());
  for (int64_t d : dims_) n *= d;
  return n;
}

bool Array::donated() const {
  for (const auto& s : shards_)
    if (!s->donated()) return false;
  return true;
}

void Array::MarkDonatedIfDeleted() {
  for (auto& s : shards_) s->MarkDonatedIfDeleted();
}

// ------------------------------------------------------------------------- Mesh

Mesh::Mesh(std::shared_ptr<Client> client, std::vector<PJRT_Device*> devices) : client_(std::move(client)), devices_(std::move(devices)) {
  if (devices_.empty()) throw std::invalid_argument("mesh: no devices");
  for (PJRT_Device* d : devices_) ids_.push_back(client_->device_id(d));
  for (size_t i = 0; i < ids_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (ids_[i] == ids_[j]) throw std::invalid_argument("mesh: device " + std::to_string(ids_[i]) + " given twice");
  compile_options_ = CompileOptions(ids_);
}

Mesh Mesh::OfIds(std::shared_ptr<Client> client, const std::vector<int64_t>& ids) {
  std::vector<PJRT_Device*> devices;
  for (int64_t id : ids) devices.push_back(client->device_by_id(id));
  return Mesh(std::move(client), std::move(devices));
}

std::string Mesh::Key() const {
  std::string ids;
  for (int64_t id : ids_) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  return "tp" + std::to_string(ids_.size()) + " devices " + ids;
}

std::unique_ptr<LoadedExecutable> Mesh::Compile(const std::string& program) const { return client_->Compile(program, compile_options_); }

std::unique_ptr<LoadedExecutable> Mesh::Deserialize(const std::string& bytes) const {
  return client_->DeserializeAndLoad(bytes, compile_options_);
}

std::unique_ptr<Array> Mesh::Upload(const void* data, DType dtype, const std::vector<int64_t>& dims) const {
  std::vector<std::unique_ptr<Buffer>> shards;
  for (PJRT_Device* d : devices_) shards.push_back(client_->BufferFromHost(data, dtype, dims, d));
  return std::make_unique<Array>(std::move(shards), -1);
}

std::unique_ptr<Array> Mesh::UploadShards(const std::vector<const void*>& parts, DType dtype, const std::vector<int64_t>& shard_dims,
                                          int split) const {
  if (parts.size() != devices_.size())
    throw std::invalid_argument("mesh upload: " + std::to_string(parts.size()) + " parts for " + std::to_string(devices_.size()) + " devices");
  std::vector<std::unique_ptr<Buffer>> shards;
  for (size_t i = 0; i < parts.size(); ++i) shards.push_back(client_->BufferFromHost(parts[i], dtype, shard_dims, devices_[i]));
  return std::make_unique<Array>(std::move(shards), split);
}

std::vector<std::unique_ptr<Array>> Mesh::Run(LoadedExecutable& exe, const std::vector<Array*>& args, const std::vector<int>& out_splits,
                                              const std::vector<int64_t>& keep) const {
  if (exe.devices() != devices_) throw std::logic_error("mesh: the executable was compiled for other devices (" + Key() + " expected)");
  const size_t n = devices_.size();
  std::vector<std::vector<Buffer*>> per_device(n);
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i]) throw std::invalid_argument("execute: input " + std::to_string(i) + " is null");
    if (args[i]->num_shards() != n)
      throw std::invalid_argument("execute: input " + std::to_string(i) + " has " + std::to_string(args[i]->num_shards()) +
                                  " shards for a mesh of " + std::to_string(n) + " devices");
    for (size_t d = 0; d < n; ++d) per_device[d].push_back(&args[i]->shard(d));
  }
  auto out = exe.ExecuteOnDevices(per_device, keep);
  if (static_cast<size_t>(exe.num_outputs()) != out_splits.size())
    throw std::logic_error("mesh: " + std::to_string(out_splits.size()) + " output shardings for " + std::to_string(exe.num_outputs()) +
                           " outputs");
  std::vector<std::unique_ptr<Array>> arrays;
  for (size_t o = 0; o < out_splits.size(); ++o) {
    std::vector<std::unique_ptr<Buffer>> shards;
    for (size_t d = 0; d < n; ++d) shards.push_back(std::move(out[d][o]));
    arrays.push_back(std::make_unique<Array>(std::move(shards), out_splits[o]));
  }
  return arrays;
}

}  // namespace dflash::pjrt
