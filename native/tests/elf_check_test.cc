// ElfProblem: a small well-formed ELF64 shared object made here, then broken one field at a time
// (magic, class, byte order, machine, type, header tables, segments), and cuts of the real CPU
// plugin ($DFLASH_PJRT_PLUGIN) at several points. Also the libtpu lock-holder lookup.
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "pjrt/elf_check.h"
#include "pjrt/libtpu_host.h"

namespace fs = std::filesystem;
using dflash::pjrt::ElfProblem;

namespace {

// One scratch directory for the whole binary, removed at exit (the plugin cuts are large).
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "dflash-elf-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
} g_scratch;

fs::path TempDir() { return g_scratch.path; }

std::string Write(const std::string& name, const std::vector<char>& bytes) {
  const fs::path p = TempDir() / name;
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p.string();
}

// A minimal ET_DYN image for this host: header, two program headers (one PT_LOAD covering the
// first 4096 bytes, one PT_DYNAMIC), 4096 bytes of body, then a section header table of 3.
struct Image {
  Elf64_Ehdr eh{};
  Elf64_Phdr ph[2]{};
  size_t body = 4096;
  uint16_t sections = 3;

  Image() {
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_DYN;
    eh.e_machine = static_cast<Elf64_Half>(dflash::pjrt::HostElfMachine());
    eh.e_version = EV_CURRENT;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 2;
    eh.e_shentsize = sizeof(Elf64_Shdr);
    ph[0].p_type = PT_LOAD;
    ph[0].p_offset = 0;
    ph[0].p_filesz = body;
    ph[0].p_memsz = body;
    ph[1].p_type = PT_DYNAMIC;
    ph[1].p_offset = 512;
    ph[1].p_filesz = 64;
  }

  std::vector<char> Bytes() {
    eh.e_shoff = body;
    eh.e_shnum = sections;
    std::vector<char> out(body + sections * sizeof(Elf64_Shdr), 0);
    std::memcpy(out.data(), &eh, sizeof eh);
    std::memcpy(out.data() + sizeof eh, ph, sizeof ph);
    return out;
  }
};

TEST(ElfCheck, AcceptsAWellFormedSharedObject) {
  EXPECT_EQ(ElfProblem(Write("good.so", Image().Bytes())), "");
}

TEST(ElfCheck, RejectsFilesThatAreNotElf) {
  const std::string missing = (TempDir() / "missing.so").string();
  EXPECT_EQ(ElfProblem(missing), missing + " cannot be opened: No such file or directory");
  EXPECT_NE(ElfProblem(TempDir().string()).find("is not a regular file"), std::string::npos);
  const std::string text = Write("text.so", {'{', '"', 'a', '"', '}'});
  EXPECT_EQ(ElfProblem(text), text + " is not a shared library: it does not start with the ELF magic bytes (5-byte file)");
  const std::string empty = Write("empty.so", {});
  EXPECT_NE(ElfProblem(empty).find("does not start with the ELF magic"), std::string::npos);
  auto header_only = Image().Bytes();
  header_only.resize(20);
  const std::string short_header = Write("short-header.so", header_only);
  EXPECT_EQ(ElfProblem(short_header), short_header + " is truncated: the ELF header ends at byte 64 but the file has 20 bytes (an interrupted install or copy?)");
}

TEST(ElfCheck, RejectsOtherClassesByteOrdersMachinesAndTypes) {
  Image i32;
  i32.eh.e_ident[EI_CLASS] = ELFCLASS32;
  EXPECT_NE(ElfProblem(Write("elf32.so", i32.Bytes())).find("is a 32-bit ELF file"), std::string::npos);
  Image be;
  be.eh.e_ident[EI_DATA] = ELFDATA2MSB;
  EXPECT_NE(ElfProblem(Write("be.so", be.Bytes())).find("big-endian"), std::string::npos);
  Image other;
  const int foreign = dflash::pjrt::HostElfMachine() == EM_X86_64 ? EM_AARCH64 : EM_X86_64;
  other.eh.e_machine = static_cast<Elf64_Half>(foreign);
  const std::string p = Write("other-arch.so", other.Bytes());
  EXPECT_EQ(ElfProblem(p), p + " is built for " + dflash::pjrt::ElfMachineName(foreign) + " but this host is " +
                               dflash::pjrt::ElfMachineName(dflash::pjrt::HostElfMachine()));
  Image exec;
  exec.eh.e_type = ET_REL;
  EXPECT_NE(ElfProblem(Write("object.o", exec.Bytes())).find("is not a shared library (ELF type 1"), std::string::npos);
}

TEST(ElfCheck, RejectsHeaderTablesAndSegmentsPastTheEnd) {
  Image ph;
  ph.eh.e_phnum = 60000;
  const std::string p1 = Write("phdrs.so", ph.Bytes());
  EXPECT_NE(ElfProblem(p1).find("is truncated: its program header table ends at byte " + std::to_string(64 + 60000 * 56)), std::string::npos);

  auto bytes = Image().Bytes();
  bytes.resize(bytes.size() - 10);  // the section header table loses its last bytes
  const std::string p2 = Write("shdrs.so", bytes);
  EXPECT_NE(ElfProblem(p2).find("is truncated: its section header table ends at byte"), std::string::npos);

  Image seg;
  seg.ph[0].p_filesz = 1 << 20;
  const std::string p3 = Write("segment.so", seg.Bytes());
  const size_t size = fs::file_size(p3);
  EXPECT_EQ(ElfProblem(p3), p3 + " is truncated: segment 0 ends at byte 1048576 but the file has " + std::to_string(size) +
                                " bytes (an interrupted install or copy?)");
  Image overflow;
  overflow.ph[0].p_offset = UINT64_MAX - 8;
  EXPECT_NE(ElfProblem(Write("overflow.so", overflow.Bytes())).find("impossible offset and size"), std::string::npos);
  Image bad_entry;
  bad_entry.eh.e_phentsize = 32;
  EXPECT_NE(ElfProblem(Write("entry.so", bad_entry.Bytes())).find("program header entries of 32 bytes"), std::string::npos);
}

TEST(ElfCheck, CutsOfTheRealPluginAreTruncationsNamingTheFile) {
  const char* plugin = std::getenv("DFLASH_PJRT_PLUGIN");
  if (!plugin) GTEST_SKIP() << "DFLASH_PJRT_PLUGIN not set";
  EXPECT_EQ(ElfProblem(plugin), "");
  std::ifstream in(plugin, std::ios::binary);
  const std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t cut : {size_t{1} << 20, all.size() / 2, all.size() - 1}) {
    const std::string p = Write("cut-" + std::to_string(cut) + ".so", std::vector<char>(all.begin(), all.begin() + cut));
    const std::string problem = ElfProblem(p);
    EXPECT_EQ(problem.rfind(p + " is truncated: ", 0), 0u) << problem;
    EXPECT_NE(problem.find("but the file has " + std::to_string(cut) + " bytes"), std::string::npos) << problem;
    EXPECT_THROW(dflash::pjrt::CheckElfFile(p), std::runtime_error);
    fs::remove(p);
  }
}

TEST(LibtpuHost, NamesTheProcessHoldingTheLockAndExplainsOnlyLockErrors) {
  const std::string lock = (TempDir() / "libtpu_lockfile").string();
  EXPECT_EQ(dflash::pjrt::LibtpuLockHolder(lock), "");  // no file
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {  // holds a POSIX write lock, as libtpu does, until killed
    const int fd = open(lock.c_str(), O_RDWR | O_CREAT, 0666);
    struct flock l = {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    fcntl(fd, F_SETLK, &l);
    (void)!write(ready[1], "x", 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  const std::string holder = dflash::pjrt::LibtpuLockHolder(lock);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(holder.rfind("pid " + std::to_string(child) + " (", 0), 0u) << holder;
  EXPECT_EQ(dflash::pjrt::LibtpuLockHolder(lock), "");  // released with the process

  EXPECT_EQ(dflash::pjrt::ExplainLibtpuLockError("some other failure", "/x/libtpu.so"), "some other failure");
  EXPECT_EQ(dflash::pjrt::ExplainLibtpuLockError("libtpu_lockfile", "/x/cpu_plugin.so"), "libtpu_lockfile");
  EXPECT_TRUE(dflash::pjrt::IsLibtpu("/site/libtpu/libtpu.so"));
  EXPECT_FALSE(dflash::pjrt::IsLibtpu("/site/libtpu/other.so"));
}

}  // namespace
