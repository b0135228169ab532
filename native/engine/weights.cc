// Weight upload, tensor by tensor: see weights.h.
#include "engine/weights.h"

#include "engine/float_codec.h"
#include "engine/gguf_blocks.h"
#include "engine/mapped_file.h"
#include "engine/quant_expand.h"
#include "engine/quant_repack.h"
#include "models/quant.h"
#include "models/moe.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <cstring>
#include <set>
#include <tuple>
#include <stdexcept>

namespace dflash::engine {
namespace {

// The dtype a source's elements reach the upload in: its own for the plain floats, f32 for a
// GGUF block format (expanded at load).
pjrt::DType ParseDType(const std::string& s, const std::string& tensor) {
  if (s == "F32" || FindBlockFormat(s)) return pjrt::DType::kF32;
  if (s == "BF16") return pjrt::DType::kBF16;
  if (s == "F16") return pjrt::DType::kF16;
  // The payloads of quantized checkpoints (models/quant.h), uploaded as they are.
  if (s == "I8") return pjrt::DType::kS8;
  if (s == "U8") return pjrt::DType::kU8;
  if (s == "F8_E4M3") return pjrt::DType::kF8E4M3FN;
  if (const Repack* r = FindRepack(s)) return r->out;  // AWQ words, packed zero points, ... (quant_repack.h)
  throw std::runtime_error("tensor " + tensor + " has dtype " + s +
                           "; dflash loads F32, BF16 and F16 weights, I8 / F8_E4M3 / packed int4 payloads of quantized checkpoints, "
                           "and from GGUF files Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K");
}

bool IsFloatDType(pjrt::DType t) { return t == pjrt::DType::kF32 || t == pjrt::DType::kBF16 || t == pjrt::DType::kF16; }

// A source reaches a spec in the spec's dtype: floats convert among themselves; a narrow payload
// must already be what the program reads (a quantized weight is never re-encoded at load).
void CheckConvertible(const TensorSource& src, pjrt::DType have, pjrt::DType want) {
  if (have == want || (IsFloatDType(have) && IsFloatDType(want))) return;
  throw std::runtime_error("tensor " + src.name + " in " + src.file + " is " + src.dtype + " but the model reads it as " +
                           pjrt::DTypeName(want) + (IsFloatDType(want) ? " (a quantized tensor where the config says the weight is not "
                                                                          "quantized: check quantization_config's ignore list)"
                                                                        : " (the config's quantization scheme says so)"));
}

// A source whose bytes are not its elements as they are: a GGUF block format, or rows to reorder.
bool NeedsDecoding(const TensorSource& s) { return FindBlockFormat(s.dtype) != nullptr || FindRepack(s.dtype) != nullptr || s.rope_heads > 0; }

// The dtype of the elements the upload reads: f32 for a source expanded at load.
pjrt::DType UploadedDType(const TensorSource& s) {
  const pjrt::DType own = ParseDType(s.dtype, s.name);
  return NeedsDecoding(s) && !FindRepack(s.dtype) ? pjrt::DType::kF32 : own;
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

// Where the data section of a safetensors file starts (8 + its header length) and the file size;
// for a GGUF file (data_start >= 0, from lib/gguf.ts) the given start.
std::pair<int64_t, int64_t> DataSection(const std::string& path, int64_t data_start) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
  struct stat st {};
  uint8_t len[8] = {};
  const bool ok = ::fstat(fd, &st) == 0 && (data_start >= 0 || ::pread(fd, len, 8, 0) == 8);
  ::close(fd);
  if (data_start >= 0) {
    if (!ok) throw std::runtime_error("cannot stat weights file " + path);
    return {data_start, static_cast<int64_t>(st.st_size)};
  }
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

// A program input made at load of several checkpoint tensors stacked along dim 0: MoE experts
// ("*" in the name) or the spec's parts.
bool IsMadeOfParts(const models::WeightSpec& spec) { return !spec.parts.empty() || spec.name.find('*') != std::string::npos; }

std::vector<std::string> PartsOf(const models::WeightSpec& spec) {
  return spec.parts.empty() ? models::StackedExpertSources(spec) : spec.parts;
}

}  // namespace

pjrt::DType CheckpointDtype(const std::vector<TensorSource>& sources) {
  std::map<std::string, int64_t> bytes;
  // A quantized checkpoint's dtype is its unquantized tensors' (embeddings, norms, scales).
  for (const auto& s : sources)
    if (s.dtype != "I8" && s.dtype != "U8" && s.dtype != "F8_E4M3") bytes[s.dtype] += s.nbytes;
  std::string top = "F32";
  int64_t best = -1;
  for (const auto& [d, n] : bytes)
    if (n > best) best = n, top = d;
  return top == "BF16" ? pjrt::DType::kBF16 : top == "F16" ? pjrt::DType::kF16 : pjrt::DType::kF32;
}

std::string QuantizedFormat(const std::vector<TensorSource>& sources) {
  std::map<std::string, int64_t> bytes;
  int64_t total = 0, top = 0;
  std::string name;
  for (const auto& s : sources) {
    total += s.nbytes;
    if (FindBlockFormat(s.dtype) && (bytes[s.dtype] += s.nbytes) > top) top = bytes[s.dtype], name = s.dtype;
  }
  int64_t quantized = 0;
  for (const auto& [d, n] : bytes) quantized += n;
  return 2 * quantized > total ? name : "";
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
    if (const BlockFormat* f = FindBlockFormat(s.dtype)) {
      // Blocks run along a row: a row length that is not whole blocks cannot be stored.
      if (s.shape.empty() || BlockBytes(*f, s.shape.back()) < 0 || BlockBytes(*f, count) != s.nbytes)
        throw std::runtime_error(where + ": " + std::to_string(s.nbytes) + " bytes for " + s.dtype + Dims(s.shape) + " (blocks of " +
                                 std::to_string(f->block_values) + " values in " + std::to_string(f->block_bytes) + " bytes along each row)");
    }
    if (const Repack* r = FindRepack(s.dtype); r && r->raw_bytes(s.shape) != s.nbytes)
      throw std::runtime_error(where + ": " + std::to_string(s.nbytes) + " bytes do not hold " + s.dtype + Dims(s.shape) +
                               " (quantized checkpoint layout; lib/quantization.ts)");
    if (s.rope_heads > 0 && (s.shape.empty() || s.shape[0] % (2 * s.rope_heads) != 0))
      throw std::runtime_error(where + Dims(s.shape) + ": rows do not split into " + std::to_string(s.rope_heads) + " heads of pairs");
    by_file[s.file].push_back(&s);
  }
  for (auto& [file, list] : by_file) {
    const auto [data_start, size] = DataSection(file, list.front()->data_start);
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

namespace {

// A run of a spec's elements (row-major over spec.shape) that one checkpoint tensor holds: the
// whole tensor, or one stacked part (an expert, gate_proj or up_proj) of shape[1:].
struct Piece {
  const TensorSource* src;
  pjrt::DType have;
  int64_t first, count;  // spec elements [first, first + count)
  // A quantized weight expanded at load: src is its payload, `scale` its scales.
  const TensorSource* scale = nullptr;
  const TensorSource* zero = nullptr;  // with zero points
  const models::QuantLayout* expand = nullptr;
  int64_t src_first = 0;  // of the source's elements, where the piece's start (a row range)
};

// "name[a:b]" -> (name, a, b); a plain name -> (name, -1, -1).
std::tuple<std::string, int64_t, int64_t> RowRange(const std::string& part) {
  const size_t open = part.rfind('[');
  if (open == std::string::npos || part.back() != ']') return {part, -1, -1};
  const size_t colon = part.find(':', open);
  if (colon == std::string::npos) throw std::logic_error("weights: bad row range in part " + part);
  return {part.substr(0, open), std::stoll(part.substr(open + 1, colon - open - 1)), std::stoll(part.substr(colon + 1, part.size() - colon - 2))};
}

// A small tensor (scales, zero points) as f32 values, decoded or converted.
std::vector<float> Floats(const TensorSource& s);

int64_t Product(const std::vector<int64_t>& d, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to; ++i) n *= d[i];
  return n;
}

// A source expanded to f32 in a staging buffer: its blocks decoded (GGUF block formats) or its
// floats widened, then its rows put back in Hugging Face's order where the GGUF reordered them.
std::unique_ptr<StagingBuffer> Decode(const TensorSource& s, const uint8_t* raw) {
  const int64_t count = Product(s.shape, 0, s.shape.size());
  if (const Repack* r = FindRepack(s.dtype)) {
    auto out = std::make_unique<StagingBuffer>(static_cast<size_t>(count * pjrt::ByteSize(r->out)));
    r->run(raw, s.shape, out->data());
    return out;
  }
  auto out = std::make_unique<StagingBuffer>(static_cast<size_t>(count) * sizeof(float));
  float* f = reinterpret_cast<float*>(out->data());
  if (const BlockFormat* format = FindBlockFormat(s.dtype)) {
    format->decode(raw, count / format->block_values, f);
  } else {
    const pjrt::DType have = ParseDType(s.dtype, s.name);
    for (int64_t k = 0; k < count; ++k) f[k] = ToFloat(raw + k * pjrt::ByteSize(have), have);
  }
  if (s.rope_heads > 0) UnpermuteRopeRows(f, s.shape[0], count / s.shape[0], s.rope_heads);
  return out;
}

// MXFP4's scales: u8 E8M0 exponents, 2^(s - 127) each (255 = NaN).
std::vector<float> E8m0Floats(const TensorSource& s) {
  if (s.dtype != "U8") throw std::runtime_error("tensor " + s.name + " in " + s.file + " is " + s.dtype + ", not the U8 E8M0 scales of MXFP4");
  MappedRange map(s.file, s.offset, s.nbytes);
  std::vector<float> f(static_cast<size_t>(s.nbytes));
  for (size_t i = 0; i < f.size(); ++i) f[i] = models::E8m0ToFloat(map.data()[i]);
  return f;
}

std::vector<float> Floats(const TensorSource& s) {
  MappedRange map(s.file, s.offset, s.nbytes);
  const auto d = Decode(s, map.data());  // widened floats, or a re-layout to f32
  const float* f = reinterpret_cast<const float*>(d->data());
  return std::vector<float>(f, f + Product(s.shape, 0, s.shape.size()));
}

// Puts one spec on the mesh's devices: replicated, or device k gets its part along the split
// dimension. A device's part is read from the mapped file where it is one contiguous run in the
// engine's dtype (a tensor split by rows, or any tensor on one device); otherwise it is gathered
// (and converted) into a staging buffer of that part's size alone, never of the whole model.
std::unique_ptr<pjrt::Array> UploadSpec(const pjrt::Mesh& mesh, const models::WeightSpec& spec, const std::vector<Piece>& pieces) {
  const int64_t n = static_cast<int64_t>(mesh.size());
  const int split = n > 1 ? spec.sharding.dim : -1;
  const int64_t out_size = pjrt::ByteSize(spec.dtype);
  std::vector<std::unique_ptr<MappedRange>> maps;
  std::vector<std::unique_ptr<StagingBuffer>> decoded;  // per piece: its f32 expansion, or null
  std::vector<const uint8_t*> bytes;
  for (const Piece& p : pieces) {
    maps.push_back(std::make_unique<MappedRange>(p.src->file, p.src->offset, p.src->nbytes));
    if (p.expand) {
      // (rows, cols) of this part: the spec's last dim is the row length; the rest are rows.
      const int64_t cols = spec.shape.back(), rows = p.count / cols;
      auto payload = NeedsDecoding(*p.src) ? Decode(*p.src, maps.back()->data()) : nullptr;
      const std::vector<float> scale = p.expand->payload == models::QuantLayout::Payload::kMxfp4 ? E8m0Floats(*p.scale) : Floats(*p.scale);
      const std::vector<float> zero = p.zero ? Floats(*p.zero) : std::vector<float>{};
      decoded.push_back(std::make_unique<StagingBuffer>(static_cast<size_t>(p.count) * sizeof(float)));
      ExpandQuantized(*p.expand, payload ? payload->data() : maps.back()->data(), scale.data(), p.zero ? zero.data() : nullptr, rows,
                      cols, reinterpret_cast<float*>(decoded.back()->data()));
    } else {
      decoded.push_back(NeedsDecoding(*p.src) ? Decode(*p.src, maps.back()->data()) : nullptr);
    }
    bytes.push_back(decoded.back() ? decoded.back()->data() : maps.back()->data());
    if (decoded.back()) maps.back().reset();  // the file's pages go as soon as they are expanded
  }
  // Copies spec elements [first, first + count) into dst (in spec.dtype), piece by piece.
  auto copy_run = [&](int64_t first, int64_t count, uint8_t* dst) {
    for (size_t i = 0; i < pieces.size() && count > 0; ++i) {
      const Piece& p = pieces[i];
      if (first >= p.first + p.count || first < p.first) continue;
      const int64_t take = std::min(count, p.first + p.count - first), in_size = pjrt::ByteSize(p.have);
      const uint8_t* src = bytes[i] + (p.src_first + first - p.first) * in_size;
      if (p.have == spec.dtype) std::memcpy(dst, src, static_cast<size_t>(take * out_size));
      else
        for (int64_t k = 0; k < take; ++k) FromFloat(ToFloat(src + k * in_size, p.have), dst + k * out_size, spec.dtype);
      first += take, count -= take, dst += take * out_size;
    }
    if (count > 0) throw std::logic_error("weights: spec " + spec.name + " has elements no checkpoint tensor holds");
  };
  const bool direct = pieces.size() == 1 && pieces[0].have == spec.dtype && pieces[0].src_first == 0;
  const int64_t total = Product(spec.shape, 0, spec.shape.size());
  if (split < 0) {
    if (direct) return mesh.Upload(bytes[0], spec.dtype, spec.shape);
    StagingBuffer whole(static_cast<size_t>(total * out_size));
    copy_run(0, total, whole.data());
    return mesh.Upload(whole.data(), spec.dtype, spec.shape);
  }
  // Device k: for every index of the dims before `split`, one run of `block` elements.
  std::vector<int64_t> shard_dims = spec.shape;
  shard_dims[split] /= n;
  const int64_t inner = Product(spec.shape, split + 1, spec.shape.size()), block = shard_dims[split] * inner;
  const int64_t outer = Product(spec.shape, 0, split), stride = spec.shape[split] * inner;
  std::vector<std::unique_ptr<pjrt::Buffer>> shards;
  for (int64_t k = 0; k < n; ++k) {
    if (direct && split == 0) {
      shards.push_back(mesh.client().BufferFromHost(bytes[0] + k * block * out_size, spec.dtype, shard_dims, mesh.devices()[k]));
      continue;
    }
    StagingBuffer part(static_cast<size_t>(outer * block * out_size));
    for (int64_t o = 0; o < outer; ++o) copy_run(o * stride + k * block, block, part.data() + o * block * out_size);
    shards.push_back(mesh.client().BufferFromHost(part.data(), spec.dtype, shard_dims, mesh.devices()[k]));
  }
  return std::make_unique<pjrt::Array>(std::move(shards), split);
}

}  // namespace

std::vector<std::string> UploadWeights(const pjrt::Mesh& mesh, const std::vector<models::WeightSpec>& specs,
                                       const std::vector<TensorSource>& sources, const std::string& prefix, WeightMap& out,
                                       const std::function<void(const LoadProgress&)>& progress, LoadProgress prog) {
  CheckTensorSources(sources);
  std::map<std::string, const TensorSource*> by_name;
  for (const auto& s : sources) by_name[s.name] = &s;

  // Check everything before the first byte moves.
  std::vector<std::vector<Piece>> plan;
  std::set<std::string> used;
  prog.tensors = 0;
  prog.bytes = 0;
  prog.total_tensors = static_cast<int64_t>(specs.size());
  prog.total_bytes = 0;
  // The checkpoint tensors one spec is read from (in order along dim 0), checked.
  auto find_pieces = [&](const models::WeightSpec& spec) {
    std::vector<Piece> pieces;
    if (IsMadeOfParts(spec)) {
      // Parts along dim 0: one checkpoint tensor per expert, stacked (MoE: shape[1:] each), or
      // spec.parts (gate_proj and up_proj as gate_up_proj), stacked (2, I, H) or concatenated (2I, H).
      const auto parts = PartsOf(spec);
      if (!spec.parts.empty() && std::get<1>(RowRange(spec.parts[0])) >= 0) {
        // Row ranges of checkpoint tensors, concatenated along dim 0.
        const std::vector<int64_t> rest(spec.shape.begin() + 1, spec.shape.end());
        const int64_t inner = Product(rest, 0, rest.size());
        int64_t at = 0;
        for (const std::string& part : spec.parts) {
          const auto [name, a, b] = RowRange(part);
          auto pit = by_name.find(name);
          if (pit == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + name + "; " + LookedIn(sources));
          const auto& shape = pit->second->shape;
          if (a < 0 || b <= a || shape.empty() || b > shape[0] || std::vector<int64_t>(shape.begin() + 1, shape.end()) != rest)
            throw std::runtime_error("tensor " + name + " in " + pit->second->file + " has shape " + Dims(shape) + ", expected rows " +
                                     std::to_string(a) + ".." + std::to_string(b) + " of " + Dims(rest) + " each");
          if (NeedsDecoding(*pit->second)) throw std::runtime_error("tensor " + name + ": a row range of a " + pit->second->dtype + " tensor");
          CheckConvertible(*pit->second, UploadedDType(*pit->second), spec.dtype);
          pieces.push_back({pit->second, UploadedDType(*pit->second), at * inner, (b - a) * inner, nullptr, nullptr, nullptr, a * inner});
          prog.total_bytes += (b - a) * inner * pjrt::ByteSize(UploadedDType(*pit->second));
          used.insert(name);
          at += b - a;
        }
        if (at != spec.shape[0]) throw std::logic_error("weights: the row ranges of " + spec.name + " hold " + std::to_string(at) + " rows, not " + std::to_string(spec.shape[0]));
        return pieces;
      }
      std::vector<int64_t> want(spec.shape.begin() + 1, spec.shape.end());
      if (!spec.parts.empty() && spec.shape[0] != static_cast<int64_t>(parts.size()))
        want.insert(want.begin(), spec.shape[0] / static_cast<int64_t>(parts.size()));
      const int64_t each = Product(want, 0, want.size());
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string& part = parts[i];
        auto pit = by_name.find(part);
        if (pit == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + part + "; " + LookedIn(sources));
        if (pit->second->shape != want)
          throw std::runtime_error("tensor " + part + " in " + pit->second->file + " has shape " + Dims(pit->second->shape) + ", expected " + Dims(want));
        CheckConvertible(*pit->second, UploadedDType(*pit->second), spec.dtype);
        pieces.push_back({pit->second, UploadedDType(*pit->second), static_cast<int64_t>(i) * each, each});
        prog.total_bytes += pit->second->nbytes;
        used.insert(part);
      }
      return pieces;
    }
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) throw std::runtime_error("checkpoint is missing tensor " + spec.name + "; " + LookedIn(sources));
    const TensorSource& src = *it->second;
    if (src.shape != spec.shape)
      throw std::runtime_error("tensor " + spec.name + " in " + src.file + " has shape " + Dims(src.shape) + ", expected " + Dims(spec.shape));
    const pjrt::DType have = UploadedDType(src);
    CheckConvertible(src, have, spec.dtype);
    const int64_t count = Product(spec.shape, 0, spec.shape.size());
    if (!NeedsDecoding(src) && count * pjrt::ByteSize(have) != src.nbytes)
      throw std::runtime_error("tensor " + spec.name + " in " + src.file + ": " + std::to_string(src.nbytes) + " bytes for " +
                               src.dtype + Dims(src.shape));
    pieces.push_back({&src, have, 0, count});
    prog.total_bytes += src.nbytes;
    used.insert(spec.name);
    return pieces;
  };
  for (const auto& spec : specs) {
    const int64_t n = spec.sharding.dim >= 0 && mesh.size() > 1 ? static_cast<int64_t>(mesh.size()) : 1;
    if (spec.sharding.dim >= 0 && (spec.sharding.dim >= static_cast<int>(spec.shape.size()) || spec.shape[spec.sharding.dim] % n != 0))
      throw std::logic_error("weights: " + spec.name + Dims(spec.shape) + " does not split into " + std::to_string(n) + " parts");
    if (!spec.expand_from.narrow()) {
      plan.push_back(find_pieces(spec));
      continue;
    }
    // Stored narrow, expanded here: each part is its payload and its scales, as the device would
    // hold them (models/quant.h StoredSpecs), expanded to f32 in a staging buffer.
    models::WeightSpec narrow = spec;
    narrow.quant = spec.expand_from, narrow.expand_from = {}, narrow.sharding = {};
    const auto stored = models::StoredSpecs({narrow}, 1);
    const auto payloads = find_pieces(stored[0]), scales = find_pieces(stored[1]);
    const auto zeros = stored.size() > 2 ? find_pieces(stored[2]) : std::vector<Piece>{};
    const int64_t each = Product(spec.shape, 0, spec.shape.size()) / static_cast<int64_t>(payloads.size());
    std::vector<Piece> pieces;
    for (size_t i = 0; i < payloads.size(); ++i)
      pieces.push_back({payloads[i].src, pjrt::DType::kF32, static_cast<int64_t>(i) * each, each, scales[i].src,
                        zeros.empty() ? nullptr : zeros[i].src, &spec.expand_from});
    plan.push_back(std::move(pieces));
  }

  for (size_t i = 0; i < specs.size(); ++i) {
    out[prefix + specs[i].name] = UploadSpec(mesh, specs[i], plan[i]);
    prog.tensors += 1;
    for (const Piece& p : plan[i])
      prog.bytes += p.src_first > 0 || p.count * pjrt::ByteSize(p.have) < p.src->nbytes ? p.count * pjrt::ByteSize(p.have)  // a row range
                                                                                       : p.src->nbytes + (p.scale ? p.scale->nbytes : 0) + (p.zero ? p.zero->nbytes : 0);
    if (progress) progress(prog);
  }
  std::vector<std::string> unused;
  for (const auto& s : sources)
    if (!used.count(s.name)) unused.push_back(s.name);
  return unused;
}

}  // namespace dflash::engine
