// Compiled-program cache: one PJRT executable per distinct program text (a model graph at one
// static shape bucket). In memory for the engine's lifetime, and on disk when a directory is
// given, keyed by a hash of the plugin's platform version and the program text, so a second
// start of the same model loads executables instead of recompiling them.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "pjrt/client.h"

namespace dflash::engine {

class ProgramCache {
 public:
  ProgramCache(std::shared_ptr<pjrt::Client> client, std::string disk_dir);

  // Returns the executable registered under `key` (a short description of the program and its
  // shape bucket). On first use `build` makes the MLIR text, which is compiled or loaded from
  // disk; later calls cost one hash-map lookup, not a rebuild of the text.
  pjrt::LoadedExecutable& Get(const std::string& key, const std::function<std::string()>& build);

  int64_t compiles() const { return compiles_; }
  int64_t disk_hits() const { return disk_hits_; }
  size_t size() const { return programs_.size(); }

 private:
  std::string DiskPath(uint64_t key) const;

  std::shared_ptr<pjrt::Client> client_;
  std::string disk_dir_;
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<pjrt::LoadedExecutable>> programs_;  // by key
  int64_t compiles_ = 0;
  int64_t disk_hits_ = 0;
};

// FNV-1a, 64 bit: a stable key for the on-disk cache (not a security boundary).
uint64_t Fnv1a64(const std::string& text, uint64_t seed = 1469598103934665603ull);

}  // namespace dflash::engine
