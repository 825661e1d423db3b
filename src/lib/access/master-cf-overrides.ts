// The "-o name=value" settings of master.cf service lines. Postfix's proxymap(8) reads only
// main.cf (plus the -o settings of its OWN master.cf line), so a setting such as
// "postscreen ... -o postscreen_cache_map=proxy:btree:..." is invisible to it: the
// $postscreen_cache_map in proxy_write_maps then means main.cf's value, not this one.

import fs from 'node:fs'
import path from 'node:path'
import {LAUNCHER_NAME} from '../install/master-cf.js'
import {extractBraced, splitOutsideBraces} from '../util/postfix-strings.js'

export interface MasterCfOverride {
  /** service name (first column), e.g. "postscreen" or "127.0.0.1:smtp". */
  service: string
  /** service type (second column): inet, unix, pass, ... */
  type: string
  /** The command (eighth column), e.g. "smtpd", "postscreen", "proxymap". */
  command: string
  /** Line number (1-based) where the service entry starts. */
  line: number
  name: string
  value: string
  /** The -o argument as written in master.cf, for messages. */
  text: string
}

const WHITESPACE = ' \t\r\n'
/** Commands that are a proxymap(8) daemon: Postfix's own or this project's launcher. */
const PROXYMAP_COMMANDS = new Set(['proxymap', LAUNCHER_NAME])

/** Every "-o name=value" (and Postfix 3.0's "-o { name = value }") in a master.cf text. */
export function parseMasterCfOverrides(text: string): MasterCfOverride[] {
  const result: MasterCfOverride[] = []
  const lines = text.split('\n')
  // Logical lines: an entry starts in column 1; lines starting with whitespace continue it;
  // comment lines and blank lines are skipped (they do not end an entry).
  const entries: {line: number; text: string}[] = []
  lines.forEach((raw, index) => {
    if (/^\s*(#|$)/.test(raw)) return
    if (/^\s/.test(raw) && entries.length > 0) entries[entries.length - 1].text += ` ${raw.trim()}`
    else entries.push({line: index + 1, text: raw})
  })
  for (const entry of entries) {
    const words = splitOutsideBraces(entry.text, WHITESPACE)
    if (words.length < 8) continue
    const [service, type, , , , , , command, ...args] = words
    for (let i = 0; i < args.length; i++) {
      let argument: string | undefined
      if (args[i] === '-o') argument = args[++i]
      else if (args[i].startsWith('-o') && args[i].length > 2) argument = args[i].slice(2)
      if (argument === undefined) continue
      const setting = argument.startsWith('{') ? extractBraced(argument).text : argument
      const equals = setting.indexOf('=')
      if (equals <= 0) continue
      result.push({
        service, type, command, line: entry.line,
        name: setting.slice(0, equals).trim(), value: setting.slice(equals + 1).trim(),
        text: `-o ${argument}`,
      })
    }
  }
  return result
}

/** master.cf of a configuration directory, or [] when there is none. */
export function readMasterCfOverrides(configDir: string): MasterCfOverride[] {
  let text: string
  try {
    text = fs.readFileSync(path.join(configDir, 'master.cf'), 'latin1')
  } catch {
    return []
  }
  return parseMasterCfOverrides(text)
}

/** Whether the -o belongs to a proxymap(8) service line (then proxymap does see it). */
export function isProxymapLine(override: MasterCfOverride): boolean {
  return PROXYMAP_COMMANDS.has(path.basename(override.command))
}
