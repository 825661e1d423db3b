// String helpers from Postfix's util library (balpar.c, extpar.c, mystrtok.c,
// split_qnameval.c) shared by table names, main.cf lists and table specs.

import {isSpaceChar, trimSpace} from './chars.js'

/** Postfix CHARS_COMMA_SP: list separators. */
export const CHARS_COMMA_SP = ', \t\r\n'

/**
 * Postfix balpar(): the length of the `{...}` group at the start of `s` (braces nest),
 * or 0 when `s` does not start with `{` or the group is not closed.
 */
export function balancedLength(s: string, open = '{', close = '}'): number {
  if (s[0] !== open) return 0
  let level = 1
  for (let i = 1; i < s.length; i++) {
    const ch = s[i]
    if (ch === close) {
      if (--level === 0) return i + 1
    } else if (ch === open) {
      level++
    }
  }
  return 0
}

/**
 * Postfix extpar() with EXTPAR_FLAG_STRIP: the text inside a leading `{...}` group,
 * whitespace-trimmed, and the error Postfix reports when `s` is not exactly one group.
 * On error `text` is what Postfix would have left behind (callers stop anyway).
 */
export function extractBraced(s: string): {text: string; error?: string} {
  const len = balancedLength(s)
  if (s[0] !== '{') return {text: trimSpace(s), error: `no '{' at start of text in "${s}"`}
  if (len === 0) return {text: trimSpace(s.slice(1)), error: `missing '}' in "${s}"`}
  const text = trimSpace(s.slice(1, len - 1))
  return len !== s.length ? {text, error: `syntax error after '}' in "${s}"`} : {text}
}

/**
 * Postfix mystrtokq(): split on any of `separators`, except inside `{...}` groups
 * (a `}` outside a group is ordinary text). Empty tokens are skipped.
 */
export function splitOutsideBraces(s: string, separators = CHARS_COMMA_SP): string[] {
  const tokens: string[] = []
  let i = 0
  for (;;) {
    while (i < s.length && separators.includes(s[i])) i++
    if (i >= s.length) return tokens
    const start = i
    let level = 0
    for (; i < s.length; i++) {
      const ch = s[i]
      if (ch === '{') level++
      else if (level > 0 && ch === '}') level--
      else if (level === 0 && separators.includes(ch)) break
    }
    tokens.push(s.slice(start, i))
    if (i < s.length) i++
  }
}

/**
 * Postfix split_qnameval(): `key = value`, where the key ends at whitespace or `=` outside
 * "quotes" (a backslash protects the next character; the key keeps its quotes) and the
 * value is trimmed. Returns Postfix's error text when there is no such pair.
 */
export function splitNameValue(s: string): {key: string; value: string} | {error: string} {
  let k = 0
  while (k < s.length && isSpaceChar(s[k])) k++
  if (k >= s.length) return {error: 'no key found; expected format: key = value'}
  let end = k
  let inQuotes = false
  for (; end < s.length; end++) {
    const ch = s[end]
    if (ch === '\\') {
      if (++end >= s.length) break
    } else if (isSpaceChar(ch) || ch === '=') {
      if (!inQuotes) break
    } else if (ch === '"') {
      inQuotes = !inQuotes
    }
  }
  if (inQuotes) return {error: `unbalanced '"'`}
  let v = end
  while (v < s.length && isSpaceChar(s[v])) v++
  if (s[v] !== '=') return {error: "missing '=' after attribute name"}
  return {key: s.slice(k, end), value: trimSpace(s.slice(v + 1))}
}


const PROXY_PREFIX = 'proxy:'

/** Postfix strips every leading `proxy:` from a table name, on both sides of the socket. */
export function stripProxyPrefixes(name: string): string {
  while (name.startsWith(PROXY_PREFIX)) name = name.slice(PROXY_PREFIX.length)
  return name
}
