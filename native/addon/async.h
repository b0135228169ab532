// Runs native work on the libuv thread pool and settles a JS promise with the result, so no
// PJRT call (compile, execute, transfer, event wait) ever blocks the JS thread. Every C++
// exception becomes a rejected promise with an Error carrying the message, and for plugin
// errors the PJRT error code as `code` (e.g. "INVALID_ARGUMENT").
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "pjrt/errors.h"

namespace dflash::addon {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // `work` runs off the JS thread; `done` runs on it afterwards to build the resolved value.
  static Napi::Promise Run(Napi::Env env, Work work, Done done) {
    auto* w = new PromiseWorker(env, std::move(work), std::move(done));
    Napi::Promise promise = w->deferred_.Promise();
    w->Queue();  // libuv owns and deletes the worker after OnOK/OnError
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const pjrt::PjrtError& e) {
      code_ = e.code_name();
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("dflash: unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, e.what()).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Object err = e.Value();
    if (!code_.empty()) err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err);
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "dflash"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::string code_;
};

// Turns a C++ exception thrown on the JS thread into a JS exception (never a crash).
template <typename F>
Napi::Value Guard(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const pjrt::PjrtError& e) {
    Napi::Error err = Napi::Error::New(env, e.what());
    err.Set("code", Napi::String::New(env, e.code_name()));
    throw err;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace dflash::addon
