# llguidance, the grammar engine (native/grammar/grammar.h), as a static library built by cargo
# from crates.io (native/grammar/llg: a crate that only re-exports it; Cargo.lock pins every
# crate). Included by CMakeLists.txt; defines the target `llguidance` and DFLASH_GRAMMAR_LINKED.
# Without cargo (or with -DDFLASH_GRAMMAR=OFF) the addon builds without a grammar engine and
# says so when a grammar is asked for.
option(DFLASH_GRAMMAR "Build the grammar engine (llguidance, needs cargo)" ON)
find_program(DFLASH_CARGO cargo HINTS $ENV{CARGO_HOME}/bin $ENV{HOME}/.cargo/bin)
set(DFLASH_GRAMMAR_LINKED OFF)
if(DFLASH_GRAMMAR AND NOT DFLASH_CARGO)
  message(WARNING "cargo (Rust) not found: building without the grammar engine (structured output is refused at run time)")
elseif(DFLASH_GRAMMAR)
  set(LLG_CRATE ${CMAKE_CURRENT_LIST_DIR}/llg)
  # One target directory for every build directory of this checkout (the addon's, the tests').
  set(DFLASH_CARGO_TARGET_DIR "${CMAKE_CURRENT_LIST_DIR}/../../.cargo-target" CACHE PATH "cargo target directory for llguidance")
  set(LLG_LIB ${DFLASH_CARGO_TARGET_DIR}/release/libllguidance_static.a)
  # The C header ships in the crate: fetch the crates now (configure time) to find it.
  execute_process(COMMAND ${DFLASH_CARGO} fetch --locked --manifest-path ${LLG_CRATE}/Cargo.toml
                  RESULT_VARIABLE LLG_FETCH OUTPUT_QUIET ERROR_VARIABLE LLG_FETCH_ERR)
  if(NOT LLG_FETCH EQUAL 0)
    message(FATAL_ERROR "cargo fetch of llguidance failed (crates.io unreachable?): ${LLG_FETCH_ERR}")
  endif()
  if(DEFINED ENV{CARGO_HOME})
    set(LLG_CARGO_HOME $ENV{CARGO_HOME})
  else()
    set(LLG_CARGO_HOME $ENV{HOME}/.cargo)
  endif()
  file(GLOB LLG_HEADER ${LLG_CARGO_HOME}/registry/src/*/llguidance-1.9.1/llguidance.h)
  list(GET LLG_HEADER 0 LLG_HEADER)
  if(NOT LLG_HEADER)
    message(FATAL_ERROR "llguidance.h not found under ${LLG_CARGO_HOME}/registry/src after cargo fetch")
  endif()
  get_filename_component(LLG_INCLUDE ${LLG_HEADER} DIRECTORY)
  add_custom_command(
    OUTPUT ${LLG_LIB}
    COMMAND ${CMAKE_COMMAND} -E env CARGO_TARGET_DIR=${DFLASH_CARGO_TARGET_DIR}
            ${DFLASH_CARGO} build --release --locked --manifest-path ${LLG_CRATE}/Cargo.toml
    DEPENDS ${LLG_CRATE}/Cargo.toml ${LLG_CRATE}/Cargo.lock ${LLG_CRATE}/src/lib.rs
    COMMENT "cargo build: llguidance (static library)" USES_TERMINAL VERBATIM)
  add_custom_target(llguidance_build DEPENDS ${LLG_LIB})
  add_library(llguidance STATIC IMPORTED GLOBAL)
  add_dependencies(llguidance llguidance_build)
  find_package(Threads REQUIRED)
  set_target_properties(llguidance PROPERTIES
    IMPORTED_LOCATION ${LLG_LIB}
    INTERFACE_INCLUDE_DIRECTORIES ${LLG_INCLUDE}
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
  set(DFLASH_GRAMMAR_LINKED ON)
endif()
