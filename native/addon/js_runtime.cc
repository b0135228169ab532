// N-API wrappers of the PJRT runtime: see js_runtime.h.
#include "addon/js_runtime.h"

#include <cstring>
#include <string>
#include <vector>

#include "addon/async.h"
#include "addon/instance.h"
#include "pjrt/plugin.h"

namespace dflash::addon {

std::atomic<int64_t> g_live_engines{0};

namespace {

pjrt::DType ParseDType(Napi::Env env, const std::string& s) {
  if (s == "f32") return pjrt::DType::kF32;
  if (s == "bf16") return pjrt::DType::kBF16;
  if (s == "f16") return pjrt::DType::kF16;
  if (s == "s32") return pjrt::DType::kS32;
  if (s == "s64") return pjrt::DType::kS64;
  if (s == "u8") return pjrt::DType::kU8;
  if (s == "pred") return pjrt::DType::kPred;
  throw Napi::TypeError::New(env, "unsupported dtype '" + s + "' (f32, bf16, f16, s32, s64, u8, pred)");
}

std::string DTypeString(pjrt::DType t) {
  switch (t) {
    case pjrt::DType::kF32: return "f32";
    case pjrt::DType::kBF16: return "bf16";
    case pjrt::DType::kF16: return "f16";
    case pjrt::DType::kS32: return "s32";
    case pjrt::DType::kS64: return "s64";
    case pjrt::DType::kU8: return "u8";
    case pjrt::DType::kPred: return "pred";
    default: return "other";
  }
}

// A typed array for a host copy of `t` (raw bits for the 16-bit floats).
Napi::Value MakeHostArray(Napi::Env env, pjrt::DType t, std::vector<uint8_t>& bytes) {
  const size_t n = bytes.size();
  auto ab = Napi::ArrayBuffer::New(env, n);
  if (n) std::memcpy(ab.Data(), bytes.data(), n);
  switch (t) {
    case pjrt::DType::kF32: return Napi::Float32Array::New(env, n / 4, ab, 0);
    case pjrt::DType::kS32: return Napi::Int32Array::New(env, n / 4, ab, 0);
    case pjrt::DType::kS64: return Napi::BigInt64Array::New(env, n / 8, ab, 0);
    case pjrt::DType::kBF16:
    case pjrt::DType::kF16: return Napi::Uint16Array::New(env, n / 2, ab, 0);
    default: return Napi::Uint8Array::New(env, n, ab, 0);
  }
}

Napi::Array DimsArray(Napi::Env env, const std::vector<int64_t>& dims) {
  auto a = Napi::Array::New(env, dims.size());
  for (size_t i = 0; i < dims.size(); ++i) a.Set(i, Napi::Number::New(env, static_cast<double>(dims[i])));
  return a;
}

}  // namespace

// ---------------------------------------------------------------- Buffer

Napi::Function JsBuffer::Init(Napi::Env env) {
  return DefineClass(env, "Buffer", {
      InstanceAccessor<&JsBuffer::Dtype>("dtype"),
      InstanceAccessor<&JsBuffer::Dims>("dims"),
      InstanceAccessor<&JsBuffer::Disposed>("disposed"),
      InstanceMethod<&JsBuffer::ToHost>("toHost"),
      InstanceMethod<&JsBuffer::Dispose>("dispose"),
  });
}

JsBuffer::JsBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsBuffer>(info) {}

Napi::Object JsBuffer::Wrap(Napi::Env env, std::shared_ptr<pjrt::Buffer> buffer) {
  Napi::Object obj = Instance::Get(env).buffer_ctor.New({});
  Unwrap(obj)->buffer_ = std::move(buffer);
  return obj;
}

std::shared_ptr<pjrt::Buffer> JsBuffer::Get(Napi::Env env) const {
  if (!buffer_) throw Napi::Error::New(env, "Buffer is disposed");
  if (buffer_->donated()) throw Napi::Error::New(env, "Buffer was donated to an execution and can no longer be used");
  return buffer_;
}

Napi::Value JsBuffer::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DTypeString(Get(info.Env())->dtype()));
}
Napi::Value JsBuffer::Dims(const Napi::CallbackInfo& info) { return DimsArray(info.Env(), Get(info.Env())->dims()); }
Napi::Value JsBuffer::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !buffer_ || buffer_->donated());
}

Napi::Value JsBuffer::ToHost(const Napi::CallbackInfo& info) {
  auto buf = Get(info.Env());
  auto bytes = std::make_shared<std::vector<uint8_t>>();
  return PromiseWorker::Run(
      info.Env(),
      [buf, bytes] {
        bytes->resize(static_cast<size_t>(buf->byte_size()));
        buf->ToHost(bytes->data(), bytes->size());
      },
      [buf, bytes](Napi::Env env) { return MakeHostArray(env, buf->dtype(), *bytes); });
}

Napi::Value JsBuffer::Dispose(const Napi::CallbackInfo& info) {
  if (!buffer_) throw Napi::Error::New(info.Env(), "Buffer is already disposed");
  buffer_.reset();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- Executable

Napi::Function JsExecutable::Init(Napi::Env env) {
  return DefineClass(env, "Executable", {
      InstanceAccessor<&JsExecutable::NumOutputs>("numOutputs"),
      InstanceAccessor<&JsExecutable::Disposed>("disposed"),
      InstanceMethod<&JsExecutable::Execute>("execute"),
      InstanceMethod<&JsExecutable::Serialize>("serialize"),
      InstanceMethod<&JsExecutable::Dispose>("dispose"),
  });
}

JsExecutable::JsExecutable(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsExecutable>(info) {}

Napi::Object JsExecutable::Wrap(Napi::Env env, std::shared_ptr<pjrt::LoadedExecutable> exe) {
  Napi::Object obj = Instance::Get(env).executable_ctor.New({});
  Unwrap(obj)->exe_ = std::move(exe);
  return obj;
}

Napi::Value JsExecutable::NumOutputs(const Napi::CallbackInfo& info) {
  if (!exe_) throw Napi::Error::New(info.Env(), "Executable is disposed");
  return Napi::Number::New(info.Env(), exe_->num_outputs());
}
Napi::Value JsExecutable::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !exe_); }

Napi::Value JsExecutable::Execute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!exe_) throw Napi::Error::New(env, "Executable is disposed");
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "execute(inputs: Buffer[], options?)");
  auto arr = info[0].As<Napi::Array>();
  auto inputs = std::make_shared<std::vector<std::shared_ptr<pjrt::Buffer>>>();
  auto& ctor = Instance::Get(env).buffer_ctor;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value()))
      throw Napi::TypeError::New(env, "execute: input " + std::to_string(i) + " is not a device Buffer");
    inputs->push_back(JsBuffer::Unwrap(v.As<Napi::Object>())->Get(env));
  }
  std::vector<int64_t> keep;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value k = info[1].As<Napi::Object>().Get("keep");
    if (k.IsArray()) {
      auto ka = k.As<Napi::Array>();
      for (uint32_t i = 0; i < ka.Length(); ++i) keep.push_back(ka.Get(i).As<Napi::Number>().Int64Value());
    }
  }
  auto exe = exe_;
  auto outputs = std::make_shared<std::vector<std::unique_ptr<pjrt::Buffer>>>();
  return PromiseWorker::Run(
      env,
      [exe, inputs, keep, outputs] {
        std::vector<pjrt::Buffer*> args;
        for (auto& b : *inputs) args.push_back(b.get());
        *outputs = exe->Execute(args, keep);
      },
      [outputs](Napi::Env env) {
        auto result = Napi::Array::New(env, outputs->size());
        for (size_t i = 0; i < outputs->size(); ++i)
          result.Set(i, JsBuffer::Wrap(env, std::shared_ptr<pjrt::Buffer>(std::move((*outputs)[i]))));
        return result;
      });
}

Napi::Value JsExecutable::Serialize(const Napi::CallbackInfo& info) {
  if (!exe_) throw Napi::Error::New(info.Env(), "Executable is disposed");
  auto exe = exe_;
  auto bytes = std::make_shared<std::string>();
  return PromiseWorker::Run(
      info.Env(), [exe, bytes] { *bytes = exe->Serialize(); },
      [bytes](Napi::Env env) {
        auto a = Napi::Uint8Array::New(env, bytes->size());
        if (!bytes->empty()) std::memcpy(a.Data(), bytes->data(), bytes->size());
        return a;
      });
}

Napi::Value JsExecutable::Dispose(const Napi::CallbackInfo& info) {
  if (!exe_) throw Napi::Error::New(info.Env(), "Executable is already disposed");
  exe_.reset();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- Client

Napi::Function JsClient::Init(Napi::Env env) {
  return DefineClass(env, "Client", {
      InstanceAccessor<&JsClient::PlatformName>("platformName"),
      InstanceAccessor<&JsClient::PlatformVersion>("platformVersion"),
      InstanceAccessor<&JsClient::PluginPath>("pluginPath"),
      InstanceMethod<&JsClient::Devices>("devices"),
      InstanceMethod<&JsClient::Compile>("compile"),
      InstanceMethod<&JsClient::Deserialize>("deserialize"),
      InstanceMethod<&JsClient::BufferFromHost>("bufferFromHost"),
      InstanceMethod<&JsClient::Dispose>("dispose"),
  });
}

JsClient::JsClient(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsClient>(info) {}

Napi::Object JsClient::Wrap(Napi::Env env, std::shared_ptr<pjrt::Client> client) {
  Napi::Object obj = Instance::Get(env).client_ctor.New({});
  Unwrap(obj)->client_ = std::move(client);
  return obj;
}

std::shared_ptr<pjrt::Client> JsClient::Get(Napi::Env env) const {
  if (!client_) throw Napi::Error::New(env, "Client is disposed");
  return client_;
}

Napi::Value JsClient::PlatformName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get(info.Env())->platform_name());
}
Napi::Value JsClient::PlatformVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get(info.Env())->platform_version());
}
Napi::Value JsClient::PluginPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get(info.Env())->plugin()->path());
}

Napi::Value JsClient::Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    auto devices = Get(env)->devices();
    auto arr = Napi::Array::New(env, devices.size());
    for (size_t i = 0; i < devices.size(); ++i) {
      const auto& d = devices[i];
      auto o = Napi::Object::New(env);
      o.Set("id", Napi::Number::New(env, static_cast<double>(d.id)));
      o.Set("kind", d.kind);
      o.Set("debugString", d.debug_string);
      o.Set("addressable", d.addressable);
      auto stats = Napi::Object::New(env);
      for (const auto& [k, v] : d.memory_stats) stats.Set(k, Napi::Number::New(env, static_cast<double>(v)));
      o.Set("memoryStats", stats);
      arr.Set(i, o);
    }
    return arr;
  });
}

Napi::Value JsClient::Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto client = Get(env);
  std::string program;
  if (info.Length() > 0 && info[0].IsString()) {
    program = info[0].As<Napi::String>().Utf8Value();
  } else if (info.Length() > 0 && info[0].IsTypedArray()) {
    auto ta = info[0].As<Napi::Uint8Array>();
    program.assign(reinterpret_cast<const char*>(ta.Data()), ta.ByteLength());
  } else {
    throw Napi::TypeError::New(env, "compile(program: string | Uint8Array)");
  }
  auto exe = std::make_shared<std::shared_ptr<pjrt::LoadedExecutable>>();
  return PromiseWorker::Run(
      env, [client, program, exe] { *exe = client->Compile(program); },
      [exe](Napi::Env env) { return JsExecutable::Wrap(env, *exe); });
}

Napi::Value JsClient::Deserialize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto client = Get(env);
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "deserialize(bytes: Uint8Array)");
  auto ta = info[0].As<Napi::Uint8Array>();
  std::string bytes(reinterpret_cast<const char*>(ta.Data()), ta.ByteLength());
  auto exe = std::make_shared<std::shared_ptr<pjrt::LoadedExecutable>>();
  return PromiseWorker::Run(
      env, [client, bytes, exe] { *exe = client->DeserializeAndLoad(bytes); },
      [exe](Napi::Env env) { return JsExecutable::Wrap(env, *exe); });
}

Napi::Value JsClient::BufferFromHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto client = Get(env);
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsString() || !info[2].IsArray())
    throw Napi::TypeError::New(env, "bufferFromHost(data: TypedArray, dtype: string, dims: number[])");
  auto ta = info[0].As<Napi::TypedArray>();
  const pjrt::DType dtype = ParseDType(env, info[1].As<Napi::String>().Utf8Value());
  std::vector<int64_t> dims;
  auto da = info[2].As<Napi::Array>();
  int64_t count = 1;
  for (uint32_t i = 0; i < da.Length(); ++i) {
    Napi::Value v = da.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "bufferFromHost: dims must be numbers");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d)))
      throw Napi::RangeError::New(env, "bufferFromHost: dims must be non-negative integers");
    dims.push_back(static_cast<int64_t>(d));
    count *= dims.back();
  }
  const size_t want = static_cast<size_t>(count * pjrt::ByteSize(dtype));
  if (ta.ByteLength() != want)
    throw Napi::RangeError::New(env, "bufferFromHost: data has " + std::to_string(ta.ByteLength()) + " bytes, " +
                                         DTypeString(dtype) + " dims need " + std::to_string(want));
  // The device: an id (client.devices()[i].id), by default the plugin's first device.
  PJRT_Device* device = client->addressable_devices().at(0);
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsNumber()) throw Napi::TypeError::New(env, "bufferFromHost: device must be a device id (number)");
    try {
      device = client->device_by_id(info[3].As<Napi::Number>().Int64Value());
    } catch (const std::exception& e) {
      throw Napi::RangeError::New(env, std::string("bufferFromHost: ") + e.what());
    }
  }
  // Copy now: the JS array may be changed or collected while the transfer runs off-thread.
  auto data = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(),
                                                     static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() + want);
  auto out = std::make_shared<std::shared_ptr<pjrt::Buffer>>();
  return PromiseWorker::Run(
      env, [client, data, dtype, dims, device, out] { *out = client->BufferFromHost(data->data(), dtype, dims, device); },
      [out](Napi::Env env) { return JsBuffer::Wrap(env, *out); });
}

Napi::Value JsClient::Dispose(const Napi::CallbackInfo& info) {
  if (!client_) throw Napi::Error::New(info.Env(), "Client is already disposed");
  client_.reset();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- module functions

namespace {

Napi::Value ProbePlugin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "probePlugin(path: string)");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  return Guard(env, [&]() -> Napi::Value {
    auto plugin = pjrt::Plugin::Load(path);
    auto o = Napi::Object::New(env);
    o.Set("path", plugin->path());
    o.Set("apiMajor", plugin->api_major());
    o.Set("apiMinor", plugin->api_minor());
    o.Set("addonApiMajor", pjrt::kAbiMajor);
    o.Set("addonApiMinor", pjrt::kAbiMinor);
    auto attrs = Napi::Object::New(env);
    for (const auto& [k, v] : plugin->attributes()) attrs.Set(k, v);
    o.Set("attributes", attrs);
    return o;
  });
}

Napi::Value OpenClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "openClient(pluginPath: string, options?)");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<pjrt::NamedOption> options;
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    auto keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value v = o.Get(k);
      if (v.IsString()) options.push_back({k, v.As<Napi::String>().Utf8Value()});
      else if (v.IsBoolean()) options.push_back({k, v.As<Napi::Boolean>().Value()});
      else if (v.IsNumber()) options.push_back({k, static_cast<int64_t>(v.As<Napi::Number>().Int64Value())});
      else throw Napi::TypeError::New(env, "openClient: option " + k + " must be a string, number or boolean");
    }
  }
  auto out = std::make_shared<std::shared_ptr<pjrt::Client>>();
  return PromiseWorker::Run(
      env,
      [path, options, out] { *out = pjrt::Client::Create(pjrt::Plugin::Load(path), options); },
      [out](Napi::Env env) { return JsClient::Wrap(env, *out); });
}

Napi::Value LiveObjects(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto c = pjrt::LiveCounts();
  auto o = Napi::Object::New(env);
  o.Set("clients", Napi::Number::New(env, static_cast<double>(c.clients)));
  o.Set("buffers", Napi::Number::New(env, static_cast<double>(c.buffers)));
  o.Set("executables", Napi::Number::New(env, static_cast<double>(c.executables)));
  o.Set("engines", Napi::Number::New(env, static_cast<double>(g_live_engines.load())));
  return o;
}

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  auto& inst = Instance::Get(env);
  inst.buffer_ctor = Napi::Persistent(JsBuffer::Init(env));
  inst.executable_ctor = Napi::Persistent(JsExecutable::Init(env));
  inst.client_ctor = Napi::Persistent(JsClient::Init(env));
  exports.Set("probePlugin", Napi::Function::New(env, ProbePlugin));
  exports.Set("openClient", Napi::Function::New(env, OpenClient));
  exports.Set("liveObjects", Napi::Function::New(env, LiveObjects));
}

}  // namespace dflash::addon
