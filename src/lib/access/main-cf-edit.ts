// Adding tables to proxy_read_maps / proxy_write_maps without losing what is there: the
// new value is the current main.cf value (or, when main.cf does not set the list, Postfix's
// default text, so the default entries stay approved) plus the new proxy: entries. A list
// that refers to itself ("proxy_read_maps = $proxy_read_maps ...", which Postfix rejects
// with "unreasonable macro call nesting") gets the default text in place of the reference.

import fs from 'node:fs'
import {POSTFIX_3_7_DEFAULTS} from '../config/index.js'
import {splitOutsideBraces} from '../util/postfix-strings.js'
import type {ApprovalParameter} from './approval-list.js'

export interface ListEdit {
  parameter: ApprovalParameter
  /** The main.cf value before (undefined: not set, Postfix's default applied). */
  before: string | undefined
  after: string
  /** Tables added, with their proxy: prefix. */
  added: string[]
  /** Entries taken out: near misses of an added table, written in the list itself (a misspelling left next to its fix). */
  removed: string[]
}

/** A reference to the parameter itself: $name, ${name}, $(name) (also ${name?..}/${name:..}). */
export function selfReferencePattern(name: string): RegExp {
  return new RegExp(`\\$(?:${name}(?![A-Za-z0-9_])|\\{${name}\\}|\\(${name}\\))`, 'g')
}

/**
 * The value that approves `tables` on top of what `parameter` approves now; `defaults` are
 * the configuration's Postfix release's (3.11's proxy_read_maps default is longer than 3.7's).
 */
export function planListEdit(parameter: ApprovalParameter, current: string | undefined, tables: string[],
  defaults: Readonly<Record<string, string>> = POSTFIX_3_7_DEFAULTS, wrongEntries: readonly string[] = []): ListEdit {
  const defaultText = defaults[parameter]
  let base = current === undefined ? defaultText : current.replace(selfReferencePattern(parameter), () => defaultText)
  const added = [...new Set(tables.map(t => (t.startsWith('proxy:') ? t : `proxy:${t}`)))]
  base = squeezeOutsideBraces(base.trim())
  const removed: string[] = []
  if (wrongEntries.length > 0) {
    const words = splitOutsideBraces(base)
    const kept = words.filter(word => !wrongEntries.includes(word) || added.includes(word))
    removed.push(...new Set(words.filter(word => !kept.includes(word))))
    if (removed.length > 0) base = kept.join(' ')
  }
  return {parameter, before: current, after: [base, ...added].filter(s => s !== '').join(' '), added, removed}
}

/**
 * Continuation lines reach the value with their indentation (Postfix's readllines() joins
 * them as they are); written back on one line, that would look like a typo. Inside braces
 * whitespace is part of a table's name, so it stays.
 */
function squeezeOutsideBraces(value: string): string {
  let depth = 0
  let out = ''
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === '{') depth++
    else if (c === '}' && depth > 0) depth--
    if (depth === 0 && /\s/.test(c)) {
      if (!/\s/.test(value[i + 1] ?? '')) out += ' '
      continue
    }
    out += c
  }
  return out
}

/**
 * main.cf text with `name = value`: the (last) logical line that sets `name` is replaced
 * (continuation lines included); when none does, the setting is appended. Every other
 * byte stays as it was.
 */
export function setMainCfParameter(text: string, name: string, value: string): string {
  const lines = text.split('\n')
  const starts = new RegExp(`^${name}[ \\t]*=`)
  let start = -1
  for (let i = 0; i < lines.length; i++) if (starts.test(lines[i])) start = i
  const setting = `${name} = ${value}`
  if (start < 0) {
    const separator = text === '' || text.endsWith('\n') ? '' : '\n'
    return `${text}${separator}${setting}\n`
  }
  // Continuation lines start with whitespace; comment and blank lines between them do not
  // end the logical line (Postfix's readllines()), but trailing ones are not part of it.
  let end = start
  for (let j = start + 1; j < lines.length; j++) {
    const line = lines[j]
    if (/^\s*(#|$)/.test(line)) continue
    if (/^\s/.test(line)) end = j
    else break
  }
  return [...lines.slice(0, start), setting, ...lines.slice(end + 1)].join('\n')
}

/** Writes main.cf in place (same inode, owner and mode), as bytes. */
export function writeMainCf(mainCfPath: string, text: string): void {
  fs.writeFileSync(mainCfPath, text, 'latin1')
}
