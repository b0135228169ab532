// Validation of a shared library file before dlopen. dlopen maps the file's PT_LOAD segments
// without comparing them with the file size, so a truncated plugin (an interrupted pip install,
// a partial copy) maps pages past the end of the file and the first touch kills the process with
// SIGBUS. Checking the ELF headers against the file size first turns that into an error that
// names the file and what is wrong with it.
#pragma once
#include <string>

namespace dflash::pjrt {

// The problem that stops `path` from being dlopen'ed safely on this host, or "" when none was
// found: not readable, not ELF, not 64-bit little-endian, built for another machine, not a shared
// object, or a program header table, section header table or PT_LOAD segment reaching past the
// end of the file. Each message starts with the path.
std::string ElfProblem(const std::string& path);

// Throws std::runtime_error with ElfProblem(path) when it is not empty.
void CheckElfFile(const std::string& path);

// The ELF e_machine value of the host this code was compiled for (EM_X86_64, EM_AARCH64, ...).
int HostElfMachine();

// A readable name for an ELF e_machine value ("x86-64", "aarch64", "machine 243").
std::string ElfMachineName(int machine);

}  // namespace dflash::pjrt
