// CheckTensorSources: the native engine's own check of the byte ranges it is asked to upload, so a
// list built by anything but lib/safetensors.ts cannot make it read the JSON header as weights,
// read past the file, or hand one tensor's bytes to two tensors. One small safetensors-shaped file
// (8-byte length, 24-byte header, 32 data bytes) and one bad source list per rule.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/weights.h"

namespace fs = std::filesystem;
using dflash::engine::CheckTensorSources;
using dflash::engine::TensorSource;

namespace {

constexpr int64_t kHeader = 24, kData = 32, kDataStart = 8 + kHeader;

// A file laid out like a safetensors file: the length, `kHeader` bytes of JSON text, `kData` bytes.
std::string MakeFile() {
  std::string tmpl = (fs::temp_directory_path() / "dflash-weights-XXXXXX").string();
  const int fd = mkstemp(tmpl.data());
  ::close(fd);
  std::ofstream out(tmpl, std::ios::binary);
  const char len[8] = {static_cast<char>(kHeader), 0, 0, 0, 0, 0, 0, 0};
  out.write(len, 8);
  out << std::string(kHeader, ' ');
  out << std::string(kData, '\0');
  return tmpl;
}

struct File {
  std::string path = MakeFile();
  ~File() { fs::remove(path); }
};

TensorSource F32(const std::string& file, const std::string& name, int64_t offset, int64_t count) {
  return TensorSource{name, file, offset, 4 * count, "F32", {count}};
}

// The message CheckTensorSources throws for `sources`, or "" when it accepts them.
std::string Problem(const std::vector<TensorSource>& sources) {
  try {
    CheckTensorSources(sources);
    return "";
  } catch (const std::runtime_error& e) {
    return e.what();
  }
}

}  // namespace

TEST(CheckTensorSources, AcceptsRangesInsideTheDataSection) {
  File f;
  EXPECT_EQ(Problem({F32(f.path, "a", kDataStart, 4), F32(f.path, "b", kDataStart + 16, 4)}), "");
  EXPECT_EQ(Problem({F32(f.path, "empty", kDataStart + kData, 0)}), "");  // zero bytes at the very end
}

TEST(CheckTensorSources, RefusesARangeInTheHeader) {
  File f;
  const std::string m = Problem({F32(f.path, "w", kDataStart - 8, 2)});
  EXPECT_NE(m.find("tensor w: bytes [24, 32) of " + f.path + " lie in its header (the data starts at byte 32)"), std::string::npos) << m;
  EXPECT_NE(Problem({F32(f.path, "w", 0, 1)}).find("lie in its header"), std::string::npos);
}

TEST(CheckTensorSources, RefusesNegativeRanges) {
  File f;
  TensorSource s = F32(f.path, "w", -8, 2);
  EXPECT_NE(Problem({s}).find("tensor w in " + f.path + ": negative byte range [-8, +8)"), std::string::npos) << Problem({s});
  s = F32(f.path, "w", kDataStart, 2);
  s.nbytes = -8;
  EXPECT_NE(Problem({s}).find("negative byte range"), std::string::npos);
}

TEST(CheckTensorSources, RefusesARangePastTheEnd) {
  File f;
  const std::string m = Problem({F32(f.path, "w", kDataStart + 16, 8)});
  EXPECT_NE(m.find("tensor w: bytes [48, 80) lie past the end of " + f.path + " (64 bytes"), std::string::npos) << m;
  // Sizes near INT64_MAX must not wrap around the end-of-file comparison.
  TensorSource huge{"h", f.path, kDataStart, INT64_MAX - 4, "U8", {INT64_MAX - 4}};
  EXPECT_NE(Problem({huge}).find("past the end"), std::string::npos) << Problem({huge});
}

TEST(CheckTensorSources, RefusesOverlappingRanges) {
  File f;
  const std::string m = Problem({F32(f.path, "a", kDataStart, 4), F32(f.path, "b", kDataStart + 8, 2)});
  EXPECT_NE(m.find("tensor b: bytes [40, 48) of " + f.path + " overlap tensor a [32, 48)"), std::string::npos) << m;
  // The same range twice, and a range inside a longer earlier one that a shorter one follows.
  EXPECT_NE(Problem({F32(f.path, "a", kDataStart, 2), F32(f.path, "b", kDataStart, 2)}).find("overlap"), std::string::npos);
  EXPECT_NE(Problem({F32(f.path, "long", kDataStart, 8), F32(f.path, "x", kDataStart + 4, 1), F32(f.path, "y", kDataStart + 24, 1)})
                .find("tensor x"),
            std::string::npos);
}

TEST(CheckTensorSources, RefusesSizesThatDisagreeWithShapeAndDtype) {
  File f;
  TensorSource s = F32(f.path, "w", kDataStart, 4);
  s.shape = {2, 3};
  EXPECT_NE(Problem({s}).find("tensor w in " + f.path + ": 16 bytes for F32[2,3]"), std::string::npos) << Problem({s});
  s.shape = {-1, 4};
  EXPECT_NE(Problem({s}).find("negative dimension"), std::string::npos);
  s.shape = {INT64_MAX / 2, 4};
  EXPECT_NE(Problem({s}).find("too many elements"), std::string::npos) << Problem({s});
}

TEST(CheckTensorSources, RefusesANameGivenTwice) {
  File f;
  const std::string m = Problem({F32(f.path, "w", kDataStart, 4), F32(f.path, "w", kDataStart + 16, 4)});
  EXPECT_NE(m.find("tensor w is given twice (" + f.path + " and " + f.path + ")"), std::string::npos) << m;
}

TEST(CheckTensorSources, NamesAFileThatIsNotSafetensors) {
  const std::string path = (fs::temp_directory_path() / "dflash-weights-short").string();
  std::ofstream(path, std::ios::binary) << "abc";
  EXPECT_NE(Problem({F32(path, "w", 0, 0)}).find(path + " is not a safetensors file"), std::string::npos);
  std::ofstream(path, std::ios::binary) << std::string("\xff\0\0\0\0\0\0\0{}", 10);
  EXPECT_NE(Problem({F32(path, "w", 0, 0)}).find("header length 255 does not fit in the file's 10 bytes"), std::string::npos)
      << Problem({F32(path, "w", 0, 0)});
  fs::remove(path);
  EXPECT_NE(Problem({F32(path, "w", 0, 0)}).find("cannot open weights file " + path), std::string::npos);
}
