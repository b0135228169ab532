// Weight upload by mmap: see weights.h.
#include "engine/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <stdexcept>

namespace dflash::engine {
namespace {

// One read-only mapping of a whole file, unmapped when the upload is done.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw std::runtime_error("cannot stat " + path);
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (data_ == MAP_FAILED) {
        data_ = nullptr;
        throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(errno));
      }
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  size_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  void* data_ = nullptr;
  size_t size_ = 0;
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

float ToFloat(const uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { float f; std::memcpy(&f, p, 4); return f; }
  uint16_t h;
  std::memcpy(&h, p, 2);
  if (t == pjrt::DType::kBF16) { uint32_t b = uint32_t(h) << 16; float f; std::memcpy(&f, &b, 4); return f; }
  return HalfToFloat(h);
}

void FromFloat(float f, uint8_t* p, pjrt::DType t) {
  if (t == pjrt::DType::kF32) { std::memcpy(p, &f, 4); return; }
  if (t != pjrt::DType::kBF16) throw std::runtime_error("cannot convert weights to f16");
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b += 0x7fff + ((b >> 16) & 1);  // round to nearest even
  const uint16_t h = static_cast<uint16_t>(b >> 16);
  std::memcpy(p, &h, 2);
}

}  // namespace

std::vector<std::unique_ptr<pjrt::Buffer>> UploadWeights(
    pjrt::Client& client, const std::vector<models::WeightSpec>& specs,
    const std::vector<TensorSource>& sources, const std::function<void(const LoadProgress&)>& progress) {
  std::map<std::string, const TensorSource*> by_name;
  for (const auto& s : sources) by_name[s.name] = &s;

  LoadProgress prog;
  prog.total_tensors = static_cast<int64_t>(specs.size());
  std::vector<const TensorSource*> picked;
  for (const auto& spec : specs) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + spec.name);
    const TensorSource& src = *it->second;
    if (src.shape != spec.shape) {
      std::string want, got;
      for (auto d : spec.shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      for (auto d : src.shape) got += (got.empty() ? "" : ",") + std::to_string(d);
      throw std::runtime_error("tensor " + spec.name + " in " + src.file + " has shape [" + got + "], expected [" + want + "]");
    }
    ParseDType(src.dtype, spec.name);
    prog.total_bytes += src.nbytes;
    picked.push_back(&src);
  }

  std::map<std::string, std::unique_ptr<MappedFile>> files;
  std::vector<std::unique_ptr<pjrt::Buffer>> out;
  out.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    const TensorSource& src = *picked[i];
    auto& file = files[src.file];
    if (!file) file = std::make_unique<MappedFile>(src.file);
    if (src.offset < 0 || src.nbytes < 0 || static_cast<size_t>(src.offset + src.nbytes) > file->size()) {
      throw std::runtime_error("tensor " + spec.name + " lies past the end of " + src.file + " (file truncated?)");
    }
    const pjrt::DType have = ParseDType(src.dtype, spec.name);
    const uint8_t* data = file->data() + src.offset;
    int64_t count = 1;
    for (auto d : spec.shape) count *= d;
    if (have == spec.dtype) {
      if (count * pjrt::ByteSize(have) != src.nbytes) throw std::runtime_error("tensor " + spec.name + " byte size does not match its shape");
      out.push_back(client.BufferFromHost(data, spec.dtype, spec.shape));
    } else {
      // A tensor stored in another float type than the rest of the model: convert just this one.
      std::vector<uint8_t> tmp(static_cast<size_t>(count * pjrt::ByteSize(spec.dtype)));
      const int64_t in_size = pjrt::ByteSize(have), out_size = pjrt::ByteSize(spec.dtype);
      if (count * in_size != src.nbytes) throw std::runtime_error("tensor " + spec.name + " byte size does not match its shape");
      for (int64_t k = 0; k < count; ++k) FromFloat(ToFloat(data + k * in_size, have), tmp.data() + k * out_size, spec.dtype);
      out.push_back(client.BufferFromHost(tmp.data(), spec.dtype, spec.shape));
    }
    prog.tensors += 1;
    prog.bytes += src.nbytes;
    if (progress) progress(prog);
  }
  return out;
}

}  // namespace dflash::engine
