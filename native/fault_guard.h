// A guard that turns SIGBUS/SIGSEGV raised inside a region of C code into a return value,
// so that a table file truncated under a mapped read ends one lookup, not the server. Only
// for code that may be abandoned halfway: a fault inside malloc() (glibc's regexec() running
// off its stack, say) leaves heap locks taken, so such code runs in a child process instead
// (patterns.cc).
#pragma once

#include <csetjmp>
#include <csignal>

namespace proxymap_native {

// Where a fault inside a guarded region lands (null: no region is armed on this thread).
// initial-exec: the handler must not call __tls_get_addr, which may allocate.
inline __attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* faultLanding = nullptr;
inline struct sigaction previousBusAction, previousSegvAction;

// A fault outside a guarded region is not ours: it goes to whoever handled it before us
// (Node's WebAssembly trap handler for SIGSEGV), else it gets the default action.
inline void OnFault(int sig, siginfo_t* info, void* context) {
  sigjmp_buf* landing = faultLanding;
  if (landing != nullptr && info->si_code > 0) {  // si_code > 0: raised by the kernel, not kill()
    faultLanding = nullptr;
    siglongjmp(*landing, sig);
  }
  const struct sigaction& before = sig == SIGBUS ? previousBusAction : previousSegvAction;
  if (before.sa_flags & SA_SIGINFO) {
    if (before.sa_sigaction != nullptr) before.sa_sigaction(sig, info, context);
    return;
  }
  if (before.sa_handler != SIG_DFL && before.sa_handler != SIG_IGN) {
    before.sa_handler(sig);
    return;
  }
  // Back to the default action: the faulting instruction runs again on return and ends the
  // process as it would have without us; a signal sent by kill() is raised again.
  signal(sig, SIG_DFL);
  if (info->si_code <= 0) raise(sig);
}

inline void InstallFaultHandler() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction action {};
  action.sa_sigaction = OnFault;
  // SA_NODEFER with an empty mask: leaving the handler by siglongjmp() leaves the signal
  // mask as it was, so sigsetjmp() need not save it (no system call per guarded region).
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &previousBusAction);
  sigaction(SIGSEGV, &action, &previousSegvAction);
}

// Runs `body` with SIGBUS/SIGSEGV raised inside it turned into a return value: 0 when it
// ran to its end, else the signal. `body` must only call C code that may be abandoned
// halfway (no allocation by us, no exceptions, no JavaScript): what it was doing is lost.
template <typename Body>
int CatchingFaults(Body&& body) {
  sigjmp_buf landing;
  sigjmp_buf* volatile outer = faultLanding;
  int sig = sigsetjmp(landing, 0);
  if (sig != 0) {
    faultLanding = outer;
    return sig;
  }
  faultLanding = &landing;
  body();
  faultLanding = outer;
  return 0;
}

}  // namespace proxymap_native
