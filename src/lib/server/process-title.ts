// What ps, top and pgrep show for a daemon. Postfix's daemons show master's command line,
// "proxymap -t unix -u" (ps -o args), under the name "proxymap" (/proc/PID/comm, which
// pgrep matches); ours would otherwise be "node /path/to/bin/run.js serve ...", named "node".

import fs from 'node:fs'

/** The program name Postfix's daemon runs as (the 15-character comm that pgrep matches). */
export const PROGRAM_NAME = 'proxymap'

/**
 * The command line master(8) gives Postfix's proxymap: its own options, without the
 * "-n proxymap" that it adds for us only because our command has another name.
 */
export function masterDaemonTitle(argv: readonly string[]): string {
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-n' && argv[i + 1] === PROGRAM_NAME) { i++; continue }
    args.push(argv[i])
  }
  return [PROGRAM_NAME, ...args].join(' ')
}

/**
 * Sets the title (Node cuts it to the length of the original command line, which under
 * master and from bin/run.js is longer) and the process name. Node sets the name to the
 * title's first 15 bytes; Postfix's is the program name alone, so it is written to
 * /proc/self/comm (before any chroot, where /proc is out of reach).
 */
export function setProcessTitle(title: string): void {
  process.title = title
  try {
    fs.writeFileSync('/proc/self/comm', PROGRAM_NAME)
  } catch { /* not Linux: the title is what there is */ }
}
