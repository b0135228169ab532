// Compiled-program cache: see program_cache.h.
#include "engine/program_cache.h"

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace dflash::engine {
namespace {

constexpr char kMagic[] = "DFLASH-PROGRAM 1\n";

std::string Dims(const std::vector<int64_t>& d) {
  std::string s;
  for (auto x : d) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "[" + s + "]";
}

// One of the store's compile slots, for one program (by disk header), held for its scope.
class CompileSlot {
 public:
  CompileSlot(ProgramStore& store, std::string header) : store_(store), header_(std::move(header)) {
    std::unique_lock<std::mutex> lock(store_.mu);
    store_.cv.wait(lock, [&] { return store_.compiling < store_.compile_slots && !store_.compiling_headers.count(header_); });
    ++store_.compiling;
    store_.compiling_headers.insert(header_);
  }
  ~CompileSlot() {
    {
      std::lock_guard<std::mutex> lock(store_.mu);
      --store_.compiling;
      store_.compiling_headers.erase(header_);
    }
    store_.cv.notify_all();
  }
  CompileSlot(const CompileSlot&) = delete;
  CompileSlot& operator=(const CompileSlot&) = delete;

 private:
  ProgramStore& store_;
  std::string header_;
};

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int64_t ProcessMapCount() {
  std::ifstream maps("/proc/self/maps");
  if (!maps) return 0;
  int64_t lines = 0;
  std::string line;
  while (std::getline(maps, line)) ++lines;
  return lines;
}

int64_t MaxMapCount() {
  static const int64_t limit = [] {
    std::ifstream f("/proc/sys/vm/max_map_count");
    int64_t n = 0;
    return f >> n ? n : int64_t{0};
  }();
  return limit;
}

namespace {
std::atomic<int64_t> last_process_maps{0};
}  // namespace

int64_t LastProcessMapCount() { return last_process_maps.load(); }

int CompileSlots(int32_t option) {
  if (option > 0) return option;
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp<unsigned>(hw, 1, 4));
}

uint64_t Fnv1a64(const std::string& text, uint64_t h) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string SignatureLine(const std::vector<models::IoSpec>& inputs, const std::vector<models::IoSpec>& outputs) {
  std::string s;
  for (const auto& i : inputs) s += "in " + i.name + " " + pjrt::DTypeName(i.dtype) + Dims(i.shape) + "; ";
  for (const auto& o : outputs) s += "out " + o.name + " " + pjrt::DTypeName(o.dtype) + Dims(o.shape) + "; ";
  return s;
}

int CompiledProgram::input_index(const std::string& name) const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].name == name) return static_cast<int>(i);
  return -1;
}

int CompiledProgram::output_index(const std::string& name) const {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].name == name) return static_cast<int>(i);
  return -1;
}

ProgramCache::ProgramCache(pjrt::Mesh mesh, std::string disk_dir, std::shared_ptr<ProgramStore> store)
    : mesh_(std::move(mesh)), disk_dir_(std::move(disk_dir)), store_(store ? std::move(store) : std::make_shared<ProgramStore>()) {}

void ProgramCache::Emit(ProgramEvent::Kind kind, const std::string& key, double seconds, const std::string& detail) {
  if (observer_) observer_(ProgramEvent{kind, key, seconds, detail});
}

ProgramCache::~ProgramCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (background_.joinable()) background_.join();
}

bool ProgramCache::Has(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return programs_.count(key) > 0;
}

ProgramRef ProgramCache::Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = programs_.find(key);
  if (it == programs_.end()) return nullptr;
  it->second.last_use = ++tick_;
  return it->second.program;
}

void ProgramCache::Insert(const std::string& key, ProgramRef p) {
  programs_[key] = Entry{std::move(p), ++tick_};
}

int64_t ProgramCache::loaded_maps() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [key, e] : programs_) n += e.program->maps;
  return n;
}

bool ProgramCache::EvictOne() {
  ProgramRef victim;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = programs_.end();
    for (auto it = programs_.begin(); it != programs_.end(); ++it)
      if (it->second.program.use_count() == 1 && (best == programs_.end() || it->second.last_use < best->second.last_use)) best = it;
    if (best == programs_.end()) return false;  // every loaded program is in use
    victim = std::move(best->second.program);
    programs_.erase(best);
  }
  ++evictions_;
  Emit(ProgramEvent::kUnload, victim->key);
  return true;  // the executable is released here, outside the lock
}

void ProgramCache::Prefetch(const std::string& key, std::function<models::Program()> build) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || programs_.count(key) || in_flight_.count(key)) return;
  for (const auto& q : queue_)
    if (q.first == key) return;
  queue_.emplace_back(key, std::move(build));
  if (!background_.joinable()) background_ = std::thread([this] { BackgroundLoop(); });
  cv_.notify_all();
}

void ProgramCache::BackgroundLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    auto [key, build] = std::move(queue_.front());
    queue_.pop_front();
    if (programs_.count(key) || in_flight_.count(key)) continue;
    in_flight_.insert(key);
    lock.unlock();
    ProgramRef made;
    try {
      made = Make(key, build);
    } catch (const std::exception&) {
      // A failed background compile is retried (and reported) by the Get() that needs it.
    }
    lock.lock();
    in_flight_.erase(key);
    if (made) Insert(key, std::move(made));
    cv_.notify_all();
  }
}

ProgramRef ProgramCache::Get(const std::string& key, const std::function<models::Program()>& build) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = programs_.find(key);
    if (it != programs_.end()) {
      it->second.last_use = ++tick_;
      return it->second.program;
    }
    if (!in_flight_.count(key)) break;
    cv_.wait(lock);  // the background thread is making it
  }
  in_flight_.insert(key);
  lock.unlock();
  ProgramRef made;
  try {
    made = Make(key, build);
  } catch (...) {
    lock.lock();
    in_flight_.erase(key);
    cv_.notify_all();
    throw;
  }
  lock.lock();
  in_flight_.erase(key);
  Insert(key, made);
  cv_.notify_all();
  return made;
}

ProgramRef ProgramCache::Make(const std::string& key, const std::function<models::Program()>& build) {
  // Room first: the count bound, then the memory maps (LLVM's JIT aborts the process when they
  // run out), unloading the least recently used programs nobody holds.
  while (max_loaded_ > 0 && static_cast<int64_t>(size()) >= max_loaded_ && EvictOne()) {
  }
  int64_t maps_before = ProcessMapCount();
  if (const int64_t limit = MaxMapCount(); limit > 0) {
    while (maps_before + kMapsReserve > limit && EvictOne()) maps_before = ProcessMapCount();
    last_process_maps = maps_before;
    if (maps_before + kMapsReserve > limit)
      throw std::runtime_error("cannot load program '" + key + "': the process holds " + std::to_string(maps_before) +
                               " memory maps and the system allows " + std::to_string(limit) +
                               " (vm.max_map_count), with every loaded program in use; every loaded executable maps code "
                               "and data. Run fewer programs (a smaller maxSequences or precompile context) or raise "
                               "vm.max_map_count");
  }
  const models::Program prog = build();
  auto cp = std::make_shared<CompiledProgram>();
  cp->key = key;
  cp->inputs = prog.inputs;
  cp->outputs = prog.outputs;

  if (prog.partitions != static_cast<int64_t>(mesh_.size()))
    throw std::logic_error("program '" + key + "' is for " + std::to_string(prog.partitions) + " device(s), the mesh has " +
                           std::to_string(mesh_.size()));
  // What this entry is: everything that changes the compiled code, in the header and the name.
  // Not the device ids: an executable loads onto any devices of its mesh's size (Load()).
  const pjrt::Client& client = mesh_.client();
  // XLA_FLAGS is read by the plugin and changes its code generation (the test suite compiles at -O0: vitest.config.ts).
  const char* xla_flags = std::getenv("XLA_FLAGS");
  const std::string plugin = client.plugin()->path() + "\n" + client.platform_name() + " " + client.platform_version() +
                             (xla_flags && *xla_flags ? std::string("\nxla_flags ") + xla_flags : std::string());
  const std::string text_hash = std::to_string(Fnv1a64(prog.mlir)) + "-" + std::to_string(Fnv1a64(prog.mlir, 0x9e3779b97f4a7c15ull));
  const std::string header = std::string(kMagic) + "key " + key + "\ntext " + text_hash + "\nplugin " + plugin + "\nsignature " +
                             SignatureLine(cp->inputs, cp->outputs) + "\n";
  std::string path;
  if (!disk_dir_.empty()) {
    char name[40];
    std::snprintf(name, sizeof(name), "%016llx.pjrt", static_cast<unsigned long long>(Fnv1a64(header)));
    path = (std::filesystem::path(disk_dir_) / name).string();
    cp->exe = LoadFromDisk(path, header, *cp);
  }
  // Another replica may have compiled it (or be compiling it: wait for the lock, then look again).
  auto shared = [&]() -> std::unique_ptr<pjrt::LoadedExecutable> {
    std::string bytes;
    {
      std::lock_guard<std::mutex> lock(store_->mu);
      auto it = store_->serialized.find(header);
      if (it == store_->serialized.end()) return nullptr;
      bytes = it->second;
    }
    std::string why;
    auto exe = Load(bytes, *cp, why);
    if (exe) Emit(ProgramEvent::kDiskLoad, key, 0, "from another replica");
    return exe;
  };
  if (!cp->exe) cp->exe = shared();
  if (!cp->exe) {
    // At most compile_slots XLA compiles at once (the scheduler's, the background thread's,
    // precompile's workers, every replica's): each holds hundreds of MB of working memory at real
    // scale and they share the cores. A program another replica is compiling is waited for.
    CompileSlot slot(*store_, header);
    cp->exe = shared();
    if (!cp->exe) {
      Emit(ProgramEvent::kCompileStart, key);
      const auto t0 = std::chrono::steady_clock::now();
      cp->exe = mesh_.Compile(prog.mlir);
      ++compiles_;
#if defined(__GLIBC__)
      // A compile frees hundreds of MB of LLVM working memory back to malloc, which keeps it: hand
      // it back to the system, or the process's resident size carries every compile's peak.
      malloc_trim(0);
#endif
      Emit(ProgramEvent::kCompileDone, key, Since(t0));
      if (!path.empty()) SaveToDisk(path, header, *cp->exe);
      if (store_->share) {
        try {
          std::string bytes = cp->exe->Serialize();
          std::lock_guard<std::mutex> lock(store_->mu);
          store_->serialized.emplace(header, std::move(bytes));
        } catch (const std::exception&) {
          // A plugin that cannot serialize: the other replicas compile it themselves.
        }
      }
    }
  }
  const int64_t maps_after = ProcessMapCount();  // with this executable loaded
  last_process_maps = maps_after;
  cp->maps = std::max<int64_t>(0, maps_after - maps_before);
  return cp;
}

std::unique_ptr<pjrt::LoadedExecutable> ProgramCache::Load(const std::string& bytes, const CompiledProgram& p, std::string& why) {
  try {
    auto exe = mesh_.Deserialize(bytes);
    if (exe->num_outputs() != static_cast<int>(p.outputs.size())) {
      why = "the executable has " + std::to_string(exe->num_outputs()) + " outputs, the program " + std::to_string(p.outputs.size());
      return nullptr;
    }
    if (exe->devices() != mesh_.devices()) {
      why = "the plugin did not place it on " + mesh_.Key();
      return nullptr;
    }
    return exe;
  } catch (const std::exception& e) {
    why = std::string("the plugin cannot load it (") + e.what() + ")";
    return nullptr;
  }
}

std::unique_ptr<pjrt::LoadedExecutable> ProgramCache::LoadFromDisk(const std::string& path, const std::string& header,
                                                                   const CompiledProgram& p) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;  // an ordinary miss
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  auto reject = [&](const std::string& why) -> std::unique_ptr<pjrt::LoadedExecutable> {
    ++disk_rejects_;
    Emit(ProgramEvent::kDiskReject, p.key, 0, path + ": " + why + "; recompiling");
    return nullptr;
  };
  if (bytes.size() < header.size() || bytes.compare(0, header.size(), header) != 0) {
    const size_t eol = bytes.find("\nkey ");
    const std::string stored = eol == std::string::npos ? "no dflash header" : bytes.substr(eol + 5, bytes.find('\n', eol + 5) - eol - 5);
    return reject(bytes.rfind(kMagic, 0) == 0 ? "made for another program, plugin or version (" + stored + ")" : "not a dflash cache entry");
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::string why;
  auto exe = Load(bytes.substr(header.size()), p, why);
  if (!exe) return reject(why);
  ++disk_hits_;
  Emit(ProgramEvent::kDiskLoad, p.key, Since(t0));
  return exe;
}

void ProgramCache::SaveToDisk(const std::string& path, const std::string& header, const pjrt::LoadedExecutable& exe) {
  static std::atomic<uint64_t> counter{0};
  try {
    std::filesystem::create_directories(disk_dir_);
    const std::string bytes = exe.Serialize();
    const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                            std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())) + "." +
                            std::to_string(counter++);
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) throw std::runtime_error("short write");
    }
    std::filesystem::rename(tmp, path);  // atomic: readers see the old file or the whole new one
  } catch (const std::exception&) {
    // A read-only or full disk only costs a recompile next time.
  }
}

}  // namespace dflash::engine
