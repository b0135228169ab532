// ELF validation before dlopen: see elf_check.h.
#include "pjrt/elf_check.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace dflash::pjrt {
namespace {

constexpr const char* kTruncatedHint = " (an interrupted install or copy?)";

std::string Num(uint64_t v) { return std::to_string(v); }

// Closes the descriptor on every return path.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Reads exactly `n` bytes at `offset`; false on a short read or an error.
bool ReadAt(int fd, void* out, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

// "[start, start + count * entry)" must lie inside a file of `size` bytes; overflow-safe.
bool TableFits(uint64_t start, uint64_t count, uint64_t entry, uint64_t size, uint64_t* end) {
  if (entry != 0 && count > (UINT64_MAX - start) / entry) return false;
  *end = start + count * entry;
  return *end <= size;
}

std::string Truncated(const std::string& path, const std::string& what, uint64_t end, uint64_t size) {
  return path + " is truncated: " + what + " ends at byte " + Num(end) + " but the file has " + Num(size) +
         " bytes" + kTruncatedHint;
}

}  // namespace

int HostElfMachine() {
#if defined(__x86_64__)
  return EM_X86_64;
#elif defined(__aarch64__)
  return EM_AARCH64;
#elif defined(__powerpc64__)
  return EM_PPC64;
#elif defined(__s390x__)
  return EM_S390;
#elif defined(__riscv)
  return EM_RISCV;
#else
#error "dflash: unknown host architecture for the ELF check"
#endif
}

std::string ElfMachineName(int machine) {
  switch (machine) {
    case EM_X86_64: return "x86-64";
    case EM_AARCH64: return "aarch64 (arm64)";
    case EM_386: return "x86 (32-bit)";
    case EM_ARM: return "arm (32-bit)";
    case EM_PPC64: return "ppc64";
    case EM_S390: return "s390x";
    case EM_RISCV: return "riscv";
    default: return "machine " + std::to_string(machine);
  }
}

std::string ElfProblem(const std::string& path) {
  Fd f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return path + " cannot be opened: " + std::strerror(errno);
  struct stat st;
  if (fstat(f.fd, &st) != 0) return path + " cannot be examined: " + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return path + " is not a regular file";
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  unsigned char ident[EI_NIDENT] = {};
  const size_t got = static_cast<size_t>(std::max<ssize_t>(0, pread(f.fd, ident, EI_NIDENT, 0)));
  if (got < SELFMAG || std::memcmp(ident, ELFMAG, SELFMAG) != 0)
    return path + " is not a shared library: it does not start with the ELF magic bytes (" + Num(size) +
           "-byte file)";
  if (got < EI_NIDENT || size < sizeof(Elf64_Ehdr))
    return Truncated(path, "the ELF header", sizeof(Elf64_Ehdr), size);
  if (ident[EI_CLASS] != ELFCLASS64)
    return path + " is a " + (ident[EI_CLASS] == ELFCLASS32 ? std::string("32-bit") : "unknown-class") +
           " ELF file; this dflash build loads 64-bit libraries only";
  if (ident[EI_DATA] != ELFDATA2LSB)
    return path + " is a big-endian ELF file; this host is little-endian";

  Elf64_Ehdr eh;
  if (!ReadAt(f.fd, &eh, sizeof eh, 0)) return Truncated(path, "the ELF header", sizeof eh, size);
  if (eh.e_machine != HostElfMachine())
    return path + " is built for " + ElfMachineName(eh.e_machine) + " but this host is " +
           ElfMachineName(HostElfMachine());
  if (eh.e_type != ET_DYN)
    return path + " is not a shared library (ELF type " + Num(eh.e_type) + ", a shared object is type " +
           Num(ET_DYN) + ")";

  uint64_t end = 0;
  if (eh.e_phnum == 0) return path + " has no program headers: nothing for dlopen to map";
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    return path + " has program header entries of " + Num(eh.e_phentsize) + " bytes (ELF64 needs " +
           Num(sizeof(Elf64_Phdr)) + ")";
  if (!TableFits(eh.e_phoff, eh.e_phnum, eh.e_phentsize, size, &end))
    return Truncated(path, "its program header table", end, size);

  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  if (!ReadAt(f.fd, ph.data(), ph.size() * sizeof(Elf64_Phdr), eh.e_phoff))
    return path + " could not be read: " + std::strerror(errno);
  for (size_t i = 0; i < ph.size(); ++i) {
    if (ph[i].p_type != PT_LOAD) continue;
    if (ph[i].p_filesz > UINT64_MAX - ph[i].p_offset)
      return path + " is corrupt: segment " + Num(i) + " has an impossible offset and size";
    end = ph[i].p_offset + ph[i].p_filesz;
    if (end > size) return Truncated(path, "segment " + Num(i), end, size);
  }
  // Section headers are not read by dlopen, but a table past the end of the file still means the
  // file was cut (segments are checked first: they are what dlopen would trip on). e_shnum == 0
  // with an offset means extended numbering (the count is in section 0): one entry must fit then.
  if (eh.e_shoff != 0) {
    const uint64_t count = eh.e_shnum == 0 ? 1 : eh.e_shnum;
    if (!TableFits(eh.e_shoff, count, eh.e_shentsize, size, &end))
      return Truncated(path, "its section header table", end, size);
  }
  return "";
}

void CheckElfFile(const std::string& path) {
  const std::string problem = ElfProblem(path);
  if (!problem.empty()) throw std::runtime_error("cannot load PJRT plugin: " + problem);
}

}  // namespace dflash::pjrt
