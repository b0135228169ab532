// Weight upload, tensor by tensor: see weights.h.
#include "engine/weights.h"

#include "models/moe.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <set>
#include <stdexcept>

namespace dflash::engine {
namespace {

// A read-only mapping of bytes [offset, offset + size) of a file (the mapping itself starts at
// the page boundary below offset). Unmapped on destruction, which drops the file pages from
// this process's resident set.
class MappedRange {
 public:
  MappedRange(const std::string& path, int64_t offset, int64_t size) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw std::runtime_error("cannot stat " + path);
    }
    if (offset < 0 || size < 0 || offset + size > st.st_size) {
      ::close(fd);
      throw std::runtime_error("bytes [" + std::to_string(offset) + ", " + std::to_string(offset + size) + ") lie past the end of " +
                               path + " (" + std::to_string(st.st_size) + " bytes; file truncated?)");
    }
    const int64_t page = ::sysconf(_SC_PAGESIZE);
    const int64_t start = offset / page * page;
    skip_ = offset - start;
    len_ = static_cast<size_t>(skip_ + size);
    if (len_ > 0) {
      base_ = ::mmap(nullptr, len_, PROT_READ, MAP_PRIVATE, fd, start);
      if (base_ == MAP_FAILED) {
        base_ = nullptr;
        ::close(fd);
        throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(errno));
      }
      ::madvise(base_, len_, MADV_SEQUENTIAL);
    }
    ::close(fd);
  }
  ~MappedRange() {
    if (base_) ::munmap(base_, len_);
  }
  MappedRange(const MappedRange&) = delete;
  MappedRange& operator=(const MappedRange&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(base_) + skip_; }

 private:
  void* base_ = nullptr;
  size_t len_ = 0;
  int64_t skip_ = 0;
};

pjrt::DType ParseDType(const std::string& s, const std::string& tensor) {
  if (s == "F32") return pjrt::DType::kF32;
  if (s == "BF16") return pjrt::DType::kBF16;
  if (s == "F16") return pjrt::DType::kF16;
  throw std::runtime_error("tensor " + tensor + " has dtype " + s + "; dflash loads F32, BF16 and F16 weights");
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do { ++e; m <<= 1; } while ((m & 0x400) == 0);
      bits = sign | ((112 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  int32_t e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {  // subnormal or zero, round to nearest even
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t m = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t m = mant >> 13;
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (m & 1))) ++m;
  if (m == 0x400u) {
    m = 0;
    ++e;
  }
  return static_cast<uint16_t>(e >= 0x1f ? (sign | 0x7c00u) : (sign | (static_cast<uint32_t>(e) << 10) | m));
}

float ToFloat(const uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { float f; std::memcpy(&f, p, 4); return f; }
  uint16_t h;
  std::memcpy(&h, p, 2);
  if (t == pjrt::DType::kBF16) { const uint32_t b = uint32_t(h) << 16; float f; std::memcpy(&f, &b, 4); return f; }
  return HalfToFloat(h);
}

void FromFloat(float f, uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { std::memcpy(p, &f, 4); return; }
  uint16_t h;
  if (t == pjrt::DType::kBF16) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) h = static_cast<uint16_t>((b >> 16) | 0x40);  // NaN stays NaN
    else h = static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1)) >> 16);             // round to nearest even
  } else {
    h = FloatToHalf(f);
  }
  std::memcpy(p, &h, 2);
}

std::string Dims(const std::vector<int64_t>& d) {
  std::string s;
  for (auto x : d) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "[" + s + "]";
}

// Bytes per element of the safetensors dtypes; 0 for a name we do not know.
int64_t ElementBytes(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"F64", 8}, {"I64", 8}, {"U64", 8}, {"C64", 8}, {"F32", 4}, {"I32", 4}, {"U32", 4}, {"F16", 2}, {"BF16", 2},
      {"I16", 2}, {"U16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// Where the data section of a safetensors file starts (8 + its header length) and the file size.
std::pair<int64_t, int64_t> DataSection(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
  struct stat st {};
  uint8_t len[8] = {};
  const bool ok = ::fstat(fd, &st) == 0 && ::pread(fd, len, 8, 0) == 8;
  ::close(fd);
  if (!ok) throw std::runtime_error(path + " is not a safetensors file: shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];  // little-endian
  if (n > static_cast<uint64_t>(st.st_size) - 8)
    throw std::runtime_error(path + ": header length " + std::to_string(n) + " does not fit in the file's " + std::to_string(st.st_size) + " bytes");
  return {8 + static_cast<int64_t>(n), static_cast<int64_t>(st.st_size)};
}

// "looked in model-00001-of-00002.safetensors, model-00002-of-00002.safetensors of /models/x":
// where a missing tensor was looked for, as lib/safetensors.ts requireTensor() says it.
std::string LookedIn(const std::vector<TensorSource>& sources) {
  std::set<std::string> files, dirs;
  for (const auto& s : sources) {
    const size_t slash = s.file.rfind('/');
    files.insert(slash == std::string::npos ? s.file : s.file.substr(slash + 1));
    dirs.insert(slash == std::string::npos ? "." : s.file.substr(0, slash));
  }
  if (files.empty()) return "looked in no files";
  std::string list, where;
  for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
  for (const auto& d : dirs) where += (where.empty() ? "" : ", ") + d;
  return "looked in " + list + " of " + where;
}

// Host memory for one tensor being assembled, mapped and unmapped on its own: a heap block of
// this size would stay in the allocator's free lists (and the resident set) after the load.
class StagingBuffer {
 public:
  explicit StagingBuffer(size_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map " + std::to_string(size_) + " bytes to assemble a weight: " + std::strerror(errno));
    data_ = static_cast<uint8_t*>(p);
  }
  ~StagingBuffer() {
    if (data_) ::munmap(data_, size_);
  }
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;
  uint8_t* data() { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_;
};

// A program input made at load of several checkpoint tensors: MoE experts stacked ("*" in the
// name) or the spec's parts concatenated.
bool IsMadeOfParts(const models::WeightSpec& spec) { return !spec.parts.empty() || spec.name.find('*') != std::string::npos; }

std::vector<std::string> PartsOf(const models::WeightSpec& spec) {
  return spec.parts.empty() ? models::StackedExpertSources(spec) : spec.parts;
}

}  // namespace

std::vector<uint8_t> EncodeFloats(const std::vector<float>& values, pjrt::DType dtype) {
  const int64_t w = pjrt::ByteSize(dtype);
  std::vector<uint8_t> out(values.size() * static_cast<size_t>(w));
  for (size_t i = 0; i < values.size(); ++i) FromFloat(values[i], out.data() + i * w, dtype);
  return out;
}

std::vector<float> DecodeFloats(const uint8_t* bytes, int64_t count, pjrt::DType dtype) {
  const int64_t w = pjrt::ByteSize(dtype);
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[i] = ToFloat(bytes + i * w, dtype);
  return out;
}

pjrt::DType CheckpointDtype(const std::vector<TensorSource>& sources) {
  std::map<std::string, int64_t> bytes;
  for (const auto& s : sources) bytes[s.dtype] += s.nbytes;
  std::string top = "F32";
  int64_t best = -1;
  for (const auto& [d, n] : bytes)
    if (n > best) best = n, top = d;
  return top == "BF16" ? pjrt::DType::kBF16 : top == "F16" ? pjrt::DType::kF16 : pjrt::DType::kF32;
}

void CheckTensorSources(const std::vector<TensorSource>& sources) {
  std::map<std::string, std::vector<const TensorSource*>> by_file;
  std::map<std::string, const TensorSource*> by_name;
  for (const auto& s : sources) {
    if (!by_name.emplace(s.name, &s).second)
      throw std::runtime_error("tensor " + s.name + " is given twice (" + by_name[s.name]->file + " and " + s.file + ")");
    const std::string where = "tensor " + s.name + " in " + s.file;
    if (s.offset < 0 || s.nbytes < 0)
      throw std::runtime_error(where + ": negative byte range [" + std::to_string(s.offset) + ", +" + std::to_string(s.nbytes) + ")");
    int64_t count = 1;
    for (auto d : s.shape) {
      if (d < 0) throw std::runtime_error(where + " has a negative dimension in shape " + Dims(s.shape));
      if (d != 0 && count > INT64_MAX / d) throw std::runtime_error(where + ": shape " + Dims(s.shape) + " has too many elements");
      count *= d;
    }
    const int64_t width = ElementBytes(s.dtype);
    if (width > 0 && (count > INT64_MAX / width || count * width != s.nbytes))
      throw std::runtime_error(where + ": " + std::to_string(s.nbytes) + " bytes for " + s.dtype + Dims(s.shape));
    by_file[s.file].push_back(&s);
  }
  for (auto& [file, list] : by_file) {
    const auto [data_start, size] = DataSection(file);
    std::sort(list.begin(), list.end(), [](const TensorSource* a, const TensorSource* b) { return a->offset < b->offset; });
    const TensorSource* prev = nullptr;
    for (const TensorSource* s : list) {
      // Both are non-negative int64 here, so their sum fits in uint64 (no overflow before the check).
      const std::string range = "bytes [" + std::to_string(s->offset) + ", " +
                                std::to_string(static_cast<uint64_t>(s->offset) + static_cast<uint64_t>(s->nbytes)) + ")";
      if (s->offset < data_start)
        throw std::runtime_error("tensor " + s->name + ": " + range + " of " + file + " lie in its header (the data starts at byte " +
                                 std::to_string(data_start) + ")");
      if (s->nbytes > size - s->offset)
        throw std::runtime_error("tensor " + s->name + ": " + range + " lie past the end of " + file + " (" + std::to_string(size) +
                                 " bytes; file truncated?)");
      if (prev && s->nbytes > 0 && s->offset < prev->offset + prev->nbytes)
        throw std::runtime_error("tensor " + s->name + ": " + range + " of " + file + " overlap tensor " + prev->name + " [" +
                                 std::to_string(prev->offset) + ", " + std::to_string(prev->offset + prev->nbytes) + ")");
      if (s->nbytes > 0 && (!prev || s->offset + s->nbytes > prev->offset + prev->nbytes)) prev = s;
    }
  }
}

std::vector<std::string> UploadWeights(pjrt::Client& client, const std::vector<models::WeightSpec>& specs,
                                       const std::vector<TensorSource>& sources, const std::string& prefix, WeightMap& out,
                                       const std::function<void(const LoadProgress&)>& progress, LoadProgress prog) {
  CheckTensorSources(sources);
  std::map<std::string, const TensorSource*> by_name;
  for (const auto& s : sources) by_name[s.name] = &s;

  // Check everything before the first byte moves.
  std::vector<const TensorSource*> picked;
  std::set<std::string> used;
  prog.tensors = 0;
  prog.bytes = 0;
  prog.total_tensors = static_cast<int64_t>(specs.size());
  prog.total_bytes = 0;
  for (const auto& spec : specs) {
    if (IsMadeOfParts(spec)) {
      // Parts along dim 0: one checkpoint tensor per expert, stacked (MoE: shape[1:] each), or
      // equal parts concatenated (spec.parts, e.g. gate_proj + up_proj: [shape[0] / n, shape[1:]]).
      const auto parts = PartsOf(spec);
      std::vector<int64_t> want(spec.shape.begin() + 1, spec.shape.end());
      if (!spec.parts.empty()) want.insert(want.begin(), spec.shape[0] / static_cast<int64_t>(parts.size()));
      for (const auto& part : parts) {
        auto pit = by_name.find(part);
        if (pit == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + part + "; " + LookedIn(sources));
        if (pit->second->shape != want)
          throw std::runtime_error("tensor " + part + " in " + pit->second->file + " has shape " + Dims(pit->second->shape) + ", expected " + Dims(want));
        ParseDType(pit->second->dtype, part);
        prog.total_bytes += pit->second->nbytes;
        used.insert(part);
      }
      picked.push_back(nullptr);
      continue;
    }
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + spec.name + "; " + LookedIn(sources));
    const TensorSource& src = *it->second;
    if (src.shape != spec.shape)
      throw std::runtime_error("tensor " + spec.name + " in " + src.file + " has shape " + Dims(src.shape) + ", expected " + Dims(spec.shape));
    const pjrt::DType have = ParseDType(src.dtype, spec.name);
    int64_t count = 1;
    for (auto d : spec.shape) count *= d;
    if (count * pjrt::ByteSize(have) != src.nbytes)
      throw std::runtime_error("tensor " + spec.name + " in " + src.file + ": " + std::to_string(src.nbytes) + " bytes for " +
                               src.dtype + Dims(src.shape));
    prog.total_bytes += src.nbytes;
    picked.push_back(&src);
    used.insert(spec.name);
  }

  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    if (!picked[i]) {
      // Made of parts: one host buffer of this one tensor (per-tensor staging, never the model),
      // filled part after part (row-major, so each part is one contiguous run).
      const int64_t out_size = pjrt::ByteSize(spec.dtype);
      int64_t count = 1;
      for (auto d : spec.shape) count *= d;
      StagingBuffer whole(static_cast<size_t>(count * out_size));
      uint8_t* dst = whole.data();
      for (const auto& part : PartsOf(spec)) {
        const TensorSource& src = *by_name.at(part);
        const pjrt::DType have = ParseDType(src.dtype, part);
        const int64_t n = src.nbytes / pjrt::ByteSize(have);
        MappedRange map(src.file, src.offset, src.nbytes);
        if (have == spec.dtype) std::memcpy(dst, map.data(), static_cast<size_t>(src.nbytes));
        else
          for (int64_t k = 0; k < n; ++k) FromFloat(ToFloat(map.data() + k * pjrt::ByteSize(have), have), dst + k * out_size, spec.dtype);
        dst += n * out_size;
        prog.bytes += src.nbytes;
      }
      out[prefix + spec.name] = client.BufferFromHost(whole.data(), spec.dtype, spec.shape);
      prog.tensors += 1;
      if (progress) progress(prog);
      continue;
    }
    const TensorSource& src = *picked[i];
    const pjrt::DType have = ParseDType(src.dtype, spec.name);
    std::unique_ptr<pjrt::Buffer> buf;
    {
      MappedRange map(src.file, src.offset, src.nbytes);
      if (have == spec.dtype) {
        buf = client.BufferFromHost(map.data(), spec.dtype, spec.shape);
      } else {
        // Another dtype than the engine's: convert this one tensor into a tensor-sized buffer.
        const int64_t count = src.nbytes / pjrt::ByteSize(have);
        const int64_t in_size = pjrt::ByteSize(have), out_size = pjrt::ByteSize(spec.dtype);
        std::vector<uint8_t> tmp(static_cast<size_t>(count * out_size));
        for (int64_t k = 0; k < count; ++k) FromFloat(ToFloat(map.data() + k * in_size, have), tmp.data() + k * out_size, spec.dtype);
        buf = client.BufferFromHost(tmp.data(), spec.dtype, spec.shape);
      }
    }
    out[prefix + spec.name] = std::move(buf);
    prog.tensors += 1;
    prog.bytes += src.nbytes;
    if (progress) progress(prog);
  }
  std::vector<std::string> unused;
  for (const auto& s : sources)
    if (!used.count(s.name)) unused.push_back(s.name);
  return unused;
}

}  // namespace dflash::engine
