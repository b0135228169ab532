// Compiled-program cache: see program_cache.h.
#include "engine/program_cache.h"

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
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

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

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

ProgramCache::ProgramCache(std::shared_ptr<pjrt::Client> client, std::string disk_dir)
    : client_(std::move(client)), disk_dir_(std::move(disk_dir)) {}

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

CompiledProgram* ProgramCache::Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = programs_.find(key);
  return it == programs_.end() ? nullptr : it->second.get();
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
    std::unique_ptr<CompiledProgram> made;
    try {
      made = Make(key, build);
    } catch (const std::exception&) {
      // A failed background compile is retried (and reported) by the Get() that needs it.
    }
    lock.lock();
    in_flight_.erase(key);
    if (made) programs_.emplace(key, std::move(made));
    cv_.notify_all();
  }
}

CompiledProgram& ProgramCache::Get(const std::string& key, const std::function<models::Program()>& build) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = programs_.find(key);
    if (it != programs_.end()) return *it->second;
    if (!in_flight_.count(key)) break;
    cv_.wait(lock);  // the background thread is making it
  }
  in_flight_.insert(key);
  lock.unlock();
  std::unique_ptr<CompiledProgram> made;
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
  auto& ref = *made;
  programs_.emplace(key, std::move(made));
  cv_.notify_all();
  return ref;
}

std::unique_ptr<CompiledProgram> ProgramCache::Make(const std::string& key, const std::function<models::Program()>& build) {
  const models::Program prog = build();
  auto cp = std::make_unique<CompiledProgram>();
  cp->key = key;
  cp->inputs = prog.inputs;
  cp->outputs = prog.outputs;

  // What this entry is: everything that changes the compiled code, in the header and the name.
  const std::string plugin = client_->plugin()->path() + "\n" + client_->platform_name() + " " + client_->platform_version();
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
  if (!cp->exe) {
    // One XLA compile at a time (the scheduler's and the background thread's): their working
    // memory (hundreds of MB at real scale) would add up in the peak, and they share the cores.
    std::lock_guard<std::mutex> one_compile(compile_mu_);
    Emit(ProgramEvent::kCompileStart, key);
    const auto t0 = std::chrono::steady_clock::now();
    cp->exe = client_->Compile(prog.mlir);
    ++compiles_;
#if defined(__GLIBC__)
    // A compile frees hundreds of MB of LLVM working memory back to malloc, which keeps it: hand
    // it back to the system, or the process's resident size carries every compile's peak.
    malloc_trim(0);
#endif
    Emit(ProgramEvent::kCompileDone, key, Since(t0));
    if (!path.empty()) SaveToDisk(path, header, *cp->exe);
  }
  return cp;
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
  try {
    const auto t0 = std::chrono::steady_clock::now();
    auto exe = client_->DeserializeAndLoad(bytes.substr(header.size()));
    if (exe->num_outputs() != static_cast<int>(p.outputs.size()))
      return reject("the executable has " + std::to_string(exe->num_outputs()) + " outputs, the program " + std::to_string(p.outputs.size()));
    ++disk_hits_;
    Emit(ProgramEvent::kDiskLoad, p.key, Since(t0));
    return exe;
  } catch (const std::exception& e) {
    return reject(std::string("the plugin cannot load it (") + e.what() + ")");
  }
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
