// AsyncPromise: see async_promise.h.
#include "addon/async_promise.h"

namespace dflash::addon {

std::shared_ptr<AsyncPromise> AsyncPromise::Create(Napi::Env env, Napi::Function callback, const char* name) {
  auto p = std::shared_ptr<AsyncPromise>(new AsyncPromise());
  p->state_ = new State(env);
  p->state_->has_callback = !callback.IsEmpty() && callback.IsFunction();
  p->promise_ = p->state_->deferred.Promise();
  Napi::Function fn = p->state_->has_callback ? callback : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  p->tsfn_ = Napi::ThreadSafeFunction::New(env, fn, name, 0, 1, p->state_, [](Napi::Env env, State* st) {
    // Runs on the JS thread once the function is released and every queued call delivered.
    try {
      if (st->resolve) {
        st->deferred.Resolve(st->resolve(env));
      } else {
        Napi::Error err = Napi::Error::New(env, st->error.empty() ? "dflash: operation ended without a result" : st->error);
        if (!st->code.empty()) err.Set("code", Napi::String::New(env, st->code));
        st->deferred.Reject(err.Value());
      }
    } catch (const Napi::Error& e) {
      st->deferred.Reject(e.Value());
    } catch (const std::exception& e) {
      st->deferred.Reject(Napi::Error::New(env, e.what()).Value());
    }
    delete st;
  });
  return p;
}

void AsyncPromise::Progress(Call call) {
  std::lock_guard<std::mutex> lock(mu_);
  if (settled_ || !state_->has_callback) return;
  auto* heap = new Call(std::move(call));
  const napi_status st = tsfn_.NonBlockingCall(heap, [](Napi::Env env, Napi::Function fn, Call* c) {
    try {
      (*c)(env, fn);
    } catch (...) {
      // A throwing progress listener must not take the process down; the load goes on.
    }
    delete c;
  });
  if (st != napi_ok) delete heap;
}

void AsyncPromise::Resolve(Make make) {
  std::lock_guard<std::mutex> lock(mu_);
  if (settled_) return;
  settled_ = true;
  state_->resolve = std::move(make);
  tsfn_.Release();
}

void AsyncPromise::Reject(const std::string& message, const std::string& code) {
  std::lock_guard<std::mutex> lock(mu_);
  if (settled_) return;
  settled_ = true;
  state_->error = message;
  state_->code = code;
  tsfn_.Release();
}

}  // namespace dflash::addon
