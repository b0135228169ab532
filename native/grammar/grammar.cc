// The grammar engine's interface over llguidance's C API (see grammar.h).
#include "grammar/grammar.h"

#include <algorithm>
#include <stdexcept>

#if DFLASH_GRAMMAR
#include "llguidance.h"
#endif

namespace dflash::grammar {

#if DFLASH_GRAMMAR

bool Available() { return true; }

namespace {
LlgTokenizer* Tok(void* h) { return static_cast<LlgTokenizer*>(h); }
// llguidance's message on one line, without its "<non-verbose/>" marker.
std::string Brief(const char* message) {
  std::string m = message ? message : "";
  const std::string marker = "<non-verbose/>";
  if (auto at = m.find(marker); at != std::string::npos) m.erase(at, marker.size());
  for (char& c : m)
    if (c == '\n') c = ' ';
  while (!m.empty() && m.back() == ' ') m.pop_back();
  if (m == "NoExtensionBias" || m.empty()) return "grammar: the grammar admits no token here (it can match nothing from this point on)";
  return "grammar: " + m;
}
LlgMatcher* Mat(void* h) { return static_cast<LlgMatcher*>(h); }
}  // namespace

Vocabulary::Vocabulary(const std::string& tokenizer_json, int64_t vocab_size, const std::vector<int32_t>& eos)
    : vocab_size_(vocab_size), engine_vocab_(eos.empty() ? vocab_size + 1 : vocab_size) {
  LlgTokenizerInitV2 init = {};
  init.struct_size = sizeof(init);
  init.vocab_size = static_cast<uint32_t>(engine_vocab_);
  init.tok_eos = static_cast<LlgToken>(eos.empty() ? vocab_size : eos[0]);
  std::vector<LlgToken> extra;
  if (eos.size() > 1) extra.assign(eos.begin() + 1, eos.end());
  init.tok_eos_extra = extra.empty() ? nullptr : extra.data();
  init.tok_eos_extra_count = static_cast<uint32_t>(extra.size());
  init.tokenizer_json = tokenizer_json.c_str();
  // Masks need only the bytes of every token; llguidance tokenizes text itself only for forced
  // tokens, which dflash does not use, so its greedy tokenizer is enough.
  init.use_approximate_greedy_tokenize_fn = true;
  char error[512] = {};
  handle_ = llg_new_tokenizer_v2(&init, error, sizeof error);
  if (!handle_) throw std::runtime_error(std::string("grammar: cannot read the tokenizer: ") + error);
}

Vocabulary::~Vocabulary() {
  if (handle_) llg_free_tokenizer(Tok(handle_));
}

Matcher::Matcher(std::shared_ptr<Vocabulary> vocab, const Spec& spec) : vocab_(std::move(vocab)) {
  static const char* kinds[] = {"json_schema", "json_object", "regex", "lark"};
  bool known = false;
  for (const char* k : kinds) known |= spec.kind == k;
  if (!known) throw GrammarError("grammar: unknown kind '" + spec.kind + "' (json_schema, json_object, regex, lark)");
  LlgConstraintInit init;
  llg_constraint_init_set_defaults(&init, Tok(vocab_->handle()));
  init.log_stderr_level = 0;
  init.log_buffer_level = 0;
  init.limits.verbose_errors = false;  // short messages, not a dump of the grammar and its state
  handle_ = llg_new_matcher(&init, spec.kind.c_str(), spec.kind == "json_object" ? "" : spec.text.c_str());
  if (llg_matcher_is_error(Mat(handle_))) {
    const std::string why = llg_matcher_get_error(Mat(handle_));
    llg_free_matcher(Mat(handle_));
    handle_ = nullptr;
    throw GrammarError("grammar (" + spec.kind + "): " + why);
  }
}

Matcher::~Matcher() {
  if (handle_) llg_free_matcher(Mat(handle_));
}

void Matcher::Mask(uint32_t* words) {
  const size_t bytes = static_cast<size_t>(vocab_->engine_mask_words()) * 4, model_words = static_cast<size_t>(vocab_->mask_words());
  if (llg_matcher_get_mask_byte_size(Mat(handle_)) != bytes) throw std::logic_error("grammar: mask size differs from the vocabulary's");
  uint32_t* out = words;
  if (bytes / 4 != model_words) scratch_.resize(bytes / 4), out = scratch_.data();
  if (llg_matcher_compute_mask_into(Mat(handle_), out, bytes) != 0) throw std::runtime_error(Brief(llg_matcher_get_error(Mat(handle_))));
  if (out != words) std::copy_n(out, model_words, words);
  // A virtual end token (a model without EOS) is not a token the model can write.
  if (vocab_->size() % 32 != 0) words[model_words - 1] &= (1u << (vocab_->size() % 32)) - 1;
  for (size_t i = 0; i < model_words; ++i)
    if (words[i]) return;
  throw std::runtime_error("grammar: no token of the vocabulary can continue the output here (the grammar admits nothing the model can write)");
}

int32_t Matcher::Valid(const int32_t* tokens, size_t n) {
  if (n == 0) return 0;
  const int32_t v = llg_matcher_validate_tokens(Mat(handle_), reinterpret_cast<const LlgToken*>(tokens), n);
  if (v < 0) throw std::runtime_error(Brief(llg_matcher_get_error(Mat(handle_))));
  return v;
}

void Matcher::Consume(const int32_t* tokens, size_t n) {
  if (n == 0) return;
  if (llg_matcher_consume_tokens(Mat(handle_), reinterpret_cast<const LlgToken*>(tokens), n) != 0)
    throw std::logic_error(Brief(llg_matcher_get_error(Mat(handle_))));
}

void Matcher::Rollback(size_t n) {
  if (n > 0 && llg_matcher_rollback(Mat(handle_), n) != 0) throw std::logic_error(Brief(llg_matcher_get_error(Mat(handle_))));
}

bool Matcher::stopped() const { return llg_matcher_is_stopped(Mat(handle_)); }

#else  // no grammar engine in this build

bool Available() { return false; }

namespace {
[[noreturn]] void Missing() { throw Unsupported(Vocabulary::kMissing); }
}  // namespace

Vocabulary::Vocabulary(const std::string&, int64_t vocab_size, const std::vector<int32_t>&) : vocab_size_(vocab_size), engine_vocab_(vocab_size) {
  Missing();
}
Vocabulary::~Vocabulary() = default;
Matcher::Matcher(std::shared_ptr<Vocabulary>, const Spec&) { Missing(); }
Matcher::~Matcher() = default;
void Matcher::Mask(uint32_t*) { Missing(); }
int32_t Matcher::Valid(const int32_t*, size_t) { Missing(); }
void Matcher::Consume(const int32_t*, size_t) { Missing(); }
void Matcher::Rollback(size_t) { Missing(); }
bool Matcher::stopped() const { return false; }

#endif

}  // namespace dflash::grammar
