// A loaded PJRT plugin: dlopen'ed once per file (never closed: plugins keep threads and static
// state alive), its API version checked against ours, PJRT_Plugin_Initialize called once.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pjrt/errors.h"
#include "pjrt/pjrt_abi.h"

namespace dflash::pjrt {

class Plugin {
 public:
  // Loads (or returns the already loaded) plugin at `path`. Throws std::runtime_error naming
  // the file for: a missing file, a file dlopen cannot map safely (not ELF, another architecture,
  // truncated: see elf_check.h), a dlopen failure, no GetPjrtApi symbol, an incompatible PJRT API
  // version (both versions in the message). libtpu gets its environment prepared first and a
  // held TPU lock is explained (see libtpu_host.h).
  static std::shared_ptr<Plugin> Load(const std::string& path);

  const PJRT_Api* api() const { return api_; }
  const std::string& path() const { return path_; }
  int api_major() const { return api_->pjrt_api_version.major_version; }
  int api_minor() const { return api_->pjrt_api_version.minor_version; }
  // Plugin attributes (e.g. stablehlo_current_version, xla_version), values stringified.
  std::vector<std::pair<std::string, std::string>> attributes() const;

  // Throws unless the function-table slot at byte `offset` exists in this plugin's table.
  void RequireSlot(size_t offset, const char* name) const;

  Plugin(std::string path, const PJRT_Api* api) : path_(std::move(path)), api_(api) {}

 private:
  std::string path_;
  const PJRT_Api* api_;
};

// Calls api->FN after checking the slot exists: PJRT_CALL(plugin, PJRT_Client_Compile, &args).
#define PJRT_CALL(plugin, FN, args)                                        \
  ((plugin).RequireSlot(offsetof(PJRT_Api, FN), #FN), (plugin).api()->FN(args))

}  // namespace dflash::pjrt
