// Compiled-program cache: see program_cache.h.
#include "engine/program_cache.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace dflash::engine {

uint64_t Fnv1a64(const std::string& text, uint64_t h) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

ProgramCache::ProgramCache(std::shared_ptr<pjrt::Client> client, std::string disk_dir)
    : client_(std::move(client)), disk_dir_(std::move(disk_dir)) {}

std::string ProgramCache::DiskPath(uint64_t key) const {
  char name[40];
  std::snprintf(name, sizeof(name), "%016llx.pjrt", static_cast<unsigned long long>(key));
  return (std::filesystem::path(disk_dir_) / name).string();
}

pjrt::LoadedExecutable& ProgramCache::Get(const std::string& key, const std::function<std::string()>& build) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = programs_.find(key);
  if (it != programs_.end()) return *it->second;
  const std::string mlir = build();

  std::unique_ptr<pjrt::LoadedExecutable> exe;
  std::string path;
  if (!disk_dir_.empty()) {
    // The key covers everything that changes the compiled code: plugin build, platform, program.
    const uint64_t key = Fnv1a64(mlir, Fnv1a64(client_->platform_name() + "\n" + client_->platform_version() + "\n" +
                                                client_->plugin()->path() + "\n"));
    path = DiskPath(key);
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      try {
        exe = client_->DeserializeAndLoad(ss.str());
        ++disk_hits_;
      } catch (const std::exception&) {
        exe.reset();  // stale or foreign file: recompile and overwrite below
      }
    }
  }
  if (!exe) {
    exe = client_->Compile(mlir);
    ++compiles_;
    if (!path.empty()) {
      try {
        std::filesystem::create_directories(disk_dir_);
        const std::string bytes = exe->Serialize();
        const std::string tmp = path + ".tmp";
        {
          std::ofstream out(tmp, std::ios::binary);
          out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        }
        std::filesystem::rename(tmp, path);  // atomic: readers never see half a file
      } catch (const std::exception&) {
        // A read-only or full disk only costs a recompile next time.
      }
    }
  }
  auto& ref = *exe;
  programs_.emplace(key, std::move(exe));
  return ref;
}

}  // namespace dflash::engine
