// Executables: compile options of an SPMD program, multi-device execution, serialization
// (see client.h).
#include <exception>

#include "pjrt/client.h"

namespace dflash::pjrt {

extern std::atomic<int64_t> g_live_executables;  // client.cc

namespace {

std::string Dims(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace

namespace {

// Protocol-buffer wire format, the little of it CompileOptionsProto needs.
std::string Varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  return s += static_cast<char>(v);
}
std::string IntField(int field, uint64_t v) { return Varint(static_cast<uint64_t>(field) << 3) + Varint(v); }
std::string BytesField(int field, const std::string& b) { return Varint((static_cast<uint64_t>(field) << 3) | 2) + Varint(b.size()) + b; }

}  // namespace

std::string CompileOptions(const std::vector<int64_t>& device_ids) {
  if (device_ids.empty()) throw std::invalid_argument("compile options: no devices");
  const uint64_t n = device_ids.size();
  // xla.DeviceAssignmentProto: replica_count 1, computation_count n, one ComputationDevice per
  // partition holding its device id (replica_device_ids, packed).
  std::string assignment = IntField(1, 1) + IntField(2, n);
  for (int64_t id : device_ids) assignment += BytesField(3, BytesField(1, Varint(static_cast<uint64_t>(id))));
  // xla.ExecutableBuildOptionsProto: num_replicas (4), num_partitions (5), use_spmd_partitioning
  // (6), device_assignment (9), use_shardy_partitioner (19) — the fields JAX sets for jit.
  std::string build = IntField(4, 1) + IntField(5, n) + BytesField(9, assignment);
  if (n > 1) build += IntField(6, 1) + IntField(19, 1);
  return BytesField(3, build);  // CompileOptionsProto.executable_build_options
}


LoadedExecutable::LoadedExecutable(std::shared_ptr<const Client> client, PJRT_LoadedExecutable* handle)
    : client_(std::move(client)), handle_(handle) {
  ++g_live_executables;
  const Plugin& plugin = *client_->plugin();
  auto ge = DFLASH_ARGS(PJRT_LoadedExecutable_GetExecutable_Args, executable);
  ge.loaded_executable = handle_;
  Check(plugin.api(), PJRT_CALL(plugin, PJRT_LoadedExecutable_GetExecutable, &ge), "PJRT_LoadedExecutable_GetExecutable");
  auto no = DFLASH_ARGS(PJRT_Executable_NumOutputs_Args, num_outputs);
  no.executable = ge.executable;
  PJRT_Error* err = PJRT_CALL(plugin, PJRT_Executable_NumOutputs, &no);
  auto d = DFLASH_ARGS(PJRT_Executable_Destroy_Args, executable);
  d.executable = ge.executable;
  plugin.api()->PJRT_Executable_Destroy(&d);
  Check(plugin.api(), err, "PJRT_Executable_NumOutputs");
  num_outputs_ = static_cast<int>(no.num_outputs);
  auto ad = DFLASH_ARGS(PJRT_LoadedExecutable_AddressableDevices_Args, num_addressable_devices);
  ad.executable = handle_;
  Check(plugin.api(), PJRT_CALL(plugin, PJRT_LoadedExecutable_AddressableDevices, &ad), "PJRT_LoadedExecutable_AddressableDevices");
  devices_.assign(ad.addressable_devices, ad.addressable_devices + ad.num_addressable_devices);
  if (devices_.empty()) throw std::runtime_error("executable has no addressable device");
}

LoadedExecutable::~LoadedExecutable() {
  auto args = DFLASH_ARGS(PJRT_LoadedExecutable_Destroy_Args, executable);
  args.executable = handle_;
  if (PJRT_Error* e = client_->api()->PJRT_LoadedExecutable_Destroy(&args)) {
    auto d = DFLASH_ARGS(PJRT_Error_Destroy_Args, error);
    d.error = e;
    client_->api()->PJRT_Error_Destroy(&d);
  }
  --g_live_executables;
}

void LoadedExecutable::CheckArgs(const std::vector<Buffer*>& args, PJRT_Device* device) const {
  for (size_t i = 0; i < args.size(); ++i)
    if (!args[i]) throw std::invalid_argument("execute: input " + std::to_string(i) + " is null");
  if (!signature_) return;
  const auto& sig = *signature_;
  if (args.size() != sig.size())
    throw std::invalid_argument("execute: the program expects " + std::to_string(sig.size()) + " input buffers, got " +
                                std::to_string(args.size()));
  for (size_t i = 0; i < args.size(); ++i) {
    // An SPMD program's parameters are global shapes; each device gets its shard, whose shape
    // the caller (engine/invocation.h) checks against the program's shardings.
    if (devices_.size() == 1 && (args[i]->dims() != sig[i].dims || args[i]->dtype() != sig[i].dtype))
      throw std::invalid_argument("execute: input " + std::to_string(i) + " is " + DTypeName(args[i]->dtype()) +
                                  Dims(args[i]->dims()) + " but the program expects " + DTypeName(sig[i].dtype) +
                                  Dims(sig[i].dims));
    if (devices_.size() > 1 && args[i]->dtype() != sig[i].dtype)
      throw std::invalid_argument("execute: input " + std::to_string(i) + " is " + DTypeName(args[i]->dtype()) +
                                  " but the program expects " + DTypeName(sig[i].dtype));
    if (devices_.size() > 1 && args[i]->device() != device)
      throw std::invalid_argument("execute: input " + std::to_string(i) + " lives on device " +
                                  std::to_string(client_->device_id(args[i]->device())) + ", not on device " +
                                  std::to_string(client_->device_id(device)) + " where its shard is needed");
  }
}

std::vector<std::unique_ptr<Buffer>> LoadedExecutable::Execute(const std::vector<Buffer*>& args, const std::vector<int64_t>& keep) {
  if (devices_.size() != 1)
    throw std::invalid_argument("execute: the program runs on " + std::to_string(devices_.size()) +
                                " devices; give each its arguments (ExecuteOnDevices)");
  auto out = ExecuteOnDevices({args}, keep);
  return std::move(out.at(0));
}

std::vector<std::vector<std::unique_ptr<Buffer>>> LoadedExecutable::ExecuteOnDevices(const std::vector<std::vector<Buffer*>>& args,
                                                                                   const std::vector<int64_t>& keep) {
  const Plugin& plugin = *client_->plugin();
  const size_t n = devices_.size();
  if (args.size() != n)
    throw std::invalid_argument("execute: the program runs on " + std::to_string(n) + " device(s), got arguments for " +
                                std::to_string(args.size()));
  std::vector<std::vector<PJRT_Buffer*>> in(n);
  for (size_t d = 0; d < n; ++d) {
    CheckArgs(args[d], devices_[d]);
    if (args[d].size() != args[0].size()) throw std::invalid_argument("execute: devices got different numbers of arguments");
    for (Buffer* b : args[d]) in[d].push_back(b->handle());  // throws for donated buffers
  }
  std::vector<std::vector<PJRT_Buffer*>> out(n, std::vector<PJRT_Buffer*>(static_cast<size_t>(num_outputs_), nullptr));
  std::vector<PJRT_Buffer* const*> arg_lists(n);
  std::vector<PJRT_Buffer**> out_lists(n);
  for (size_t d = 0; d < n; ++d) arg_lists[d] = in[d].data(), out_lists[d] = out[d].data();
  std::vector<PJRT_Event*> done(n, nullptr);

  auto opts = DFLASH_ARGS(PJRT_ExecuteOptions, num_hlo_output_callbacks);
  opts.non_donatable_input_indices = keep.data();
  opts.num_non_donatable_input_indices = keep.size();
  auto ex = DFLASH_ARGS(PJRT_LoadedExecutable_Execute_Args, execute_device);
  ex.executable = handle_;
  ex.options = &opts;
  ex.argument_lists = arg_lists.data();
  ex.num_devices = n;
  ex.num_args = args[0].size();
  ex.output_lists = out_lists.data();
  ex.device_complete_events = done.data();
  Check(plugin.api(), PJRT_CALL(plugin, PJRT_LoadedExecutable_Execute, &ex), "execute");

  // Own the outputs first, so they are released even if the execution reports an error.
  std::vector<std::vector<std::unique_ptr<Buffer>>> result(n);
  bool complete = true;
  for (size_t d = 0; d < n; ++d)
    for (PJRT_Buffer* b : out[d]) {
      if (b) result[d].push_back(std::make_unique<Buffer>(client_, b));
      else complete = false;
    }
  for (const auto& list : args)
    for (Buffer* a : list) a->MarkDonatedIfDeleted();
  // Await every device's event (destroying each), then report the first error.
  std::exception_ptr first_error;
  for (size_t d = 0; d < n; ++d) {
    try {
      AwaitAndDestroy(plugin, done[d], "execute");
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
  if (!complete) throw std::runtime_error("execute: the plugin returned fewer outputs than the program has");
  return result;
}

std::string LoadedExecutable::Serialize() const {
  const Plugin& plugin = *client_->plugin();
  auto ge = DFLASH_ARGS(PJRT_LoadedExecutable_GetExecutable_Args, executable);
  ge.loaded_executable = handle_;
  Check(plugin.api(), PJRT_CALL(plugin, PJRT_LoadedExecutable_GetExecutable, &ge), "PJRT_LoadedExecutable_GetExecutable");
  auto args = DFLASH_ARGS(PJRT_Executable_Serialize_Args, serialized_executable_deleter);
  args.executable = ge.executable;
  PJRT_Error* err = PJRT_CALL(plugin, PJRT_Executable_Serialize, &args);
  std::string bytes;
  if (!err) bytes.assign(args.serialized_bytes, args.serialized_bytes_size);
  if (args.serialized_executable && args.serialized_executable_deleter) args.serialized_executable_deleter(args.serialized_executable);
  auto d = DFLASH_ARGS(PJRT_Executable_Destroy_Args, executable);
  d.executable = ge.executable;
  plugin.api()->PJRT_Executable_Destroy(&d);
  Check(plugin.api(), err, "serialize executable");
  return bytes;
}

}  // namespace dflash::pjrt
