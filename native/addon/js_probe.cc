// Oracle and benchmark hooks (engine/probe.h), exported as `internal.*` — not public API. Each
// runs on the engine's scheduler thread and settles its promise from there.
#include <napi.h>

#include "addon/async.h"
#include "addon/async_promise.h"
#include "addon/instance.h"
#include "addon/js_engine.h"
#include "addon/typed_arrays.h"
#include "engine/probe.h"

namespace dflash::addon {
namespace {

std::shared_ptr<engine::Engine> EngineArg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& inst = Instance::Get(env);
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(inst.engine_ctor.Value()))
    throw Napi::TypeError::New(env, "internal probe: the first argument must be a native Engine");
  return JsEngine::Unwrap(info[0].As<Napi::Object>())->Get(env);
}

int32_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("internal probe: ") + what + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

std::vector<int32_t> Int32s(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// Posts `work` to the scheduler; `make` turns its result into the resolved value.
template <typename R>
Napi::Value Run(Napi::Env env, const std::shared_ptr<engine::Engine>& eng, std::function<R(engine::Runtime&)> work,
                std::function<Napi::Value(Napi::Env, const R&)> make) {
  auto p = AsyncPromise::Create(env, Napi::Function(), "dflash-probe");
  eng->Post([p, work = std::move(work), make = std::move(make)](engine::Runtime& rt) {
    try {
      auto r = std::make_shared<R>(work(rt));
      p->Resolve([r, make](Napi::Env env) { return make(env, *r); });
    } catch (const pjrt::PjrtError& e) {
      p->Reject(e.what(), e.code_name());
    } catch (const std::exception& e) {
      p->Reject(e.what());
    }
  });
  return p->promise();
}

Napi::Value ScoreLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto eng = EngineArg(info);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "scoreLogits(engine, batch: Int32Array[], hiddenLayers?)");
  std::vector<std::vector<int32_t>> batch;
  auto arr = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) batch.push_back(Int32s(env, arr.Get(i), "scoreLogits: each sequence"));
  std::vector<int32_t> layers;
  if (info.Length() > 2 && info[2].IsArray())
    for (uint32_t i = 0; i < info[2].As<Napi::Array>().Length(); ++i) layers.push_back(info[2].As<Napi::Array>().Get(i).ToNumber().Int32Value());
  return Run<engine::probe::ScoreResult>(
      env, eng, [batch, layers](engine::Runtime& rt) { return engine::probe::ScoreLogits(rt, batch, layers); },
      [](Napi::Env env, const engine::probe::ScoreResult& r) -> Napi::Value {
        auto o = Napi::Object::New(env);
        auto l = Napi::Array::New(env, r.logits.size());
        for (size_t i = 0; i < r.logits.size(); ++i) l.Set(i, TypedArrayCopy(env, r.logits[i]));
        o.Set("logits", l);
        if (!r.hidden.empty()) {
          auto h = Napi::Array::New(env, r.hidden.size());
          for (size_t i = 0; i < r.hidden.size(); ++i) h.Set(i, TypedArrayCopy(env, r.hidden[i]));
          o.Set("hidden", h);
        }
        return o;
      });
}

Napi::Value DraftLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto eng = EngineArg(info);
  if (info.Length() < 5 || !info[1].IsTypedArray()) throw Napi::TypeError::New(env, "draftLogits(engine, features: Float32Array, rows, lastToken, blockSize)");
  auto fa = info[1].As<Napi::Float32Array>();
  std::vector<float> feats(fa.Data(), fa.Data() + fa.ElementLength());
  const int32_t rows = IntArg(info, 2, "rows"), last = IntArg(info, 3, "lastToken"), block = IntArg(info, 4, "blockSize");
  return Run<engine::probe::DraftResult>(
      env, eng, [feats, rows, last, block](engine::Runtime& rt) { return engine::probe::DraftLogits(rt, feats, rows, last, block); },
      [](Napi::Env env, const engine::probe::DraftResult& r) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("logits", TypedArrayCopy(env, r.logits));
        o.Set("draft", TypedArrayCopy(env, r.draft));
        return o;
      });
}

Napi::Value TimeProgram(const Napi::CallbackInfo& info, bool verify) {
  Napi::Env env = info.Env();
  auto eng = EngineArg(info);
  const int32_t rows = IntArg(info, 1, "rows"), size = IntArg(info, 2, verify ? "k" : "block");
  const int32_t context = IntArg(info, 3, "context"), reps = IntArg(info, 4, "reps");
  // timeVerify's token mask (probe.h): "allow-all" (default), "constrained" or "none".
  using engine::probe::VerifyMask;
  VerifyMask mask = VerifyMask::kAllowAll;
  if (verify && info.Length() > 5 && info[5].IsString()) {
    const std::string m = info[5].As<Napi::String>().Utf8Value();
    if (m == "constrained") mask = VerifyMask::kConstrained;
    else if (m == "none") mask = VerifyMask::kNoInput;
    else if (m != "allow-all") throw Napi::RangeError::New(env, "timeVerify: mask must be \"allow-all\", \"constrained\" or \"none\", not \"" + m + "\"");
  }
  return Run<double>(
      env, eng,
      [=](engine::Runtime& rt) {
        return verify ? engine::probe::TimeVerify(rt, rows, size, context, reps, mask) : engine::probe::TimeDraft(rt, rows, size, context, reps);
      },
      [](Napi::Env env, const double& s) -> Napi::Value { return Napi::Number::New(env, s); });
}

}  // namespace

void InitProbes(Napi::Env env, Napi::Object internal) {
  internal.Set("scoreLogits", Napi::Function::New(env, ScoreLogits));
  internal.Set("draftLogits", Napi::Function::New(env, DraftLogits));
  internal.Set("timeVerify", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return TimeProgram(i, true); }));
  internal.Set("timeDraft", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return TimeProgram(i, false); }));
  internal.Set("timeCollectives", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                 auto eng = EngineArg(info);
                 const int32_t rows = IntArg(info, 1, "rows"), k = IntArg(info, 2, "k"), reps = IntArg(info, 3, "reps");
                 return Run<double>(
                     info.Env(), eng, [=](engine::Runtime& rt) { return engine::probe::TimeCollectives(rt, rows, k, reps); },
                     [](Napi::Env env, const double& s) -> Napi::Value { return Napi::Number::New(env, s); });
               }));
}

}  // namespace dflash::addon
