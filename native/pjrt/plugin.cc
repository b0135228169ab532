// Plugin loading: see plugin.h.
#include "pjrt/plugin.h"

#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include "pjrt/elf_check.h"
#include "pjrt/libtpu_host.h"

namespace dflash::pjrt {
namespace {

std::mutex g_mu;
std::map<std::string, std::shared_ptr<Plugin>>& Loaded() {
  static auto* m = new std::map<std::string, std::shared_ptr<Plugin>>();  // never destroyed
  return *m;
}

std::string Version(int major, int minor) { return std::to_string(major) + "." + std::to_string(minor); }

// The CUDA plugin of jax-cuda1x-pjrt finds its CUDA libraries in the `nvidia.*` pip packages
// next to it (site-packages/nvidia/*/lib). Preload them RTLD_GLOBAL so the plugin's own dlopen
// calls resolve without LD_LIBRARY_PATH. Returns the libraries that could not be loaded.
std::vector<std::string> PreloadNvidiaLibs(const std::filesystem::path& plugin) {
  namespace fs = std::filesystem;
  std::vector<std::string> failed;
  // .../site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so -> .../site-packages/nvidia
  const fs::path nvidia = plugin.parent_path().parent_path().parent_path() / "nvidia";
  std::error_code ec;
  if (!fs::is_directory(nvidia, ec)) return failed;
  // Order matters a little (cudart before cublas etc.); retry a few rounds for dependencies.
  std::vector<fs::path> libs;
  for (auto& pkg : fs::directory_iterator(nvidia, ec)) {
    const fs::path lib = pkg.path() / "lib";
    if (!fs::is_directory(lib, ec)) continue;
    for (auto& f : fs::directory_iterator(lib, ec)) {
      if (f.path().filename().string().find(".so") == std::string::npos) continue;
      // A truncated library would kill the process inside dlopen just like a truncated plugin.
      const std::string problem = ElfProblem(f.path().string());
      if (problem.empty()) libs.push_back(f.path());
      else failed.push_back(problem);
    }
  }
  for (int round = 0; round < 4 && !libs.empty(); ++round) {
    std::vector<fs::path> again;
    for (auto& l : libs)
      if (!dlopen(l.c_str(), RTLD_NOW | RTLD_GLOBAL)) again.push_back(l);
    libs.swap(again);
  }
  for (auto& l : libs) failed.push_back(l.string());
  return failed;
}

// libtpu arms per-thread SIGPROF timers (every 10 ms) and, from a static destructor at exit,
// resets SIGPROF to SIG_DFL when it finds it at SIG_IGN, while those timers are still armed: the
// process dies on its way out ("Profiling timer expired", exit 155), so even a clean
// `dflash doctor` would report failure. A real handler is left alone, so one that does nothing is
// installed while nobody handles SIGPROF. V8's --cpu-prof puts its own handler in place while it
// profiles, and exec() resets handlers in children.
void IgnoreSigprof(int) {}
void InstallSigprofHandlerIfNone() {
  struct sigaction current = {};
  if (sigaction(SIGPROF, nullptr, &current) != 0) return;
  if ((current.sa_flags & SA_SIGINFO) || (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN)) return;
  struct sigaction noop = {};
  noop.sa_handler = IgnoreSigprof;
  noop.sa_flags = SA_RESTART;
  sigemptyset(&noop.sa_mask);
  sigaction(SIGPROF, &noop, nullptr);
}

}  // namespace

std::shared_ptr<Plugin> Plugin::Load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error("PJRT plugin not found: " + path);
  const std::string key = fs::canonical(path, ec).string();
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = Loaded().find(key);
  if (it != Loaded().end()) return it->second;

  // dlopen of a truncated or foreign file can kill the process (SIGBUS past the end of a short
  // file); the headers are checked against the file size first.
  CheckElfFile(path);
  std::vector<std::string> nvidia_missing;
  if (key.find("xla_cuda") != std::string::npos) nvidia_missing = PreloadNvidiaLibs(key);
  if (IsLibtpu(key)) PrepareLibtpuEnvironment();
  InstallSigprofHandlerIfNone();

  void* handle = dlopen(key.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    std::string msg = std::string("cannot load PJRT plugin ") + path + ": " + dlerror();
    if (!nvidia_missing.empty()) {
      msg += " (CUDA libraries from the nvidia.* pip packages that failed to load:";
      for (auto& m : nvidia_missing) msg += " " + m;
      msg += ")";
    }
    throw std::runtime_error(msg);
  }
  using GetApiFn = const PJRT_Api* (*)();
  auto get = reinterpret_cast<GetApiFn>(dlsym(handle, "GetPjrtApi"));
  if (!get) throw std::runtime_error(path + " is not a PJRT plugin: it exports no GetPjrtApi symbol");
  const PJRT_Api* api = get();
  if (!api || api->struct_size < offsetof(PJRT_Api, PJRT_Error_Destroy))
    throw std::runtime_error(path + ": GetPjrtApi returned no usable API table");
  const int major = api->pjrt_api_version.major_version, minor = api->pjrt_api_version.minor_version;
  if (major != kAbiMajor || minor < kAbiMinorMin) {
    throw std::runtime_error("PJRT plugin " + path + " implements PJRT C API " + Version(major, minor) +
                             "; dflash was written for " + Version(kAbiMajor, kAbiMinor) + " (needs " +
                             Version(kAbiMajor, kAbiMinorMin) + " or newer within major " + std::to_string(kAbiMajor) + ")");
  }
  auto plugin = std::make_shared<Plugin>(path, api);
  auto init = DFLASH_ARGS(PJRT_Plugin_Initialize_Args, extension_start);
  try {
    Check(api, PJRT_CALL(*plugin, PJRT_Plugin_Initialize, &init), "PJRT_Plugin_Initialize");
  } catch (const PjrtError& e) {
    // libtpu takes its one-process-per-host lock here.
    throw PjrtError(ExplainLibtpuLockError(e.what(), key), e.code);
  }
  Loaded()[key] = plugin;
  return plugin;
}

void Plugin::RequireSlot(size_t offset, const char* name) const {
  if (offset + sizeof(void*) > api_->struct_size || reinterpret_cast<void* const*>(reinterpret_cast<const char*>(api_) + offset)[0] == nullptr)
    throw std::runtime_error("PJRT plugin " + path_ + " (PJRT C API " + Version(api_major(), api_minor()) + ") lacks " + name);
}

std::vector<std::pair<std::string, std::string>> Plugin::attributes() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto args = DFLASH_ARGS(PJRT_Plugin_Attributes_Args, num_attributes);
  Check(api_, PJRT_CALL(*this, PJRT_Plugin_Attributes, &args), "PJRT_Plugin_Attributes");
  for (size_t i = 0; i < args.num_attributes; ++i) {
    const PJRT_NamedValue& nv = args.attributes[i];
    std::string name(nv.name, nv.name_size), value;
    switch (nv.type) {
      case PJRT_NamedValue_kString: value.assign(nv.string_value, nv.value_size); break;
      case PJRT_NamedValue_kInt64: value = std::to_string(nv.int64_value); break;
      case PJRT_NamedValue_kInt64List:
        for (size_t k = 0; k < nv.value_size; ++k) {
          if (k) value += '.';
          value += std::to_string(nv.int64_array_value[k]);
        }
        break;
      case PJRT_NamedValue_kFloat: value = std::to_string(nv.float_value); break;
      case PJRT_NamedValue_kBool: value = nv.bool_value ? "true" : "false"; break;
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

}  // namespace dflash::pjrt
