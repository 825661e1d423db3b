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

export function launcherScript(nodePath: string, runJs: string): string {
  return [
    '#!/bin/sh',
    '# Launcher for master(8): runs the proxymap reimplementation (proxymap serve) as the',
    '# proxymap/proxywrite daemon. Installed by "proxymap install-master".',
    `exec ${JSON.stringify(nodePath)} ${JSON.stringify(runJs)} serve "$@"`,
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
