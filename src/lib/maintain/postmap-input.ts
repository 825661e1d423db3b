// postmap(1)'s input format, for `proxymap update TABLE -`: the logical lines of
// readllines() (src/util/readlline.c) split into key and value as postmap() does
// (src/postmap/postmap.c). Pure: lines in, entries out.

import {CliError} from '../cli/errors.js'
import {EXIT} from '../cli/exit-codes.js'

export interface InputEntry {
  key: string
  value: string
  /** Standard input: the physical line number where the logical line starts (1-based). */
  line?: number
}

/** A line postmap would warn about and skip; we stop the batch there instead (`line` says where). */
export class InputFormatError extends CliError {
  constructor(readonly line: number, message: string) {
    super(message, EXIT.USAGE)
    this.name = 'InputFormatError'
  }
}

// Postfix's ISSPACE: the C locale's isspace().
const isSpace = (c: string | undefined): boolean =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v'

/**
 * Logical lines as readllines() makes them: comment lines (first non-blank character `#`)
 * and blank lines are dropped; a line starting with whitespace continues the previous
 * logical line (appended as is, its leading whitespace included), even across comment lines.
 */
export async function* logicalLines(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<{text: string; line: number}> {
  let pending: {text: string; line: number} | undefined
  let lineno = 0
  for await (const raw of lines) {
    lineno++
    let i = 0
    while (i < raw.length && isSpace(raw[i])) i++
    if (i === raw.length || raw[i] === '#') continue
    if (i > 0 && pending) {
      pending.text += raw
      continue
    }
    if (pending) yield pending
    pending = {text: raw, line: lineno}
  }
  if (pending) yield pending
}

/**
 * One logical line into key and value, as postmap() does: the key ends at the first
 * unquoted whitespace (a backslash protects the next character; the key keeps its quotes
 * and backslashes), the value is trimmed. postmap warns and skips a malformed line; a batch
 * update stops there instead, so that no half-applied input goes unnoticed.
 */
export function parseEntry(text: string, line: number): InputEntry {
  if (isSpace(text[0])) throw new InputFormatError(line, `logical line must not start with whitespace: "${text.slice(0, 30)}${text.length > 30 ? '...' : ''}"`)
  let inQuotes = false
  let end = 0
  for (; end < text.length; end++) {
    const c = text[end]
    if (c === '\\') {
      if (++end >= text.length) break
    } else if (isSpace(c)) {
      if (!inQuotes) break
    } else if (c === '"') {
      inQuotes = !inQuotes
    }
  }
  if (inQuotes) throw new InputFormatError(line, `unbalanced '"' in '${text}'`)
  const key = text.slice(0, Math.min(end, text.length))
  let start = end + 1
  while (start < text.length && isSpace(text[start])) start++
  let stop = text.length
  while (stop > start && isSpace(text[stop - 1])) stop--
  const value = start < text.length ? text.slice(start, stop) : ''
  if (key === '' || value === '') throw new InputFormatError(line, 'expected format: key whitespace value')
  return {key, value, line}
}

/** Entries of postmap input, in order; throws InputFormatError at the first malformed line. */
export async function* postmapEntries(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<InputEntry> {
  for await (const {text, line} of logicalLines(lines)) yield parseEntry(text, line)
}
