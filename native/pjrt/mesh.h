// A mesh: the devices one SPMD program runs on (a tensor-parallel group), and Arrays — logical
// tensors laid out over those devices. An Array is either replicated (every device holds all of
// it) or split along one dimension into equal parts, part i on device i (the program's
// `sdy.sharding` of that value names the same dimension). With one device, an Array is one Buffer.
//
//   Mesh{devices d0..dn-1}
//    ├─ Compile(program)        one executable over all n devices (partition i on d_i)
//    ├─ Upload(host)            a replicated Array: n host-to-device copies
//    └─ Run(exe, args, splits)  every device runs its partition; outputs re-assembled as Arrays
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pjrt/client.h"

namespace dflash::pjrt {

class Array {
 public:
  // `shards[i]` lives on mesh device i; split = -1 (replicated: every shard is the whole array)
  // or the dimension the shards divide (each has dims()[split] / n of it).
  Array(std::vector<std::unique_ptr<Buffer>> shards, int split);
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  const std::vector<int64_t>& dims() const { return dims_; }  // the logical (global) shape
  DType dtype() const { return shards_.at(0)->dtype(); }
  int split() const { return split_; }
  size_t num_shards() const { return shards_.size(); }
  Buffer& shard(size_t i) const { return *shards_.at(i); }
  int64_t byte_size() const;                   // of the logical array
  // What device i allocated for its shard, as the plugin reports it (PJRT_Buffer_OnDeviceSizeInBytes).
  int64_t device_bytes(size_t i) const { return shards_.at(i)->on_device_bytes(); }
  bool donated() const;                        // an execution took it (all its shards)
  void MarkDonatedIfDeleted();

 private:
  std::vector<std::unique_ptr<Buffer>> shards_;
  int split_;
  std::vector<int64_t> dims_;
};

class Mesh {
 public:
  Mesh(std::shared_ptr<Client> client, std::vector<PJRT_Device*> devices);
  // The devices with these ids (throws naming the ids the client has).
  static Mesh OfIds(std::shared_ptr<Client> client, const std::vector<int64_t>& ids);

  size_t size() const { return devices_.size(); }
  const std::vector<PJRT_Device*>& devices() const { return devices_; }
  const std::vector<int64_t>& ids() const { return ids_; }
  Client& client() const { return *client_; }
  const std::shared_ptr<Client>& client_ptr() const { return client_; }
  // "tp2 devices 2,3": what a compiled executable is bound to.
  std::string Key() const;
  // Serialized CompileOptionsProto placing partition i on devices()[i].
  const std::string& compile_options() const { return compile_options_; }

  std::unique_ptr<LoadedExecutable> Compile(const std::string& program) const;
  std::unique_ptr<LoadedExecutable> Deserialize(const std::string& bytes) const;
  // The same host data on every device.
  std::unique_ptr<Array> Upload(const void* data, DType dtype, const std::vector<int64_t>& dims) const;
  // Per-device host parts of an array split along `split` (parts[i]: device i's, shard_dims each).
  std::unique_ptr<Array> UploadShards(const std::vector<const void*>& parts, DType dtype, const std::vector<int64_t>& shard_dims,
                                      int split) const;
  // Runs `exe` (compiled by Compile()) with every argument's shards on their devices; output o
  // is assembled with split out_splits[o]. `keep`: argument indices not to donate.
  std::vector<std::unique_ptr<Array>> Run(LoadedExecutable& exe, const std::vector<Array*>& args, const std::vector<int>& out_splits,
                                          const std::vector<int64_t>& keep = {}) const;

 private:
  std::shared_ptr<Client> client_;
  std::vector<PJRT_Device*> devices_;
  std::vector<int64_t> ids_;
  std::string compile_options_;
};

}  // namespace dflash::pjrt
