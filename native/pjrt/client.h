// RAII over the PJRT objects dflash uses: Client, Buffer (device memory) and LoadedExecutable.
// Each owns its PJRT handle and destroys it exactly once; buffers and executables keep their
// client alive. All calls block the calling thread (event waits included), so the addon only
// calls them from worker threads. Live-object counters support leak tests.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "pjrt/plugin.h"
#include "pjrt/signature.h"

namespace dflash::pjrt {

enum class DType { kF32, kBF16, kF16, kS32, kS64, kU8, kPred, kU32, kS8, kF8E4M3FN };
int64_t ByteSize(DType t);
const char* DTypeName(DType t);  // "f32", "bf16", ...
PJRT_Buffer_Type ToPjrt(DType t);
DType FromPjrt(PJRT_Buffer_Type t);  // throws for types dflash does not handle

struct NamedOption {
  std::string name;
  std::variant<std::string, int64_t, bool, double> value;
};

struct DeviceInfo {
  int64_t id = 0;
  std::string kind, debug_string;
  bool addressable = true;
  std::map<std::string, int64_t> memory_stats;  // empty where the plugin offers none
};

struct LiveCountsT {
  int64_t clients, buffers, executables;
};
LiveCountsT LiveCounts();

class Client;

class Buffer {
 public:
  Buffer(std::shared_ptr<const Client> client, PJRT_Buffer* handle);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  PJRT_Device* device() const;         // where the buffer lives
  int64_t on_device_bytes() const;     // what the device allocated for it (byte_size() if the plugin cannot say)
  int64_t element_count() const;
  int64_t byte_size() const { return element_count() * ByteSize(dtype_); }
  // Blocking copy to host memory of exactly byte_size() bytes.
  void ToHost(void* dst, size_t dst_bytes);
  // True once an execution took this buffer as a donated input (its memory now belongs to an
  // output); the handle must not be used again.
  bool donated() const { return donated_; }
  void MarkDonatedIfDeleted();
  PJRT_Buffer* handle() const;

 private:
  std::shared_ptr<const Client> client_;
  PJRT_Buffer* handle_;
  DType dtype_;
  std::vector<int64_t> dims_;
  bool donated_ = false;
};

class LoadedExecutable {
 public:
  LoadedExecutable(std::shared_ptr<const Client> client, PJRT_LoadedExecutable* handle);
  ~LoadedExecutable();
  LoadedExecutable(const LoadedExecutable&) = delete;
  LoadedExecutable& operator=(const LoadedExecutable&) = delete;

  int num_outputs() const { return num_outputs_; }
  // The devices the executable runs on, in partition order (its compile options' device
  // assignment): argument list i of ExecuteOnDevices goes to devices()[i].
  const std::vector<PJRT_Device*>& devices() const { return devices_; }
  // Runs one SPMD program on every device of devices() and waits for all of them. args[d] are
  // device d's buffers (its shard of each argument, on that device); returns each device's
  // outputs. Inputs whose parameters are aliased to outputs are donated unless their index is in
  // `keep` (non-donatable).
  std::vector<std::vector<std::unique_ptr<Buffer>>> ExecuteOnDevices(const std::vector<std::vector<Buffer*>>& args,
                                                                     const std::vector<int64_t>& keep = {});
  // The one-device case: an executable compiled for a single device.
  std::vector<std::unique_ptr<Buffer>> Execute(const std::vector<Buffer*>& args, const std::vector<int64_t>& keep = {});
  std::string Serialize() const;
  // Parameter types read from the program text at compile time (absent after deserialize).
  void set_signature(std::optional<std::vector<ParamType>> sig) { signature_ = std::move(sig); }

 private:
  void CheckArgs(const std::vector<Buffer*>& args, PJRT_Device* device) const;
  std::shared_ptr<const Client> client_;
  PJRT_LoadedExecutable* handle_;
  int num_outputs_ = 0;
  std::vector<PJRT_Device*> devices_;
  std::optional<std::vector<ParamType>> signature_;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  static std::shared_ptr<Client> Create(std::shared_ptr<Plugin> plugin, const std::vector<NamedOption>& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::shared_ptr<Plugin>& plugin() const { return plugin_; }
  const PJRT_Api* api() const { return plugin_->api(); }
  PJRT_Client* handle() const { return handle_; }
  const std::string& platform_name() const { return platform_name_; }
  const std::string& platform_version() const { return platform_version_; }
  std::vector<DeviceInfo> devices() const;
  // The devices this process can use, in the plugin's order, and their ids (DeviceInfo::id).
  const std::vector<PJRT_Device*>& addressable_devices() const { return devices_; }
  int64_t device_id(PJRT_Device* device) const;  // throws for a device of another client
  PJRT_Device* device_by_id(int64_t id) const;   // throws naming the ids there are

  // Compiles StableHLO (MLIR text or bytecode) with a serialized CompileOptionsProto
  // (CompileOptions() below; empty: one replica, one partition, the plugin's default device).
  std::unique_ptr<LoadedExecutable> Compile(const std::string& program, const std::string& compile_options = "") const;
  // Loads a serialized executable; non-empty `compile_options` replace the ones it was compiled
  // with (another device assignment of the same shape: the same program on other devices).
  std::unique_ptr<LoadedExecutable> DeserializeAndLoad(const std::string& bytes, const std::string& compile_options = "") const;
  // Copies host data to `device`; returns once the host memory may be reused.
  std::unique_ptr<Buffer> BufferFromHost(const void* data, DType dtype, const std::vector<int64_t>& dims, PJRT_Device* device) const;

  Client(std::shared_ptr<Plugin> plugin, PJRT_Client* handle);

 private:
  std::shared_ptr<Plugin> plugin_;
  PJRT_Client* handle_;
  std::string platform_name_, platform_version_;
  std::vector<PJRT_Device*> devices_;
  std::vector<int64_t> device_ids_;
};

// Waits for and destroys an event, throwing its error (if any) as PjrtError.
void AwaitAndDestroy(const Plugin& plugin, PJRT_Event* event, const char* what);

// xla.CompileOptionsProto{executable_build_options{num_replicas: 1, num_partitions: 1}}.
std::string DefaultCompileOptions();
// An SPMD program over `device_ids` (partition i on device device_ids[i]): num_replicas 1,
// num_partitions = device_ids.size(), SPMD partitioning with the Shardy partitioner (the
// programs carry sdy shardings), that device assignment. One id: a one-device program placed there.
std::string CompileOptions(const std::vector<int64_t>& device_ids);

}  // namespace dflash::pjrt
