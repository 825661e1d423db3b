// The engines of Postfix's pattern tables and of its UTF-8 case folding, as Postfix uses
// them: the C library's regcomp()/regexec() for regexp: tables (dict_regexp.c), libpcre2-8
// for pcre: tables (dict_pcre.c) and ICU's ucasemap_utf8FoldCase() for casefold()
// (casefold.c). Rule files are parsed in TypeScript (src/lib/tables/pattern-rules.ts);
// this file compiles the patterns and runs Postfix's first-match search over a whole table
// in one call, so that a lookup crosses into C++ once.
//
//   PatternProgram(engine)                 engine: 0 POSIX regex, 1 PCRE2
//     compile(pattern, flags, jitKeyLimit) -> {index, groups} | {error, offset}
//         jitKeyLimit (PCRE2): the longest key that PCRE2's JIT may match instead of the
//         interpreter (-1: none), see src/lib/tables/pcre-work.ts
//     compile(pattern, flags, -1, requiredTexts) (POSIX): NUL-separated texts that every match
//         contains (src/lib/tables/regexp-literal.ts); a key without one is no match, without regexec()
//     setRules(rules: Int32Array, offsets: Int32Array)
//         rules: RULE_FIELDS ints per rule: kind (0 match, 1 if, 2 endif), first pattern,
//         first negated?, second pattern (-1: none), second negated?, largest $number,
//         index of the ENDIF (-1: none)
//     search(key, from) -> rule index | -1 | {rule, warnings, resume}
//         on the main thread, bounded: PCRE2 runs under smaller limits and the search
//         stops after SYNC_BUDGET_NS; then `resume` names the rule to go on with in
//         searchAsync(), which gives the same answer as an unbounded search would.
//         The captures of the matching rule are left in `offsets`.
//     searchAsync(key, from) -> Promise<{rule, warnings, offsets, ns}>
//         in a thread of the addon's own pool, with Postfix's own limits (PCRE2's
//         defaults); ns: how long the search took there.
//     interpreterWork(index, key) -> the smallest match limit under which the interpreter
//         finishes (for tests of the bound in pcre-work.ts); -1: not even under the default
//   casefold(bytes) -> bytes                ICU full case folding, U_FOLD_CASE_DEFAULT

#include <napi.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <regex.h>
#include <locale.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <time.h>
#include <unicode/ucasemap.h>
#include <unicode/utypes.h>
#include <unicode/uversion.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int ENGINE_POSIX = 0;
constexpr int ENGINE_PCRE = 1;
constexpr int RULE_MATCH = 0;
constexpr int RULE_IF = 1;
constexpr int RULE_FIELDS = 7;
// On the main thread a search gives way to a worker thread after this long, and PCRE2 runs
// there with limits small enough that one pattern stays well inside it.
constexpr int64_t SYNC_BUDGET_NS = 2'000'000;
constexpr uint32_t SYNC_MATCH_LIMIT = 100'000;
// A POSIX pattern with back-references can take exponential time, and even a plain one
// is slow on a long key: those are matched in a worker thread.
constexpr size_t SYNC_POSIX_KEY_LIMIT = 4096;

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Postfix runs in the C locale (it never calls setlocale()); regcomp() and regexec() are
// locale-dependent, so they run in the C locale here whatever the process's is.
locale_t cLocale() {
  static locale_t c = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(0));
  return c;
}

class CLocaleScope {
 public:
  CLocaleScope() : saved_(uselocale(cLocale())) {}
  ~CLocaleScope() { uselocale(saved_); }
 private:
  locale_t saved_;
};

// Keys and patterns are Postfix byte strings: JavaScript latin1 strings, one char per byte.
std::string latin1Arg(const Napi::CallbackInfo& info, size_t i) {
  napi_env env = info.Env();
  napi_value value = info[i];
  size_t length = 0;
  if (napi_get_value_string_latin1(env, value, nullptr, 0, &length) != napi_ok)
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  std::string out(length, '\0');
  napi_get_value_string_latin1(env, value, out.data(), length + 1, &length);
  return out;
}

// Postfix matches C strings: nothing after a NUL byte.
void truncateAtNul(std::string& s) {
  size_t nul = s.find('\0');
  if (nul != std::string::npos) s.resize(nul);
}

struct Rule {
  int kind, first, firstNegated, second, secondNegated, maxSub, endif;
};

struct Warning {
  int rule;
  std::string message;
};

struct SearchResult {
  int rule = -1;
  int resume = -1;
  // The search could not be finished (the C library faulted): the lookup is a RETRY.
  bool failed = false;
  std::vector<int32_t> offsets;
  std::vector<Warning> warnings;
};

struct PosixPattern {
  regex_t re;
  bool backrefs;
  // Every match contains each of them (ASCII lowercase when icase).
  std::vector<std::string> literals;
  bool icase = false;
  // Held across IsolatedRegexec()'s fork: no other thread is inside regexec() on this
  // pattern (holding its internal lock) when the child is made.
  mutable std::mutex isolation;
};

// regexec()'s answer when the child running it died.
constexpr int REGEXEC_CRASHED = -1;

// regexec() for a pattern with back-references, in a child process as Postfix's own
// process runs it: glibc recurses without bound on some of them and dies of SIGSEGV with
// its heap locks taken, which no signal handler can undo in a process that goes on. The
// child shares the compiled pattern (copy-on-write), sends back the answer and the
// submatches, and exits; a child that dies is REGEXEC_CRASHED. Called only in the search
// pool's threads (a fork costs a millisecond or two; back-references are rare).
int IsolatedRegexec(const PosixPattern& p, const std::string& key, size_t nmatch, regmatch_t* pmatch) {
  std::lock_guard<std::mutex> hold(p.isolation);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return regexec(&p.re, key.c_str(), nmatch, pmatch, 0);
  pid_t child = fork();
  if (child < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    return regexec(&p.re, key.c_str(), nmatch, pmatch, 0);
  }
  if (child == 0) {
    // No handler of the parent's (ours, Node's) in the way: a fault ends the child.
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    close(pipefd[0]);
    int err = regexec(&p.re, key.c_str(), nmatch, pmatch, 0);
    ssize_t ignored = write(pipefd[1], &err, sizeof(err));
    if (nmatch > 0) ignored = write(pipefd[1], pmatch, nmatch * sizeof(regmatch_t));
    (void)ignored;
    _exit(0);
  }
  close(pipefd[1]);
  int err = REGEXEC_CRASHED;
  std::vector<char> reply(sizeof(int) + nmatch * sizeof(regmatch_t));
  size_t got = 0;
  while (got < reply.size()) {
    ssize_t n = read(pipefd[0], reply.data() + got, reply.size() - got);
    if (n > 0) got += static_cast<size_t>(n);
    else if (n < 0 && errno == EINTR) continue;
    else break;
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  if (got == reply.size() && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    memcpy(&err, reply.data(), sizeof(int));
    if (nmatch > 0) memcpy(pmatch, reply.data() + sizeof(int), nmatch * sizeof(regmatch_t));
  }
  return err;
}

// glibc's regexec() recurses without bound on some back-reference patterns and keys, until
// the stack runs out: real postmap dies of SIGSEGV, and a client of Postfix's proxymap loses
// its connection and tries again. Ours answers RETRY (IsolatedRegexec ran it in a child).
constexpr const char* REGEXEC_FAULT_TEXT = "regexec() died on this key (as Postfix's process does, of SIGSEGV)";

std::string pcreErrorText(int code) {
  PCRE2_UCHAR buf[256];
  int len = pcre2_get_error_message(code, buf, sizeof(buf));
  if (len > 0) return std::string(reinterpret_cast<char*>(buf), len);
  return "unexpected pcre2 error code " + std::to_string(code);
}

class PatternProgram : public Napi::ObjectWrap<PatternProgram> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PatternProgram", {
      InstanceMethod("compile", &PatternProgram::Compile),
      InstanceMethod("setRules", &PatternProgram::SetRules),
      InstanceMethod("search", &PatternProgram::Search),
      InstanceMethod("searchAsync", &PatternProgram::SearchAsync),
      InstanceMethod("interpreterWork", &PatternProgram::InterpreterWork),
    });
  }

  explicit PatternProgram(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PatternProgram>(info) {
    engine_ = info[0].As<Napi::Number>().Int32Value();
    if (engine_ != ENGINE_POSIX && engine_ != ENGINE_PCRE) throw Napi::RangeError::New(info.Env(), "unknown pattern engine");
    if (engine_ == ENGINE_PCRE) {
      syncContext_ = pcre2_match_context_create(nullptr);
      pcre2_set_match_limit(syncContext_, SYNC_MATCH_LIMIT);
      pcre2_set_depth_limit(syncContext_, SYNC_MATCH_LIMIT);
    }
  }

  ~PatternProgram() override {
    for (auto& p : posix_) regfree(&p->re);
    for (auto* code : pcre_) pcre2_code_free(code);
    if (syncData_) pcre2_match_data_free(syncData_);
    if (syncContext_) pcre2_match_context_free(syncContext_);
  }

  // The search itself, Postfix's dict_regexp_lookup() / dict_pcre_lookup() loop from rule
  // `from`: a rule whose matching fails with an error counts as not matching (after the
  // warning), as in Postfix. `sync` bounds the work as explained at the top.
  void Run(const std::string& key, int from, bool sync, pcre2_match_data* data, SearchResult& out) const {
    const int64_t start = sync ? nowNs() : 0;
    std::vector<regmatch_t> pmatch(engine_ == ENGINE_POSIX ? maxSub_ + 1 : 0);
    std::optional<CLocaleScope> locale;
    std::string folded;
    if (engine_ == ENGINE_POSIX) {
      locale.emplace();
      // REG_ICASE in the C locale folds ASCII letters only.
      folded = key;
      for (char& c : folded)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    const int count = static_cast<int>(rules_.size());
    for (int i = from; i < count; i++) {
      if (sync && i > from && nowNs() - start > SYNC_BUDGET_NS) {
        out.resume = i;
        return;
      }
      const Rule& rule = rules_[i];
      if (rule.kind == RULE_MATCH) {
        int holds = Matches(rule.first, !rule.firstNegated, key, folded, rule.maxSub, sync, data, pmatch, i, out);
        if (holds < 0) return;
        if (!holds) continue;
        if (rule.second >= 0) {
          holds = Matches(rule.second, !rule.secondNegated, key, folded, 0, sync, nullptr, pmatch, i, out);
          if (holds < 0) return;
          if (!holds) continue;
        }
        out.rule = i;
        out.offsets.assign(2 * (rule.maxSub + 1), -1);
        if (rule.maxSub > 0) CopyOffsets(rule.maxSub, data, pmatch, out.offsets);
        return;
      }
      if (rule.kind == RULE_IF) {
        int holds = Matches(rule.first, !rule.firstNegated, key, folded, 0, sync, data, pmatch, i, out);
        if (holds < 0) return;
        if (holds) continue;
        if (rule.endif < 0) return;
        i = rule.endif;
      }
    }
  }

  int MaxPairs() const { return maxPairs_; }
  int Engine() const { return engine_; }

 private:
  // 1: the pattern gives `wanted`; 0: it does not (or failed, with a warning); -1: the
  // search must go on in a worker thread from this rule (out.resume is set).
  int Matches(int pattern, bool wanted, const std::string& key, const std::string& folded, int maxSub, bool sync,
              pcre2_match_data* data, std::vector<regmatch_t>& pmatch, int ruleIndex, SearchResult& out) const {
    if (engine_ == ENGINE_POSIX) {
      const PosixPattern& p = *posix_[pattern];
      // Without back-references regexec() cannot fail: a key without a text is REG_NOMATCH.
      if (!p.backrefs) {
        const std::string& subject = p.icase ? folded : key;
        for (const std::string& text : p.literals)
          if (memmem(subject.data(), subject.size(), text.data(), text.size()) == nullptr) return !wanted;
      }
      if (sync && (p.backrefs || key.size() > SYNC_POSIX_KEY_LIMIT)) {
        out.resume = ruleIndex;
        return -1;
      }
      // Postfix asks regexec() for the submatches up to the largest $number only.
      size_t nmatch = maxSub > 0 ? static_cast<size_t>(maxSub) + 1 : 0;
      regmatch_t* matches = nmatch ? pmatch.data() : nullptr;
      int err = p.backrefs ? IsolatedRegexec(p, key, nmatch, matches) : regexec(&p.re, key.c_str(), nmatch, matches, 0);
      if (err == REGEXEC_CRASHED) {
        out.warnings.push_back({ruleIndex, REGEXEC_FAULT_TEXT});
        out.failed = true;
        return -1;
      }
      if (err == REG_NOMATCH) return !wanted;
      if (err == 0) return wanted;
      char buf[256];
      regerror(err, &p.re, buf, sizeof(buf));
      out.warnings.push_back({ruleIndex, buf});
      return 0;
    }
    pcre2_match_data* md = data;
    const auto subject = reinterpret_cast<PCRE2_SPTR>(key.data());
    int rc;
    if (jitKeyLimit_[pattern] >= 0 && key.size() <= static_cast<size_t>(jitKeyLimit_[pattern])) {
      // On this key the interpreter stays far within its limits, so the JIT's answer is its.
      rc = pcre2_jit_match(pcre_[pattern], subject, key.size(), 0, 0, md, sync ? syncContext_ : nullptr);
      if (rc > 0) return wanted;
      if (rc == PCRE2_ERROR_NOMATCH) return !wanted;
      // The JIT's own limits (match limit, JIT stack) are not Postfix's: the interpreter decides.
      if (sync) {
        out.resume = ruleIndex;
        return -1;
      }
    }
    // PCRE2_NO_JIT: Postfix's pcre2_match() has no JIT code to use, whatever this pattern has.
    rc = pcre2_match(pcre_[pattern], subject, key.size(), 0, PCRE2_NO_JIT, md, sync ? syncContext_ : nullptr);
    if (rc > 0) return wanted;
    if (rc == PCRE2_ERROR_NOMATCH) return !wanted;
    if (sync && (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)) {
      out.resume = ruleIndex;
      return -1;
    }
    out.warnings.push_back({ruleIndex, pcreErrorText(rc)});
    return 0;
  }

  void CopyOffsets(int maxSub, pcre2_match_data* data, const std::vector<regmatch_t>& pmatch,
                   std::vector<int32_t>& offsets) const {
    if (engine_ == ENGINE_POSIX) {
      for (int n = 0; n <= maxSub; n++) {
        offsets[2 * n] = static_cast<int32_t>(pmatch[n].rm_so);
        offsets[2 * n + 1] = static_cast<int32_t>(pmatch[n].rm_eo);
      }
      return;
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    uint32_t pairs = pcre2_get_ovector_count(data);
    for (uint32_t n = 0; n <= static_cast<uint32_t>(maxSub) && n < pairs; n++) {
      offsets[2 * n] = ovector[2 * n] == PCRE2_UNSET ? -1 : static_cast<int32_t>(ovector[2 * n]);
      offsets[2 * n + 1] = ovector[2 * n + 1] == PCRE2_UNSET ? -1 : static_cast<int32_t>(ovector[2 * n + 1]);
    }
  }

  // regcomp() (flags: REG_* as dict_regexp.c passes them) or pcre2_compile() (flags:
  // PCRE2_* options as dict_pcre.c passes them, default compile context).
  Napi::Value Compile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string pattern = latin1Arg(info, 0);
    truncateAtNul(pattern);
    uint32_t flags = info[1].As<Napi::Number>().Uint32Value();
    Napi::Object result = Napi::Object::New(env);
    if (engine_ == ENGINE_POSIX) {
      CLocaleScope locale;
      auto p = std::make_unique<PosixPattern>();
      int err = regcomp(&p->re, pattern.c_str(), static_cast<int>(flags));
      if (err != 0) {
        char buf[256];
        regerror(err, &p->re, buf, sizeof(buf));
        result.Set("error", Napi::String::New(env, buf));
        return result;
      }
      p->backrefs = false;
      for (size_t i = 0; i + 1 < pattern.size(); i++) {
        if (pattern[i] == '\\') {
          if (pattern[i + 1] >= '1' && pattern[i + 1] <= '9') p->backrefs = true;
          i++;
        }
      }
      p->icase = (flags & REG_ICASE) != 0;
      const std::string texts = info.Length() > 3 ? latin1Arg(info, 3) : std::string();
      for (size_t start = 0; start < texts.size();) {
        size_t end = std::min(texts.find('\0', start), texts.size());
        std::string text = texts.substr(start, end - start);
        if (p->icase)
          for (char& c : text)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (!text.empty()) p->literals.push_back(std::move(text));
        start = end + 1;
      }
      result.Set("groups", Napi::Number::New(env, static_cast<double>(p->re.re_nsub)));
      posix_.push_back(std::move(p));
      result.Set("index", Napi::Number::New(env, static_cast<double>(posix_.size() - 1)));
      return result;
    }
    int error = 0;
    PCRE2_SIZE offset = 0;
    const double jitKeyLimit = info.Length() > 2 ? info[2].As<Napi::Number>().DoubleValue() : -1;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), PCRE2_ZERO_TERMINATED, flags,
                                     &error, &offset, nullptr);
    if (code == nullptr) {
      result.Set("error", Napi::String::New(env, pcreErrorText(error)));
      result.Set("offset", Napi::Number::New(env, static_cast<double>(offset)));
      return result;
    }
    uint32_t captures = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &captures);
    if (static_cast<int>(captures) + 1 > maxPairs_) maxPairs_ = static_cast<int>(captures) + 1;
    pcre_.push_back(code);
    const bool jit = jitKeyLimit >= 0 && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    jitKeyLimit_.push_back(jit ? static_cast<int64_t>(jitKeyLimit) : -1);
    result.Set("groups", Napi::Number::New(env, captures));
    result.Set("index", Napi::Number::New(env, static_cast<double>(pcre_.size() - 1)));
    return result;
  }

  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto flat = info[0].As<Napi::Int32Array>();
    if (flat.ElementLength() % RULE_FIELDS != 0) throw Napi::RangeError::New(env, "bad rule array");
    const int patterns = static_cast<int>(engine_ == ENGINE_POSIX ? posix_.size() : pcre_.size());
    rules_.clear();
    maxSub_ = 0;
    for (size_t i = 0; i < flat.ElementLength(); i += RULE_FIELDS) {
      Rule r{flat[i], flat[i + 1], flat[i + 2], flat[i + 3], flat[i + 4], flat[i + 5], flat[i + 6]};
      bool usesFirst = r.kind == RULE_MATCH || r.kind == RULE_IF;
      if ((usesFirst && (r.first < 0 || r.first >= patterns)) || r.second >= patterns || r.maxSub < 0 ||
          r.endif >= static_cast<int>(flat.ElementLength() / RULE_FIELDS))
        throw Napi::RangeError::New(env, "bad rule");
      if (r.maxSub > maxSub_) maxSub_ = r.maxSub;
      rules_.push_back(r);
    }
    offsets_ = Napi::Persistent(info[1].As<Napi::Int32Array>());
    if (offsets_.Value().ElementLength() < static_cast<size_t>(2 * (maxSub_ + 1)))
      throw Napi::RangeError::New(env, "offsets array too small");
    if (engine_ == ENGINE_PCRE) {
      if (syncData_) pcre2_match_data_free(syncData_);
      syncData_ = pcre2_match_data_create(static_cast<uint32_t>(maxPairs_), nullptr);
    }
    return env.Undefined();
  }

  Napi::Value InterpreterWork(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (engine_ != ENGINE_PCRE) throw Napi::Error::New(env, "interpreterWork: not a pcre program");
    uint32_t index = info[0].As<Napi::Number>().Uint32Value();
    if (index >= pcre_.size()) throw Napi::RangeError::New(env, "no such pattern");
    std::string key = latin1Arg(info, 1);
    truncateAtNul(key);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(pcre_[index], nullptr);
    pcre2_match_context* context = pcre2_match_context_create(nullptr);
    auto finishes = [&](uint32_t limit) {
      pcre2_set_match_limit(context, limit);
      int rc = pcre2_match(pcre_[index], reinterpret_cast<PCRE2_SPTR>(key.data()), key.size(), 0, PCRE2_NO_JIT, md,
                           context);
      return rc != PCRE2_ERROR_MATCHLIMIT;
    };
    uint32_t low = 1, high = 10'000'000;
    int64_t answer = -1;
    if (finishes(high)) {
      while (low < high) {
        uint32_t mid = low + (high - low) / 2;
        if (finishes(mid)) high = mid;
        else low = mid + 1;
      }
      answer = low;
    }
    pcre2_match_context_free(context);
    pcre2_match_data_free(md);
    return Napi::Number::New(env, static_cast<double>(answer));
  }

  Napi::Value Search(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string key = latin1Arg(info, 0);
    truncateAtNul(key);
    int from = info[1].As<Napi::Number>().Int32Value();
    SearchResult out;
    Run(key, from, true, syncData_, out);
    if (out.rule >= 0) {
      Napi::Int32Array offsets = offsets_.Value();
      for (size_t i = 0; i < out.offsets.size(); i++) offsets[i] = out.offsets[i];
    }
    if (out.warnings.empty() && out.resume < 0) return Napi::Number::New(env, out.rule);
    return ResultObject(env, out, false);
  }

 public:
  static Napi::Object ResultObject(Napi::Env env, const SearchResult& out, bool withOffsets) {
    Napi::Object result = Napi::Object::New(env);
    result.Set("rule", out.rule);
    Napi::Array warnings = Napi::Array::New(env, out.warnings.size());
    for (size_t i = 0; i < out.warnings.size(); i++) {
      Napi::Array w = Napi::Array::New(env, 2);
      w.Set(0u, out.warnings[i].rule);
      w.Set(1u, Napi::String::New(env, out.warnings[i].message));
      warnings.Set(static_cast<uint32_t>(i), w);
    }
    result.Set("warnings", warnings);
    if (out.resume >= 0) result.Set("resume", out.resume);
    if (out.failed) result.Set("failed", true);
    if (withOffsets) {
      Napi::Int32Array offsets = Napi::Int32Array::New(env, out.offsets.size());
      for (size_t i = 0; i < out.offsets.size(); i++) offsets[i] = out.offsets[i];
      result.Set("offsets", offsets);
    }
    return result;
  }

 private:
  Napi::Value SearchAsync(const Napi::CallbackInfo& info);

  int engine_ = ENGINE_POSIX;
  std::vector<std::unique_ptr<PosixPattern>> posix_;
  std::vector<pcre2_code*> pcre_;
  std::vector<int64_t> jitKeyLimit_;
  std::vector<Rule> rules_;
  int maxSub_ = 0;
  int maxPairs_ = 1;
  pcre2_match_context* syncContext_ = nullptr;
  pcre2_match_data* syncData_ = nullptr;
  Napi::Reference<Napi::Int32Array> offsets_;
};

// Lookups that go off the main thread run in a pool of our own, not libuv's: a search may
// take as long as Postfix's would (glibc's regexec() has no limit, and some patterns with
// back-references take exponential time), and libuv's four threads also serve the file
// system. A search never waits for another: when no thread is free, one more is started
// (up to MAX_SEARCH_THREADS); threads beyond the number of CPUs leave after a while idle.
// Each has the stack of a Postfix process (8 MB), since regexec() recurses on it.
// The program stays referenced (so not collected) until the answer is back; its patterns
// are only read, as regexec() and pcre2_match() allow from several threads at once, each
// with its own match data.
constexpr size_t SEARCH_THREAD_STACK = 8 * 1024 * 1024;
constexpr size_t MAX_SEARCH_THREADS = 256;
constexpr auto SPARE_THREAD_IDLE = std::chrono::seconds(10);

struct AsyncSearch {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference program;
  const PatternProgram* compiled;
  std::string key;
  int from;
  SearchResult out;
  Napi::ThreadSafeFunction done;
  int64_t ns = 0;
};

void RunAsyncSearch(AsyncSearch* search) {
  const int64_t start = nowNs();
  pcre2_match_data* data = nullptr;
  if (search->compiled->Engine() == ENGINE_PCRE)
    data = pcre2_match_data_create(static_cast<uint32_t>(search->compiled->MaxPairs()), nullptr);
  search->compiled->Run(search->key, search->from, false, data, search->out);
  if (data) pcre2_match_data_free(data);
  search->ns = nowNs() - start;
  search->done.BlockingCall(search, [](Napi::Env env, Napi::Function, AsyncSearch* finished) {
    Napi::Object result = PatternProgram::ResultObject(env, finished->out, true);
    result.Set("ns", Napi::Number::New(env, static_cast<double>(finished->ns)));
    finished->deferred.Resolve(result);
    finished->done.Release();
    delete finished;
  });
}

class SearchPool {
 public:
  static SearchPool& Get() {
    static SearchPool* pool = new SearchPool();  // never destroyed: its threads may outlive main()
    return *pool;
  }

  // false: no thread could be started (the caller answers with an error).
  bool Submit(AsyncSearch* search) {
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(search);
    if (idle_ >= queue_.size()) {
      ready_.notify_one();
      return true;
    }
    if (threads_ >= MAX_SEARCH_THREADS) return true;  // queued behind the running ones
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SEARCH_THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int err = pthread_create(&thread, &attr, &SearchPool::Main, this);
    pthread_attr_destroy(&attr);
    if (err != 0) {
      queue_.pop_back();
      return false;
    }
    threads_++;
    return true;
  }

 private:
  SearchPool() : keep_(std::max(2u, std::thread::hardware_concurrency())) {}

  static void* Main(void* self) {
    static_cast<SearchPool*>(self)->Serve();
    return nullptr;
  }

  void Serve() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      idle_++;
      while (queue_.empty()) {
        if (threads_ > keep_) {
          if (ready_.wait_for(lock, SPARE_THREAD_IDLE) == std::cv_status::timeout && queue_.empty()) {
            idle_--;
            threads_--;
            return;
          }
        } else {
          ready_.wait(lock);
        }
      }
      idle_--;
      AsyncSearch* search = queue_.front();
      queue_.pop_front();
      lock.unlock();
      RunAsyncSearch(search);
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<AsyncSearch*> queue_;
  size_t idle_ = 0;
  size_t threads_ = 0;
  const size_t keep_;
};

Napi::Value PatternProgram::SearchAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string key = latin1Arg(info, 0);
  truncateAtNul(key);
  int from = info[1].As<Napi::Number>().Int32Value();
  auto* search = new AsyncSearch{Napi::Promise::Deferred::New(env), Napi::Persistent(info.This().As<Napi::Object>()), this,
                                 std::move(key), from, SearchResult(), Napi::ThreadSafeFunction()};
  search->done = Napi::ThreadSafeFunction::New(env, Napi::Function(), "patternSearch", 0, 1);
  Napi::Promise promise = search->deferred.Promise();
  if (!SearchPool::Get().Submit(search)) {
    search->done.Release();
    delete search;
    throw Napi::Error::New(env, "cannot start a pattern search thread");
  }
  return promise;
}

// Postfix casefold() past its all-ASCII shortcut: ucasemap_utf8FoldCase() with a case map
// opened for "en_US" and U_FOLD_CASE_DEFAULT; bytes that are not UTF-8 pass unchanged.
Napi::Value Casefold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string src = latin1Arg(info, 0);
  truncateAtNul(src);
  static UCaseMap* csm = nullptr;
  if (csm == nullptr) {
    UErrorCode error = U_ZERO_ERROR;
    csm = ucasemap_open("en_US", U_FOLD_CASE_DEFAULT, &error);
    if (U_FAILURE(error)) throw Napi::Error::New(env, std::string("ucasemap_open error: ") + u_errorName(error));
  }
  std::string dest(src.size() * 3 + 16, '\0');
  for (int attempt = 0; attempt < 3; attempt++) {
    UErrorCode error = U_ZERO_ERROR;
    int32_t needed = ucasemap_utf8FoldCase(csm, dest.data(), static_cast<int32_t>(dest.size()), src.data(),
                                           static_cast<int32_t>(src.size()), &error);
    if (U_SUCCESS(error)) {
      dest.resize(needed);
      napi_value out;
      napi_create_string_latin1(env, dest.data(), dest.size(), &out);
      return Napi::Value(env, out);
    }
    if (error != U_BUFFER_OVERFLOW_ERROR)
      throw Napi::Error::New(env, std::string("casefold: conversion error: ") + u_errorName(error));
    dest.assign(needed + 1, '\0');
  }
  throw Napi::Error::New(env, "casefold: output does not fit");
}

}  // namespace

// Called from the module's Init (postfix_native.cc).
void InitPatterns(Napi::Env env, Napi::Object exports) {
  exports.Set("PatternProgram", PatternProgram::Init(env));
  exports.Set("casefold", Napi::Function::New(env, Casefold));
  Napi::Object c = Napi::Object::New(env);
  c.Set("REG_EXTENDED", REG_EXTENDED);
  c.Set("REG_ICASE", REG_ICASE);
  c.Set("REG_NEWLINE", REG_NEWLINE);
  c.Set("REG_NOSUB", REG_NOSUB);
  c.Set("PCRE2_CASELESS", static_cast<double>(PCRE2_CASELESS));
  c.Set("PCRE2_MULTILINE", static_cast<double>(PCRE2_MULTILINE));
  c.Set("PCRE2_DOTALL", static_cast<double>(PCRE2_DOTALL));
  c.Set("PCRE2_EXTENDED", static_cast<double>(PCRE2_EXTENDED));
  c.Set("PCRE2_ANCHORED", static_cast<double>(PCRE2_ANCHORED));
  c.Set("PCRE2_DOLLAR_ENDONLY", static_cast<double>(PCRE2_DOLLAR_ENDONLY));
  c.Set("PCRE2_UNGREEDY", static_cast<double>(PCRE2_UNGREEDY));
  exports.Set("patternConstants", c);
  Napi::Object versions = Napi::Object::New(env);
  char pcreVersion[64];
  pcre2_config(PCRE2_CONFIG_VERSION, pcreVersion);
  versions.Set("pcre2", pcreVersion);
  UVersionInfo icu;
  u_getVersion(icu);
  char icuVersion[U_MAX_VERSION_STRING_LENGTH];
  u_versionToString(icu, icuVersion);
  versions.Set("icu", icuVersion);
  exports.Set("patternVersions", versions);
}
