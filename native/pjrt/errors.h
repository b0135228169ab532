// PJRT errors as C++ exceptions. Every PJRT_Error* a call returns is converted into a
// PjrtError carrying the plugin's message and code, and destroyed, in one place (Check).
#pragma once
#include <stdexcept>
#include <string>

#include "pjrt/pjrt_abi.h"

namespace dflash::pjrt {

struct PjrtError : std::runtime_error {
  PjrtError(const std::string& message, int code) : std::runtime_error(message), code(code) {}
  int code;                    // PJRT_Error_Code
  std::string code_name() const;  // e.g. "INVALID_ARGUMENT"
};

const char* ErrorCodeName(int code);

// Throws PjrtError (prefixed with `what`, the call that failed) if `err` is non-null.
void Check(const PJRT_Api* api, PJRT_Error* err, const char* what);

}  // namespace dflash::pjrt
