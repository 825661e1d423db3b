// Case folding and UTF-8 handling of lookup keys, as Postfix 3.7 does it.
//
// Postfix has two ways to fold a key:
// - `lowercase()` (stringops): ASCII A-Z only, every other byte unchanged. Fixed-key tables
//   (dict_ht, hash, btree, ...) do this themselves when DICT_FLAG_FOLD_FIX is set.
// - `casefold()` (casefold.c): ICU full case folding (U_FOLD_CASE_DEFAULT, i.e. not Turkic)
//   of UTF-8 text; all-ASCII input takes the lowercase() path.
// The second is used by the "UTF-8 layer" (dict_utf8.c) that dict_open3() puts in front of
// every table opened with DICT_FLAG_UTF8_REQUEST when smtputf8_enable is on; that layer also
// rejects malformed UTF-8 keys and values. `activateUtf8()` below is that layer.
//
// Keys are Postfix byte strings ("binary" latin1 strings, one char per byte).
//
// Full case folding is ICU's, called as casefold.c calls it, from the system's ICU (Debian
// 12: libicu72, the one Postfix links), not Node's own: their Unicode versions differ.

import {DICT_FLAG, DICT_FLAG_FOLD_ANY} from '../protocol/constants.js'
import type {MainConfig} from '../config/index.js'
import {Table, TableError, TableLog} from './table.js'
import {loadNative, type PostfixNative} from '../native/index.js'

/** Postfix lowercase(): ASCII A-Z to a-z, every other byte unchanged. */
export function lowercaseAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x41 && c <= 0x5a) return s.slice(0, i) + lowerFrom(s, i)
  }
  return s
}

function lowerFrom(s: string, from: number): string {
  let out = ''
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i)
    out += c >= 0x41 && c <= 0x5a ? String.fromCharCode(c + 0x20) : s[i]
  }
  return out
}

/**
 * Postfix allascii(): true when every byte before the first NUL is ASCII. Note that
 * Postfix answers false for the empty string.
 */
export function allAscii(s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0) break
    if (c > 0x7f) return false
  }
  return true
}

/**
 * The length of the well-formed UTF-8 sequence at `i`, or 0 when the bytes there are not
 * one (RFC 3629 rules as in Postfix's valid_utf8_string(): no over-long forms, no
 * surrogates, nothing above U+10FFFF).
 */
function utf8SequenceLength(s: string, i: number): number {
  const c0 = s.charCodeAt(i)
  const end = s.length
  const tail = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const c = s.charCodeAt(k)
    return k < end && c >= lo && c <= hi
  }
  if (c0 <= 0x7f) return 1
  if (c0 <= 0xdf) return c0 >= 0xc2 && tail(i + 1) ? 2 : 0
  if (c0 <= 0xef) {
    const lo = c0 === 0xe0 ? 0xa0 : 0x80
    const hi = c0 === 0xed ? 0x9f : 0xbf
    return tail(i + 1, lo, hi) && tail(i + 2) ? 3 : 0
  }
  if (c0 <= 0xf4) {
    const lo = c0 === 0xf0 ? 0x90 : 0x80
    const hi = c0 === 0xf4 ? 0x8f : 0xbf
    return tail(i + 1, lo, hi) && tail(i + 2) && tail(i + 3) ? 4 : 0
  }
  return 0
}

/** Postfix valid_utf8_string() over the whole byte string. */
export function isValidUtf8(s: string): boolean {
  for (let i = 0; i < s.length;) {
    const n = utf8SequenceLength(s, i)
    if (n === 0) return false
    i += n
  }
  return true
}

/**
 * Postfix casefold() of UTF-8 text: all-ASCII text is lowercase()d; anything else goes
 * through ICU's ucasemap_utf8FoldCase() (full case folding, U_FOLD_CASE_DEFAULT, in the
 * native addon, linked against the ICU that Postfix links), which copies bytes that are
 * not well-formed UTF-8 unchanged. Like Postfix, the text ends at its first NUL. Without
 * the addon, non-ASCII text cannot be folded: a configuration error of the table.
 */
export function casefoldUtf8(s: string): string {
  if (allAscii(s)) return lowercaseAscii(s)
  let icu: PostfixNative
  try {
    icu = loadNative()
  } catch (err) {
    throw new TableError('config', (err as Error).message)
  }
  return icu.casefold(s)
}

/**
 * Fold a lookup key as Postfix does: `utf8` false is lowercase() (ASCII only), true is
 * casefold() (ASCII fast path, full Unicode case folding otherwise).
 */
export function foldKey(key: string, utf8: boolean): string {
  return utf8 ? casefoldUtf8(key) : lowercaseAscii(key)
}

/**
 * Postfix's util_utf8_enable, which the daemons set from smtputf8_enable. Its 3.7 default
 * is `${{$compatibility_level} <level {1} ? {no} : {yes}}`; if the configuration layer hands
 * that expression back unevaluated, evaluate it here.
 */
export function smtputf8Enabled(config: MainConfig): boolean {
  const value = config.get('smtputf8_enable').trim()
  if (/^yes$/i.test(value)) return true
  if (/^no$/i.test(value)) return false
  const level = Number.parseFloat(config.get('compatibility_level'))
  return Number.isFinite(level) && level >= 1
}

/** Postfix DICT_NEED_UTF8_ACTIVATION(util_utf8_enable, dict_flags). */
export function needUtf8Activation(config: MainConfig, dictFlags: number): boolean {
  return (dictFlags & DICT_FLAG.UTF8_REQUEST) !== 0 && smtputf8Enabled(config)
}

const BAD_UTF8 = 'malformed UTF-8 or invalid codepoint'

function isPromiseLike<T>(x: unknown): x is PromiseLike<T> {
  return typeof x === 'object' && x !== null && typeof (x as {then?: unknown}).then === 'function'
}

/**
 * Put Postfix's UTF-8 layer (dict_utf8_activate) in front of `table`'s lookup, update
 * and delete, in place, and mark it UTF8_ACTIVE; sequence is left alone, as in Postfix.
 * - a key that is not valid UTF-8 is logged and skipped: lookup finds nothing, update
 *   and delete report success without doing anything;
 * - the key is casefold()ed when the table's flags at call time ask for it (FOLD_FIX on a
 *   FIXED table, FOLD_MUL otherwise), and the table itself is then called with both fold
 *   flags cleared, so that it does not lowercase() the key again;
 * - a looked-up value that is not valid UTF-8 is a configuration error; an update with
 *   such a value is logged and skipped.
 * The wrapped methods must read `table.flags` synchronously when called (before their
 * first await): the fold flags are cleared only around that synchronous call.
 * Does nothing when the table is already UTF8_ACTIVE.
 */
export function activateUtf8<T extends Table>(table: T, log: TableLog): T {
  if (table.flags & DICT_FLAG.UTF8_ACTIVE) return table
  const label = (): string => `${table.type}:${table.name}`
  const checkFold = (key: string): string | undefined => {
    if (!allAscii(key) && !isValidUtf8(key)) return undefined
    const fold = table.flags & DICT_FLAG_FOLD_ANY
    if (fold !== 0 && (fold & (table.flags & DICT_FLAG.FIXED ? DICT_FLAG.FOLD_FIX : DICT_FLAG.FOLD_MUL)))
      return casefoldUtf8(key)
    return key
  }
  const unfolded = <R>(call: () => R): R => {
    const saved = table.flags & DICT_FLAG_FOLD_ANY
    table.flags &= ~DICT_FLAG_FOLD_ANY
    try {
      return call()
    } finally {
      table.flags |= saved
    }
  }

  const lookup = table.lookup.bind(table)
  const checkValue = (key: string, value: string | undefined): string | undefined => {
    if (value !== undefined && !allAscii(value) && !isValidUtf8(value)) {
      const message = `${label()}: key "${key}": non-UTF-8 value "${value}": ${BAD_UTF8}`
      log.warning(message)
      throw new TableError('config', message)
    }
    return value
  }
  table.lookup = (key: string) => {
    const folded = checkFold(key)
    if (folded === undefined) {
      log.warning(`${label()}: non-UTF-8 key "${key}": ${BAD_UTF8}`)
      return undefined
    }
    const value = unfolded(() => lookup(folded))
    return isPromiseLike<string | undefined>(value)
      ? Promise.resolve(value).then((v) => checkValue(key, v))
      : checkValue(key, value)
  }

  const update = table.update?.bind(table)
  if (update) {
    table.update = (key: string, value: string) => {
      const folded = checkFold(key)
      if (folded === undefined) {
        log.warning(`${label()}: non-UTF-8 key "${key}": ${BAD_UTF8}`)
        return true
      }
      if (!allAscii(value) && !isValidUtf8(value)) {
        log.warning(`${label()}: key "${key}": non-UTF-8 value "${value}": ${BAD_UTF8}`)
        return true
      }
      return unfolded(() => update(folded, value))
    }
  }

  const remove = table.delete?.bind(table)
  if (remove) {
    table.delete = (key: string) => {
      const folded = checkFold(key)
      if (folded === undefined) {
        log.warning(`${label()}: non-UTF-8 key "${key}": ${BAD_UTF8}`)
        return true
      }
      return unfolded(() => remove(folded))
    }
  }

  table.flags |= DICT_FLAG.UTF8_ACTIVE
  return table
}
