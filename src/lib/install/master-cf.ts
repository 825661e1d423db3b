// Putting proxymap serve into master.cf in place of Postfix's own proxymap daemon, and
// taking it out again. master(8) runs commands from $daemon_directory, so a small
// launcher goes there; the proxymap and proxywrite entries then name it.

import fs from 'node:fs'
import path from 'node:path'

export const LAUNCHER_NAME = 'proxymap-ts'
const SERVICES = ['proxymap', 'proxywrite']

export interface MasterCfChange {
  masterCfPath: string
  before: string
  after: string
  /** Services whose command was changed. */
  changed: string[]
}

export interface LauncherOptions {
  nodePath: string
  /** The installed copy (see installed-copy.ts) whose bin/run.js to run. */
  copyDir: string
  version: string
  /** Postfix's postlog(1), for the one line saying that Postfix's proxymap took over. */
  postlogPath: string
  syslogName: string
  /** Postfix's own daemon, $daemon_directory/proxymap. */
  postfixProxymap: string
}

/**
 * The launcher master(8) runs: options (master's) start the daemon; a command word runs that
 * CLI command of the same copy, so "proxymap-ts install-master --revert --apply" works after
 * the npm package is gone. If the copy or node is missing, Postfix's own proxymap serves.
 */
export function launcherScript(options: LauncherOptions): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
  return [
    '#!/bin/sh',
    `# Launcher for master(8): runs proxymap ${options.version} (proxymap serve) as the proxymap/proxywrite`,
    '# daemon, from a private copy that npm upgrades and removals do not touch. Installed by',
    '# "proxymap install-master"; "proxymap-ts install-master --revert --apply" undoes it.',
    `node=${q(options.nodePath)}`,
    `copy=${q(options.copyDir)}`,
    'if [ -x "$node" ] && [ -f "$copy/bin/run.js" ]; then',
    '  case "$1" in',
    '    ""|-*) exec "$node" "$copy/bin/run.js" serve "$@" ;;',
    '    *) exec "$node" "$copy/bin/run.js" "$@" ;;',
    '  esac',
    'fi',
    'case "$1" in ""|-*) ;; *) echo "proxymap-ts: cannot run $copy/bin/run.js with $node" >&2; exit 1 ;; esac',
    '# Never leave master without a proxymap daemon.',
    `${q(options.postlogPath)} -p warning -t ${q(`${options.syslogName}/proxymap`)} "cannot run $copy/bin/run.js with $node: Postfix's proxymap serves instead (run proxymap install-master --apply again)" 2>/dev/null`,
    `exec ${q(options.postfixProxymap)} "$@"`,
    '',
  ].join('\n')
}

/**
 * Set the command of the proxymap and proxywrite entries (type unix) of master.cf to
 * `command`, leaving every other byte of the file as it is.
 */
export function rewriteMasterCf(text: string, command: string): {text: string; changed: string[]} {
  const changed: string[] = []
  const lines = text.split('\n').map(line => {
    if (/^\s|^#/.test(line)) return line
    const fields = line.split(/(\s+)/) // keep the separators, to keep the layout
    const words = fields.filter((_, i) => i % 2 === 0)
    if (words.length < 8 || !SERVICES.includes(words[0]) || words[1] !== 'unix') return line
    if (words[7] === command) return line
    changed.push(words[0])
    fields[14] = command
    return fields.join('')
  })
  return {text: lines.join('\n'), changed}
}

export function planMasterCf(configDir: string, command: string): MasterCfChange {
  const masterCfPath = path.join(configDir, 'master.cf')
  let before: string
  try {
    before = fs.readFileSync(masterCfPath, 'latin1')
  } catch {
    throw new Error(`cannot read ${masterCfPath}: is ${configDir} a Postfix configuration directory? (choose it with -c DIR)`)
  }
  const {text, changed} = rewriteMasterCf(before, command)
  return {masterCfPath, before, after: text, changed}
}
