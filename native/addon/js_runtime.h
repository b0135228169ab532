// N-API wrappers of the PJRT runtime objects: Client, Buffer, Executable. Each wrapper holds a
// shared_ptr, so a promise still in flight keeps its objects alive even if JS disposes or
// collects the wrapper; dispose() drops the wrapper's reference deterministically.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "pjrt/client.h"

namespace dflash::addon {

extern std::atomic<int64_t> g_live_engines;

class JsBuffer : public Napi::ObjectWrap<JsBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<pjrt::Buffer> buffer);
  explicit JsBuffer(const Napi::CallbackInfo& info);
  std::shared_ptr<pjrt::Buffer> Get(Napi::Env env) const;  // throws if disposed

 private:
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Dims(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value ToHost(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<pjrt::Buffer> buffer_;
};

class JsExecutable : public Napi::ObjectWrap<JsExecutable> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<pjrt::LoadedExecutable> exe);
  explicit JsExecutable(const Napi::CallbackInfo& info);

 private:
  Napi::Value NumOutputs(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Execute(const Napi::CallbackInfo& info);
  Napi::Value Serialize(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<pjrt::LoadedExecutable> exe_;
};

class JsClient : public Napi::ObjectWrap<JsClient> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<pjrt::Client> client);
  explicit JsClient(const Napi::CallbackInfo& info);
  std::shared_ptr<pjrt::Client> Get(Napi::Env env) const;  // throws if disposed

 private:
  Napi::Value PlatformName(const Napi::CallbackInfo& info);
  Napi::Value PlatformVersion(const Napi::CallbackInfo& info);
  Napi::Value PluginPath(const Napi::CallbackInfo& info);
  Napi::Value Devices(const Napi::CallbackInfo& info);
  Napi::Value Compile(const Napi::CallbackInfo& info);
  Napi::Value Deserialize(const Napi::CallbackInfo& info);
  Napi::Value BufferFromHost(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<pjrt::Client> client_;
};

// Module-level functions: probePlugin(path), openClient(path, options), liveObjects().
void InitRuntime(Napi::Env env, Napi::Object exports);

}  // namespace dflash::addon
