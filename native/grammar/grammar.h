// The grammar engine behind one small interface: constrained decoding for JSON schemas, "any
// JSON object", regular expressions and Lark grammars, through llguidance (Microsoft's grammar
// engine, a maintained library: native/grammar/llg builds its C API from crates.io). A Vocabulary
// is made once per engine from the model's tokenizer.json; a Matcher per constrained sequence
// gives the tokens allowed next as a bitmask over the model's vocabulary, takes the tokens the
// target committed, and rolls back the ones a speculative step rejected.
//
// A build without llguidance (node-gyp's fallback, no cargo) compiles this file too: Available()
// is false and every constructor throws saying so.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dflash::grammar {

// Whether this build links the grammar engine.
bool Available();

// What constrains a sequence: kind "json_schema" (text: the schema as JSON), "json_object" (any
// JSON object), "regex" or "lark" (text: the grammar).
struct Spec {
  std::string kind;
  std::string text;
};

// Thrown for a grammar the engine refuses (the message says what is wrong, from llguidance).
struct GrammarError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Thrown when this engine cannot take grammars at all (no grammar engine in the build, no
// tokenizer): not the request's fault.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Vocabulary {
 public:
  // Why a build without llguidance refuses grammars.
  static constexpr const char* kMissing =
      "this build of dflash has no grammar engine: llguidance is built by cargo (Rust) when the addon is built with CMake; "
      "rebuild with cargo on the PATH (`npm run build:native`)";
  // tokenizer_json: the contents of the model's tokenizer.json (the bytes of every token);
  // vocab_size: the model's (logit) vocabulary, which may exceed the tokenizer's; eos: the ids
  // that end generation (the first is the grammar's own end token; without any, the grammar gets
  // a virtual one past the vocabulary: a sequence then ends when its grammar is complete).
  // Throws std::runtime_error.
  Vocabulary(const std::string& tokenizer_json, int64_t vocab_size, const std::vector<int32_t>& eos);
  ~Vocabulary();
  Vocabulary(const Vocabulary&) = delete;
  Vocabulary& operator=(const Vocabulary&) = delete;
  int64_t size() const { return vocab_size_; }
  int64_t mask_words() const { return (vocab_size_ + 31) / 32; }
  // The grammar engine's own mask size (one more token with a virtual end token).
  int64_t engine_mask_words() const { return (engine_vocab_ + 31) / 32; }
  void* handle() const { return handle_; }  // LlgTokenizer*

 private:
  void* handle_ = nullptr;
  int64_t vocab_size_;
  int64_t engine_vocab_;
};

class Matcher {
 public:
  // Compiles `spec` for `vocab`: throws GrammarError naming what is wrong.
  Matcher(std::shared_ptr<Vocabulary> vocab, const Spec& spec);
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // The tokens allowed next, bit t of words[t / 32] (vocab->mask_words() words). Throws
  // std::runtime_error when the grammar admits no token here (a grammar that can match nothing).
  void Mask(uint32_t* words);
  // How many of `tokens` (in order) the grammar accepts from here; the state does not change.
  int32_t Valid(const int32_t* tokens, size_t n);
  // Takes tokens the grammar accepts (checked with Valid first); throws std::logic_error otherwise.
  void Consume(const int32_t* tokens, size_t n);
  // Undoes the last n taken tokens.
  void Rollback(size_t n);
  // The grammar is complete and allows nothing but the end: the sequence ends here.
  bool stopped() const;

 private:
  std::shared_ptr<Vocabulary> vocab_;
  void* handle_ = nullptr;  // LlgMatcher*
  std::vector<uint32_t> scratch_;  // the engine's mask when it is wider than the model's
};

}  // namespace dflash::grammar
