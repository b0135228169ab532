// A JS promise settled from any thread — the scheduler thread, a teardown thread — through a
// thread-safe function, after every progress call queued before the settlement has been
// delivered (the settlement runs in the function's finalizer). This is how engine work that
// runs on the scheduler thread reports back without holding a libuv worker while it waits.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace dflash::addon {

class AsyncPromise {
 public:
  using Call = std::function<void(Napi::Env, Napi::Function)>;
  using Make = std::function<Napi::Value(Napi::Env)>;

  // `callback` receives progress calls (may be an empty Function: then progress is dropped).
  static std::shared_ptr<AsyncPromise> Create(Napi::Env env, Napi::Function callback, const char* name);
  Napi::Promise promise() const { return promise_; }

  // Any thread. Progress after a settlement is ignored; the first settlement wins.
  void Progress(Call call);
  void Resolve(Make make);
  void Reject(const std::string& message, const std::string& code = "");

 private:
  struct State {
    explicit State(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    Make resolve;
    std::string error, code;
    bool has_callback = false;
  };
  void Settle();
  Napi::Promise promise_;
  Napi::ThreadSafeFunction tsfn_;
  State* state_ = nullptr;  // owned by the tsfn finalizer
  std::mutex mu_;
  bool settled_ = false;
};

}  // namespace dflash::addon
