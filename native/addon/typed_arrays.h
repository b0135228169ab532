// Native vectors handed to JS as typed arrays of the same element type (Float32Array for float,
// Int32Array for int32_t): events, log-probabilities, probe results.
#pragma once
#include <napi.h>

#include <cstring>
#include <vector>

namespace dflash::addon {

template <typename T>
Napi::TypedArrayOf<T> TypedArrayCopy(Napi::Env env, const std::vector<T>& v) {
  auto a = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}

}  // namespace dflash::addon
