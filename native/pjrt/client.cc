// RAII runtime objects: see client.h.
#include "pjrt/client.h"

#include <cstring>
#include <exception>

namespace dflash::pjrt {
namespace {

std::atomic<int64_t> g_clients{0}, g_buffers{0};

std::string Dims(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace

std::atomic<int64_t> g_live_executables{0};  // counted by executable.cc

LiveCountsT LiveCounts() { return {g_clients.load(), g_buffers.load(), g_live_executables.load()}; }

int64_t ByteSize(DType t) {
  switch (t) {
    case DType::kF32: case DType::kS32: case DType::kU32: return 4;
    case DType::kBF16: case DType::kF16: return 2;
    case DType::kS64: return 8;
    case DType::kU8: case DType::kPred: case DType::kS8: case DType::kF8E4M3FN: return 1;
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kS32: return "s32";
    case DType::kS64: return "s64";
    case DType::kU8: return "u8";
    case DType::kPred: return "pred";
    case DType::kU32: return "u32";
    case DType::kS8: return "s8";
    case DType::kF8E4M3FN: return "f8e4m3fn";
  }
  return "?";
}

PJRT_Buffer_Type ToPjrt(DType t) {
  switch (t) {
    case DType::kF32: return PJRT_Buffer_Type_F32;
    case DType::kBF16: return PJRT_Buffer_Type_BF16;
    case DType::kF16: return PJRT_Buffer_Type_F16;
    case DType::kS32: return PJRT_Buffer_Type_S32;
    case DType::kS64: return PJRT_Buffer_Type_S64;
    case DType::kU8: return PJRT_Buffer_Type_U8;
    case DType::kPred: return PJRT_Buffer_Type_PRED;
    case DType::kU32: return PJRT_Buffer_Type_U32;
    case DType::kS8: return PJRT_Buffer_Type_S8;
    case DType::kF8E4M3FN: return PJRT_Buffer_Type_F8E4M3FN;
  }
  return PJRT_Buffer_Type_INVALID;
}

DType FromPjrt(PJRT_Buffer_Type t) {
  switch (t) {
    case PJRT_Buffer_Type_F32: return DType::kF32;
    case PJRT_Buffer_Type_BF16: return DType::kBF16;
    case PJRT_Buffer_Type_F16: return DType::kF16;
    case PJRT_Buffer_Type_S32: return DType::kS32;
    case PJRT_Buffer_Type_S64: return DType::kS64;
    case PJRT_Buffer_Type_U8: return DType::kU8;
    case PJRT_Buffer_Type_PRED: return DType::kPred;
    case PJRT_Buffer_Type_U32: return DType::kU32;
    case PJRT_Buffer_Type_S8: return DType::kS8;
    case PJRT_Buffer_Type_F8E4M3FN: return DType::kF8E4M3FN;
    default: throw std::runtime_error("PJRT buffer of element type " + std::to_string(int(t)) + " is not supported by dflash");
  }
}

std::string DefaultCompileOptions() {
  // field 3 (executable_build_options, length 4): field 4 num_replicas = 1, field 5 num_partitions = 1
  return std::string("\x1a\x04\x20\x01\x28\x01", 6);
}

void AwaitAndDestroy(const Plugin& plugin, PJRT_Event* event, const char* what) {
  if (!event) return;
  auto await = DFLASH_ARGS(PJRT_Event_Await_Args, event);
  await.event = event;
  PJRT_Error* err = PJRT_CALL(plugin, PJRT_Event_Await, &await);
  auto destroy = DFLASH_ARGS(PJRT_Event_Destroy_Args, event);
  destroy.event = event;
  PJRT_Error* derr = plugin.api()->PJRT_Event_Destroy(&destroy);
  Check(plugin.api(), err, what);
  Check(plugin.api(), derr, "PJRT_Event_Destroy");
}

// ------------------------------------------------------------------------- Client

Client::Client(std::shared_ptr<Plugin> plugin, PJRT_Client* handle) : plugin_(std::move(plugin)), handle_(handle) {
  ++g_clients;
}

std::shared_ptr<Client> Client::Create(std::shared_ptr<Plugin> plugin, const std::vector<NamedOption>& options) {
  std::vector<PJRT_NamedValue> values;
  values.reserve(options.size());
  for (const auto& o : options) {
    auto nv = DFLASH_ARGS(PJRT_NamedValue, value_size);
    nv.name = o.name.c_str();
    nv.name_size = o.name.size();
    nv.value_size = 1;
    if (auto* s = std::get_if<std::string>(&o.value)) {
      nv.type = PJRT_NamedValue_kString;
      nv.string_value = s->c_str();
      nv.value_size = s->size();
    } else if (auto* i = std::get_if<int64_t>(&o.value)) {
      nv.type = PJRT_NamedValue_kInt64;
      nv.int64_value = *i;
    } else if (auto* b = std::get_if<bool>(&o.value)) {
      nv.type = PJRT_NamedValue_kBool;
      nv.bool_value = *b;
    } else {
      nv.type = PJRT_NamedValue_kFloat;
      nv.float_value = static_cast<float>(std::get<double>(o.value));
    }
    values.push_back(nv);
  }
  auto args = DFLASH_ARGS(PJRT_Client_Create_Args, kv_try_get_user_arg);
  args.create_options = values.data();
  args.num_options = values.size();
  Check(plugin->api(), PJRT_CALL(*plugin, PJRT_Client_Create, &args), "PJRT_Client_Create");
  auto client = std::make_shared<Client>(plugin, args.client);

  auto name = DFLASH_ARGS(PJRT_Client_PlatformName_Args, platform_name_size);
  name.client = args.client;
  Check(plugin->api(), PJRT_CALL(*plugin, PJRT_Client_PlatformName, &name), "PJRT_Client_PlatformName");
  client->platform_name_.assign(name.platform_name, name.platform_name_size);
  auto ver = DFLASH_ARGS(PJRT_Client_PlatformVersion_Args, platform_version_size);
  ver.client = args.client;
  Check(plugin->api(), PJRT_CALL(*plugin, PJRT_Client_PlatformVersion, &ver), "PJRT_Client_PlatformVersion");
  client->platform_version_.assign(ver.platform_version, ver.platform_version_size);

  auto devs = DFLASH_ARGS(PJRT_Client_AddressableDevices_Args, num_addressable_devices);
  devs.client = args.client;
  Check(plugin->api(), PJRT_CALL(*plugin, PJRT_Client_AddressableDevices, &devs), "PJRT_Client_AddressableDevices");
  if (devs.num_addressable_devices == 0) throw std::runtime_error("PJRT client on " + plugin->path() + " has no addressable device");
  for (size_t i = 0; i < devs.num_addressable_devices; ++i) {
    PJRT_Device* dev = devs.addressable_devices[i];
    auto gd = DFLASH_ARGS(PJRT_Device_GetDescription_Args, device_description);
    gd.device = dev;
    Check(plugin->api(), PJRT_CALL(*plugin, PJRT_Device_GetDescription, &gd), "PJRT_Device_GetDescription");
    auto id = DFLASH_ARGS(PJRT_DeviceDescription_Id_Args, id);
    id.device_description = gd.device_description;
    Check(plugin->api(), PJRT_CALL(*plugin, PJRT_DeviceDescription_Id, &id), "PJRT_DeviceDescription_Id");
    client->devices_.push_back(dev);
    client->device_ids_.push_back(id.id);
  }
  return client;
}

Client::~Client() {
  auto args = DFLASH_ARGS(PJRT_Client_Destroy_Args, client);
  args.client = handle_;
  if (PJRT_Error* e = api()->PJRT_Client_Destroy(&args)) {
    auto d = DFLASH_ARGS(PJRT_Error_Destroy_Args, error);
    d.error = e;
    api()->PJRT_Error_Destroy(&d);  // nothing sensible to do with it in a destructor
  }
  --g_clients;
}

int64_t Client::device_id(PJRT_Device* device) const {
  for (size_t i = 0; i < devices_.size(); ++i)
    if (devices_[i] == device) return device_ids_[i];
  throw std::invalid_argument("device is not one of this client's addressable devices");
}

PJRT_Device* Client::device_by_id(int64_t id) const {
  std::string ids;
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (device_ids_[i] == id) return devices_[i];
    ids += (ids.empty() ? "" : ", ") + std::to_string(device_ids_[i]);
  }
  throw std::invalid_argument("no device with id " + std::to_string(id) + " on " + platform_name_ + " (devices: " + ids + ")");
}

std::vector<DeviceInfo> Client::devices() const {
  auto devs = DFLASH_ARGS(PJRT_Client_AddressableDevices_Args, num_addressable_devices);
  devs.client = handle_;
  Check(api(), PJRT_CALL(*plugin_, PJRT_Client_AddressableDevices, &devs), "PJRT_Client_AddressableDevices");
  std::vector<DeviceInfo> out;
  for (size_t i = 0; i < devs.num_addressable_devices; ++i) {
    PJRT_Device* dev = devs.addressable_devices[i];
    DeviceInfo info;
    auto gd = DFLASH_ARGS(PJRT_Device_GetDescription_Args, device_description);
    gd.device = dev;
    Check(api(), PJRT_CALL(*plugin_, PJRT_Device_GetDescription, &gd), "PJRT_Device_GetDescription");
    auto id = DFLASH_ARGS(PJRT_DeviceDescription_Id_Args, id);
    id.device_description = gd.device_description;
    Check(api(), PJRT_CALL(*plugin_, PJRT_DeviceDescription_Id, &id), "PJRT_DeviceDescription_Id");
    info.id = id.id;
    auto kind = DFLASH_ARGS(PJRT_DeviceDescription_Kind_Args, device_kind_size);
    kind.device_description = gd.device_description;
    Check(api(), PJRT_CALL(*plugin_, PJRT_DeviceDescription_Kind, &kind), "PJRT_DeviceDescription_Kind");
    info.kind.assign(kind.device_kind, kind.device_kind_size);
    auto dbg = DFLASH_ARGS(PJRT_DeviceDescription_DebugString_Args, debug_string_size);
    dbg.device_description = gd.device_description;
    Check(api(), PJRT_CALL(*plugin_, PJRT_DeviceDescription_DebugString, &dbg), "PJRT_DeviceDescription_DebugString");
    info.debug_string.assign(dbg.debug_string, dbg.debug_string_size);
    auto addr = DFLASH_ARGS(PJRT_Device_IsAddressable_Args, is_addressable);
    addr.device = dev;
    Check(api(), PJRT_CALL(*plugin_, PJRT_Device_IsAddressable, &addr), "PJRT_Device_IsAddressable");
    info.addressable = addr.is_addressable;
    // Memory statistics are optional: CPU plugins answer UNIMPLEMENTED.
    auto ms = DFLASH_ARGS(PJRT_Device_MemoryStats_Args, peak_allocated_bytes_is_set);
    ms.device = dev;
    try {
      Check(api(), PJRT_CALL(*plugin_, PJRT_Device_MemoryStats, &ms), "PJRT_Device_MemoryStats");
      info.memory_stats["bytes_in_use"] = ms.bytes_in_use;
      if (ms.peak_bytes_in_use_is_set) info.memory_stats["peak_bytes_in_use"] = ms.peak_bytes_in_use;
      if (ms.bytes_limit_is_set) info.memory_stats["bytes_limit"] = ms.bytes_limit;
      if (ms.num_allocs_is_set) info.memory_stats["num_allocs"] = ms.num_allocs;
    } catch (const std::exception&) {
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::unique_ptr<LoadedExecutable> Client::Compile(const std::string& program, const std::string& compile_options) const {
  const std::string opts = compile_options.empty() ? DefaultCompileOptions() : compile_options;
  std::string code = program;  // PJRT_Program.code is non-const
  auto prog = DFLASH_ARGS(PJRT_Program, format_size);
  prog.code = code.data();
  prog.code_size = code.size();
  static const char kFormat[] = "mlir";
  prog.format = kFormat;
  prog.format_size = 4;
  auto args = DFLASH_ARGS(PJRT_Client_Compile_Args, executable);
  args.client = handle_;
  args.program = &prog;
  args.compile_options = opts.data();
  args.compile_options_size = opts.size();
  Check(api(), PJRT_CALL(*plugin_, PJRT_Client_Compile, &args), "compile");
  auto exe = std::make_unique<LoadedExecutable>(shared_from_this(), args.executable);
  exe->set_signature(ParseMainSignature(program));
  return exe;
}

std::unique_ptr<LoadedExecutable> Client::DeserializeAndLoad(const std::string& bytes, const std::string& compile_options) const {
  auto args = DFLASH_ARGS(PJRT_Executable_DeserializeAndLoad_Args, load_options);
  args.client = handle_;
  args.serialized_executable = bytes.data();
  args.serialized_executable_size = bytes.size();
  if (!compile_options.empty()) {
    args.overridden_serialized_compile_options = compile_options.data();
    args.overridden_serialized_compile_options_size = compile_options.size();
  }
  Check(api(), PJRT_CALL(*plugin_, PJRT_Executable_DeserializeAndLoad, &args), "deserialize executable");
  return std::make_unique<LoadedExecutable>(shared_from_this(), args.loaded_executable);
}

std::unique_ptr<Buffer> Client::BufferFromHost(const void* data, DType dtype, const std::vector<int64_t>& dims,
                                               PJRT_Device* device) const {
  if (!device) throw std::invalid_argument("host-to-device copy: no device given");
  for (int64_t d : dims)
    if (d < 0) throw std::invalid_argument("buffer dims must be non-negative, got " + Dims(dims));
  auto args = DFLASH_ARGS(PJRT_Client_BufferFromHostBuffer_Args, buffer);
  args.client = handle_;
  args.data = data;
  args.type = ToPjrt(dtype);
  args.dims = dims.data();
  args.num_dims = dims.size();
  args.host_buffer_semantics = PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes;
  args.device = device;
  Check(api(), PJRT_CALL(*plugin_, PJRT_Client_BufferFromHostBuffer, &args), "host-to-device copy");
  auto buf = std::make_unique<Buffer>(shared_from_this(), args.buffer);
  AwaitAndDestroy(*plugin_, args.done_with_host_buffer, "host-to-device copy");
  return buf;
}

// ------------------------------------------------------------------------- Buffer

Buffer::Buffer(std::shared_ptr<const Client> client, PJRT_Buffer* handle) : client_(std::move(client)), handle_(handle) {
  ++g_buffers;
  const PJRT_Api* api = client_->api();
  auto et = DFLASH_ARGS(PJRT_Buffer_ElementType_Args, type);
  et.buffer = handle_;
  Check(api, PJRT_CALL(*client_->plugin(), PJRT_Buffer_ElementType, &et), "PJRT_Buffer_ElementType");
  dtype_ = FromPjrt(et.type);
  auto dm = DFLASH_ARGS(PJRT_Buffer_Dimensions_Args, num_dims);
  dm.buffer = handle_;
  Check(api, PJRT_CALL(*client_->plugin(), PJRT_Buffer_Dimensions, &dm), "PJRT_Buffer_Dimensions");
  dims_.assign(dm.dims, dm.dims + dm.num_dims);
}

Buffer::~Buffer() {
  auto args = DFLASH_ARGS(PJRT_Buffer_Destroy_Args, buffer);
  args.buffer = handle_;
  if (PJRT_Error* e = client_->api()->PJRT_Buffer_Destroy(&args)) {
    auto d = DFLASH_ARGS(PJRT_Error_Destroy_Args, error);
    d.error = e;
    client_->api()->PJRT_Error_Destroy(&d);
  }
  --g_buffers;
}

int64_t Buffer::element_count() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

PJRT_Device* Buffer::device() const {
  auto args = DFLASH_ARGS(PJRT_Buffer_Device_Args, device);
  args.buffer = handle_;
  Check(client_->api(), PJRT_CALL(*client_->plugin(), PJRT_Buffer_Device, &args), "PJRT_Buffer_Device");
  return args.device;
}

int64_t Buffer::on_device_bytes() const {
  auto args = DFLASH_ARGS(PJRT_Buffer_OnDeviceSizeInBytes_Args, on_device_size_in_bytes);
  args.buffer = handle_;
  if (PJRT_Error* e = client_->api()->PJRT_Buffer_OnDeviceSizeInBytes(&args)) {
    auto d = DFLASH_ARGS(PJRT_Error_Destroy_Args, error);
    d.error = e;
    client_->api()->PJRT_Error_Destroy(&d);
    return byte_size();
  }
  return static_cast<int64_t>(args.on_device_size_in_bytes);
}

PJRT_Buffer* Buffer::handle() const {
  if (donated_) throw std::runtime_error("buffer was donated to an execution and can no longer be used");
  return handle_;
}

void Buffer::MarkDonatedIfDeleted() {
  auto args = DFLASH_ARGS(PJRT_Buffer_IsDeleted_Args, is_deleted);
  args.buffer = handle_;
  if (PJRT_Error* e = client_->api()->PJRT_Buffer_IsDeleted(&args)) {
    Check(client_->api(), e, "PJRT_Buffer_IsDeleted");
  }
  if (args.is_deleted) donated_ = true;
}

void Buffer::ToHost(void* dst, size_t dst_bytes) {
  if (dst_bytes != static_cast<size_t>(byte_size()))
    throw std::invalid_argument("device-to-host copy of a " + std::string(DTypeName(dtype_)) + Dims(dims_) + " buffer needs " +
                                std::to_string(byte_size()) + " bytes, got " + std::to_string(dst_bytes));
  auto args = DFLASH_ARGS(PJRT_Buffer_ToHostBuffer_Args, event);
  args.src = handle();
  args.dst = dst;
  args.dst_size = dst_bytes;
  Check(client_->api(), PJRT_CALL(*client_->plugin(), PJRT_Buffer_ToHostBuffer, &args), "device-to-host copy");
  AwaitAndDestroy(*client_->plugin(), args.event, "device-to-host copy");
}

}  // namespace dflash::pjrt
