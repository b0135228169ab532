// dflash's own declarations of the PJRT C API: the subset of the plugin ABI that the addon uses,
// written from the published interface (openxla/xla xla/pjrt/c/pjrt_c_api.h) at one pinned
// minor version. Struct layouts are the ABI's (same field order and types, same names so they
// can be checked against the published header); comments are ours.
//
// Rules every call site follows:
//  - an args struct is zero-filled, `struct_size` = offsetof(last field) + sizeof(last field)
//    (`AbiSize<T>()` below; never sizeof, which may include tail padding the plugin does not
//    know) and `extension_start` = nullptr;
//  - a plugin rejects a struct_size smaller than its own, so layouts are complete at the pinned
//    version, and newer plugins accept our (older or equal) sizes only when they did not grow:
//    the loader requires plugin minor >= kAbiMinorMin and reports both versions otherwise;
//  - the function table only grows: a slot is used only if its offset < api->struct_size.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dflash::pjrt {

// Pinned: the PJRT C API 0.114 layout (header vendored by pedronahum/pypjrt at commit
// c511638, which mirrors openxla/xla). The XLA CPU plugin we test with reports 0.115 with an
// identical function table (PJRT_Api struct_size 1144).
inline constexpr int kAbiMajor = 0;
inline constexpr int kAbiMinor = 114;
// The oldest plugin whose args structs are no larger than ours for every call we make.
inline constexpr int kAbiMinorMin = 100;

}  // namespace dflash::pjrt

extern "C" {

typedef struct PJRT_Error PJRT_Error;
typedef struct PJRT_Event PJRT_Event;
typedef struct PJRT_Client PJRT_Client;
typedef struct PJRT_Device PJRT_Device;
typedef struct PJRT_Memory PJRT_Memory;
typedef struct PJRT_DeviceDescription PJRT_DeviceDescription;
typedef struct PJRT_Executable PJRT_Executable;
typedef struct PJRT_LoadedExecutable PJRT_LoadedExecutable;
typedef struct PJRT_Buffer PJRT_Buffer;
typedef struct PJRT_SerializedExecutable PJRT_SerializedExecutable;

typedef enum {
  PJRT_Error_Code_CANCELLED = 1, PJRT_Error_Code_UNKNOWN = 2, PJRT_Error_Code_INVALID_ARGUMENT = 3,
  PJRT_Error_Code_DEADLINE_EXCEEDED = 4, PJRT_Error_Code_NOT_FOUND = 5, PJRT_Error_Code_ALREADY_EXISTS = 6,
  PJRT_Error_Code_PERMISSION_DENIED = 7, PJRT_Error_Code_RESOURCE_EXHAUSTED = 8,
  PJRT_Error_Code_FAILED_PRECONDITION = 9, PJRT_Error_Code_ABORTED = 10, PJRT_Error_Code_OUT_OF_RANGE = 11,
  PJRT_Error_Code_UNIMPLEMENTED = 12, PJRT_Error_Code_INTERNAL = 13, PJRT_Error_Code_UNAVAILABLE = 14,
  PJRT_Error_Code_DATA_LOSS = 15, PJRT_Error_Code_UNAUTHENTICATED = 16
} PJRT_Error_Code;

typedef enum {
  PJRT_NamedValue_kString = 0, PJRT_NamedValue_kInt64, PJRT_NamedValue_kInt64List,
  PJRT_NamedValue_kFloat, PJRT_NamedValue_kBool
} PJRT_NamedValue_Type;

// Element types; only the values the addon maps are listed, the numbering is the ABI's.
typedef enum {
  PJRT_Buffer_Type_INVALID = 0, PJRT_Buffer_Type_PRED = 1, PJRT_Buffer_Type_S8 = 2,
  PJRT_Buffer_Type_S16 = 3, PJRT_Buffer_Type_S32 = 4, PJRT_Buffer_Type_S64 = 5, PJRT_Buffer_Type_U8 = 6,
  PJRT_Buffer_Type_U16 = 7, PJRT_Buffer_Type_U32 = 8, PJRT_Buffer_Type_U64 = 9, PJRT_Buffer_Type_F16 = 10,
  PJRT_Buffer_Type_F32 = 11, PJRT_Buffer_Type_F64 = 12, PJRT_Buffer_Type_BF16 = 13,
  PJRT_Buffer_Type_C64 = 14, PJRT_Buffer_Type_C128 = 15, PJRT_Buffer_Type_F8E5M2 = 16, PJRT_Buffer_Type_F8E4M3FN = 17
} PJRT_Buffer_Type;

typedef enum {
  PJRT_HostBufferSemantics_kImmutableOnlyDuringCall = 0,
  PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes = 1,
  PJRT_HostBufferSemantics_kImmutableZeroCopy = 2,
  PJRT_HostBufferSemantics_kMutableZeroCopy = 3
} PJRT_HostBufferSemantics;

struct PJRT_Api_Version { size_t struct_size; void* extension_start; int major_version; int minor_version; };

struct PJRT_Error_Destroy_Args { size_t struct_size; void* extension_start; PJRT_Error* error; };
struct PJRT_Error_Message_Args {
  size_t struct_size; void* extension_start; const PJRT_Error* error;
  const char* message; size_t message_size;  // out, lives as long as `error`
};
struct PJRT_Error_GetCode_Args { size_t struct_size; void* extension_start; const PJRT_Error* error; PJRT_Error_Code code; };

struct PJRT_NamedValue {
  size_t struct_size; void* extension_start;
  const char* name; size_t name_size;
  PJRT_NamedValue_Type type;
  union { const char* string_value; int64_t int64_value; const int64_t* int64_array_value; float float_value; bool bool_value; };
  size_t value_size;  // elements for strings/lists, 1 for scalars
};

struct PJRT_Plugin_Initialize_Args { size_t struct_size; void* extension_start; };
struct PJRT_Plugin_Attributes_Args {
  size_t struct_size; void* extension_start;
  const PJRT_NamedValue* attributes; size_t num_attributes;  // out, process lifetime
};

struct PJRT_Event_Destroy_Args { size_t struct_size; void* extension_start; PJRT_Event* event; };
struct PJRT_Event_Await_Args { size_t struct_size; void* extension_start; PJRT_Event* event; };

struct PJRT_Client_Create_Args {
  size_t struct_size; void* extension_start;
  const PJRT_NamedValue* create_options; size_t num_options;
  void* kv_get_callback; void* kv_get_user_arg; void* kv_put_callback; void* kv_put_user_arg;
  PJRT_Client* client;  // out
  void* kv_try_get_callback; void* kv_try_get_user_arg;
};
struct PJRT_Client_Destroy_Args { size_t struct_size; void* extension_start; PJRT_Client* client; };
struct PJRT_Client_PlatformName_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client; const char* platform_name; size_t platform_name_size;
};
struct PJRT_Client_PlatformVersion_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client; const char* platform_version; size_t platform_version_size;
};
struct PJRT_Client_AddressableDevices_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client;
  PJRT_Device* const* addressable_devices; size_t num_addressable_devices;  // out
};

struct PJRT_Program {
  size_t struct_size; void* extension_start;
  char* code; size_t code_size;       // MLIR text or bytecode for format "mlir"
  const char* format; size_t format_size;
};
struct PJRT_Client_Compile_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client; const PJRT_Program* program;
  const char* compile_options; size_t compile_options_size;  // serialized xla.CompileOptionsProto
  PJRT_LoadedExecutable* executable;  // out
};

struct PJRT_Client_BufferFromHostBuffer_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client;
  const void* data; PJRT_Buffer_Type type; const int64_t* dims; size_t num_dims;
  const int64_t* byte_strides; size_t num_byte_strides;  // null = dense major-to-minor
  PJRT_HostBufferSemantics host_buffer_semantics;
  PJRT_Device* device; PJRT_Memory* memory; void* device_layout;
  PJRT_Event* done_with_host_buffer;  // out
  PJRT_Buffer* buffer;                // out
};

struct PJRT_DeviceDescription_Id_Args { size_t struct_size; void* extension_start; PJRT_DeviceDescription* device_description; int id; };
struct PJRT_DeviceDescription_Kind_Args {
  size_t struct_size; void* extension_start; PJRT_DeviceDescription* device_description; const char* device_kind; size_t device_kind_size;
};
struct PJRT_DeviceDescription_DebugString_Args {
  size_t struct_size; void* extension_start; PJRT_DeviceDescription* device_description; const char* debug_string; size_t debug_string_size;
};
struct PJRT_Device_GetDescription_Args { size_t struct_size; void* extension_start; PJRT_Device* device; PJRT_DeviceDescription* device_description; };
struct PJRT_Device_IsAddressable_Args { size_t struct_size; void* extension_start; PJRT_Device* device; bool is_addressable; };
struct PJRT_Device_MemoryStats_Args {
  size_t struct_size; void* extension_start; PJRT_Device* device;
  int64_t bytes_in_use;
  int64_t peak_bytes_in_use; bool peak_bytes_in_use_is_set;
  int64_t num_allocs; bool num_allocs_is_set;
  int64_t largest_alloc_size; bool largest_alloc_size_is_set;
  int64_t bytes_limit; bool bytes_limit_is_set;
  int64_t bytes_reserved; bool bytes_reserved_is_set;
  int64_t peak_bytes_reserved; bool peak_bytes_reserved_is_set;
  int64_t bytes_reservable_limit; bool bytes_reservable_limit_is_set;
  int64_t largest_free_block_bytes; bool largest_free_block_bytes_is_set;
  int64_t pool_bytes; bool pool_bytes_is_set;
  int64_t peak_pool_bytes; bool peak_pool_bytes_is_set;
  int64_t peak_allocated_bytes; bool peak_allocated_bytes_is_set;
};

struct PJRT_Executable_Destroy_Args { size_t struct_size; void* extension_start; PJRT_Executable* executable; };
struct PJRT_Executable_NumOutputs_Args { size_t struct_size; void* extension_start; PJRT_Executable* executable; size_t num_outputs; };
struct PJRT_Executable_Serialize_Args {
  size_t struct_size; void* extension_start; const PJRT_Executable* executable;
  const char* serialized_bytes; size_t serialized_bytes_size;  // out, backed by serialized_executable
  PJRT_SerializedExecutable* serialized_executable;
  void (*serialized_executable_deleter)(PJRT_SerializedExecutable* exec);
};
struct PJRT_LoadedExecutable_Destroy_Args { size_t struct_size; void* extension_start; PJRT_LoadedExecutable* executable; };
struct PJRT_LoadedExecutable_GetExecutable_Args {
  size_t struct_size; void* extension_start; PJRT_LoadedExecutable* loaded_executable; PJRT_Executable* executable;
};
struct PJRT_ExecuteOptions {
  size_t struct_size; void* extension_start;
  void** send_callbacks; void** recv_callbacks; size_t num_send_ops; size_t num_recv_ops;
  int launch_id;
  const int64_t* non_donatable_input_indices; size_t num_non_donatable_input_indices;
  void* context; const char* call_location;
  size_t num_tasks; int* task_ids; int64_t* incarnation_ids; void* multi_slice_config;
  bool use_major_to_minor_data_layout_for_callbacks;
  void* hlo_output_callbacks; size_t num_hlo_output_callbacks;
};
struct PJRT_LoadedExecutable_Execute_Args {
  size_t struct_size; void* extension_start; PJRT_LoadedExecutable* executable; PJRT_ExecuteOptions* options;
  PJRT_Buffer* const* const* argument_lists;  // [num_devices][num_args]
  size_t num_devices; size_t num_args;
  PJRT_Buffer** const* output_lists;          // [num_devices][num_outputs], caller-allocated
  PJRT_Event** device_complete_events;        // [num_devices], optional
  PJRT_Device* execute_device;
};
struct PJRT_LoadedExecutable_AddressableDevices_Args {
  size_t struct_size; void* extension_start; PJRT_LoadedExecutable* executable;
  PJRT_Device* const* addressable_devices; size_t num_addressable_devices;  // out, the executable's lifetime
};
struct PJRT_Executable_DeserializeAndLoad_Args {
  size_t struct_size; void* extension_start; PJRT_Client* client;
  const char* serialized_executable; size_t serialized_executable_size;
  PJRT_LoadedExecutable* loaded_executable;  // out
  const char* overridden_serialized_compile_options; size_t overridden_serialized_compile_options_size;
  void* load_options;
};

struct PJRT_Buffer_Destroy_Args { size_t struct_size; void* extension_start; PJRT_Buffer* buffer; };
struct PJRT_Buffer_ElementType_Args { size_t struct_size; void* extension_start; PJRT_Buffer* buffer; PJRT_Buffer_Type type; };
struct PJRT_Buffer_Dimensions_Args { size_t struct_size; void* extension_start; PJRT_Buffer* buffer; const int64_t* dims; size_t num_dims; };
struct PJRT_Buffer_Device_Args { size_t struct_size; void* extension_start; PJRT_Buffer* buffer; PJRT_Device* device; };
struct PJRT_Buffer_OnDeviceSizeInBytes_Args {
  size_t struct_size; void* extension_start; PJRT_Buffer* buffer; size_t on_device_size_in_bytes;
};
struct PJRT_Buffer_IsDeleted_Args { size_t struct_size; void* extension_start; PJRT_Buffer* buffer; bool is_deleted; };
struct PJRT_Buffer_ToHostBuffer_Args {
  size_t struct_size; void* extension_start; PJRT_Buffer* src;
  void* host_layout; void* dst; size_t dst_size;
  PJRT_Event* event;  // out
};

typedef void* PJRT_Slot;  // a function-table entry the addon never calls
#define DFLASH_FN(name) PJRT_Error* (*name)(struct name##_Args*)

// The function table, in ABI order (slot index in comments).
struct PJRT_Api {
  size_t struct_size;
  void* extension_start;
  PJRT_Api_Version pjrt_api_version;
  void (*PJRT_Error_Destroy)(PJRT_Error_Destroy_Args*);   // 0
  void (*PJRT_Error_Message)(PJRT_Error_Message_Args*);   // 1
  DFLASH_FN(PJRT_Error_GetCode);                          // 2
  DFLASH_FN(PJRT_Plugin_Initialize);                      // 3
  DFLASH_FN(PJRT_Plugin_Attributes);                      // 4
  DFLASH_FN(PJRT_Event_Destroy);                          // 5
  PJRT_Slot PJRT_Event_IsReady, PJRT_Event_Error;         // 6, 7
  DFLASH_FN(PJRT_Event_Await);                            // 8
  PJRT_Slot PJRT_Event_OnReady;                           // 9
  DFLASH_FN(PJRT_Client_Create);                          // 10
  DFLASH_FN(PJRT_Client_Destroy);                         // 11
  DFLASH_FN(PJRT_Client_PlatformName);                    // 12
  PJRT_Slot PJRT_Client_ProcessIndex;                     // 13
  DFLASH_FN(PJRT_Client_PlatformVersion);                 // 14
  PJRT_Slot PJRT_Client_Devices;                          // 15
  DFLASH_FN(PJRT_Client_AddressableDevices);              // 16
  PJRT_Slot PJRT_Client_LookupDevice, PJRT_Client_LookupAddressableDevice, PJRT_Client_AddressableMemories;  // 17-19
  DFLASH_FN(PJRT_Client_Compile);                         // 20
  PJRT_Slot PJRT_Client_DefaultDeviceAssignment;          // 21
  DFLASH_FN(PJRT_Client_BufferFromHostBuffer);            // 22
  DFLASH_FN(PJRT_DeviceDescription_Id);                   // 23
  PJRT_Slot PJRT_DeviceDescription_ProcessIndex, PJRT_DeviceDescription_Attributes;  // 24, 25
  DFLASH_FN(PJRT_DeviceDescription_Kind);                 // 26
  DFLASH_FN(PJRT_DeviceDescription_DebugString);          // 27
  PJRT_Slot PJRT_DeviceDescription_ToString;              // 28
  DFLASH_FN(PJRT_Device_GetDescription);                  // 29
  DFLASH_FN(PJRT_Device_IsAddressable);                   // 30
  PJRT_Slot PJRT_Device_LocalHardwareId, PJRT_Device_AddressableMemories, PJRT_Device_DefaultMemory;  // 31-33
  DFLASH_FN(PJRT_Device_MemoryStats);                     // 34
  PJRT_Slot PJRT_Memory_Id, PJRT_Memory_Kind, PJRT_Memory_DebugString, PJRT_Memory_ToString,
      PJRT_Memory_AddressableByDevices;                   // 35-39
  DFLASH_FN(PJRT_Executable_Destroy);                     // 40
  PJRT_Slot PJRT_Executable_Name, PJRT_Executable_NumReplicas, PJRT_Executable_NumPartitions;  // 41-43
  DFLASH_FN(PJRT_Executable_NumOutputs);                  // 44
  PJRT_Slot PJRT_Executable_SizeOfGeneratedCodeInBytes, PJRT_Executable_GetCostAnalysis,
      PJRT_Executable_OutputMemoryKinds, PJRT_Executable_OptimizedProgram;  // 45-48
  DFLASH_FN(PJRT_Executable_Serialize);                   // 49
  DFLASH_FN(PJRT_LoadedExecutable_Destroy);               // 50
  DFLASH_FN(PJRT_LoadedExecutable_GetExecutable);         // 51
  DFLASH_FN(PJRT_LoadedExecutable_AddressableDevices);    // 52
  PJRT_Slot PJRT_LoadedExecutable_Delete, PJRT_LoadedExecutable_IsDeleted;  // 53, 54
  DFLASH_FN(PJRT_LoadedExecutable_Execute);               // 55
  DFLASH_FN(PJRT_Executable_DeserializeAndLoad);          // 56
  PJRT_Slot PJRT_LoadedExecutable_Fingerprint;            // 57
  DFLASH_FN(PJRT_Buffer_Destroy);                         // 58
  DFLASH_FN(PJRT_Buffer_ElementType);                     // 59
  DFLASH_FN(PJRT_Buffer_Dimensions);                      // 60
  PJRT_Slot PJRT_Buffer_UnpaddedDimensions, PJRT_Buffer_DynamicDimensionIndices, PJRT_Buffer_GetMemoryLayout;  // 61-63
  DFLASH_FN(PJRT_Buffer_OnDeviceSizeInBytes);             // 64
  DFLASH_FN(PJRT_Buffer_Device);                          // 65
  PJRT_Slot PJRT_Buffer_Memory, PJRT_Buffer_Delete;       // 66, 67
  DFLASH_FN(PJRT_Buffer_IsDeleted);                       // 68
  PJRT_Slot PJRT_Buffer_CopyToDevice;                     // 69
  DFLASH_FN(PJRT_Buffer_ToHostBuffer);                    // 70
};
#undef DFLASH_FN

}  // extern "C"

namespace dflash::pjrt {

// offsetof(last field) + sizeof(last field).
#define DFLASH_ABI_SIZE(T, last) (offsetof(T, last) + sizeof(((T*)nullptr)->last))

// Layout checks against the published 0.114 sizes (x86-64 / aarch64 LP64).
static_assert(DFLASH_ABI_SIZE(PJRT_Api_Version, minor_version) == 24);
static_assert(DFLASH_ABI_SIZE(PJRT_Client_Create_Args, kv_try_get_user_arg) == 88);
static_assert(DFLASH_ABI_SIZE(PJRT_Client_Compile_Args, executable) == 56);
static_assert(DFLASH_ABI_SIZE(PJRT_Client_BufferFromHostBuffer_Args, buffer) == 120);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_ToHostBuffer_Args, event) == 56);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_ElementType_Args, type) == 28);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_Dimensions_Args, num_dims) == 40);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_IsDeleted_Args, is_deleted) == 25);
static_assert(DFLASH_ABI_SIZE(PJRT_NamedValue, value_size) == 56);
static_assert(DFLASH_ABI_SIZE(PJRT_ExecuteOptions, num_hlo_output_callbacks) == 144);
static_assert(DFLASH_ABI_SIZE(PJRT_LoadedExecutable_Execute_Args, execute_device) == 80);
static_assert(DFLASH_ABI_SIZE(PJRT_Executable_DeserializeAndLoad_Args, load_options) == 72);
static_assert(DFLASH_ABI_SIZE(PJRT_Executable_Serialize_Args, serialized_executable_deleter) == 56);
static_assert(DFLASH_ABI_SIZE(PJRT_Device_MemoryStats_Args, peak_allocated_bytes_is_set) == 201);
static_assert(DFLASH_ABI_SIZE(PJRT_Program, format_size) == 48);
static_assert(DFLASH_ABI_SIZE(PJRT_LoadedExecutable_AddressableDevices_Args, num_addressable_devices) == 40);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_Device_Args, device) == 32);
static_assert(DFLASH_ABI_SIZE(PJRT_Buffer_OnDeviceSizeInBytes_Args, on_device_size_in_bytes) == 32);
static_assert(offsetof(PJRT_Api, PJRT_LoadedExecutable_AddressableDevices) == 40 + 52 * 8);
static_assert(offsetof(PJRT_Api, PJRT_Buffer_Device) == 40 + 65 * 8);
static_assert(DFLASH_ABI_SIZE(PJRT_Plugin_Attributes_Args, num_attributes) == 32);
static_assert(DFLASH_ABI_SIZE(PJRT_Error_Message_Args, message_size) == 40);
static_assert(DFLASH_ABI_SIZE(PJRT_Error_GetCode_Args, code) == 28);
static_assert(offsetof(PJRT_Api, PJRT_Error_Destroy) == 40);
static_assert(offsetof(PJRT_Api, PJRT_Buffer_ToHostBuffer) == 40 + 70 * 8);

// Zero-filled args struct with struct_size set; `size` from DFLASH_ABI_SIZE.
template <typename T>
T MakeArgs(size_t size) {
  T t{};
  t.struct_size = size;
  return t;
}
#define DFLASH_ARGS(T, last) ::dflash::pjrt::MakeArgs<T>(DFLASH_ABI_SIZE(T, last))

}  // namespace dflash::pjrt
