// PJRT error conversion: see errors.h.
#include "pjrt/errors.h"

namespace dflash::pjrt {

const char* ErrorCodeName(int code) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                       "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

std::string PjrtError::code_name() const { return ErrorCodeName(code); }

void Check(const PJRT_Api* api, PJRT_Error* err, const char* what) {
  if (!err) return;
  auto msg = DFLASH_ARGS(PJRT_Error_Message_Args, message_size);
  msg.error = err;
  api->PJRT_Error_Message(&msg);
  std::string text(msg.message ? msg.message : "", msg.message ? msg.message_size : 0);
  auto code = DFLASH_ARGS(PJRT_Error_GetCode_Args, code);
  code.error = err;
  int c = PJRT_Error_Code_UNKNOWN;
  if (!api->PJRT_Error_GetCode(&code)) c = code.code;
  auto destroy = DFLASH_ARGS(PJRT_Error_Destroy_Args, error);
  destroy.error = err;
  api->PJRT_Error_Destroy(&destroy);
  throw PjrtError(std::string(what) + ": " + text, c);
}

}  // namespace dflash::pjrt
