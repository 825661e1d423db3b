// pcre:/path — PCRE tables (Postfix dict_pcre.c built with PCRE2; format: pcre_table(5)).
//
// Postfix compiles each pattern with pcre2_compile() in 8-bit mode WITHOUT PCRE2_UTF
// (whatever smtputf8_enable says) and with the built-in character tables, so matching is
// over bytes and case-insensitivity, \w \d \s and [:classes:] are ASCII-only. Default
// options are CASELESS|DOTALL; the flags after the closing delimiter toggle i m s x and
// set A (anchored), E (dollar-endonly), U (ungreedy); X is ignored with a warning.
//
// We translate each pattern into a JavaScript RegExp over our latin1 "binary" strings and
// compile it WITHOUT flags: every construct is spelled out under the options in effect at
// that point, so inline option settings ((?i) (?-s) (?x:...) (?^) ...) work with PCRE's
// scoping. Capture groups become JS named groups `p<N>` (PCRE numbering), so extra groups
// can be added freely: atomic groups and possessive quantifiers use the lookahead-capture
// trick `(?=(?<aK>X))\k<aK>`. \A \z \Z \G ^ $ become lookarounds; \Q...\E, \h \v \R \N \C
// \K (outside lookarounds) and octal/hex/control escapes are supported.
//
// Compile errors that PCRE2 10.42 reports are reproduced (message and offset) for the
// common cases; the rule is then skipped with Postfix's warning. Constructs that we cannot
// honour exactly are REFUSED: the table fails to open (config error naming the line):
// backreferences, recursion and subroutine calls, conditionals, callouts, backtracking
// verbs other than (*FAIL), start-of-pattern options ((*UTF) ...), branch reset (?|,
// \p \P \X, \L \l \U \u \N{...}, quantified assertions, (?J) (?xx), and $number
// substitution of a group whose JS capture could differ from PCRE's (a group nested in a
// repeated group, or a repeated group that can match the empty string).

import {DICT_FLAG} from '../protocol/constants.js'
import {lowercaseAscii} from './fold.js'
import {isSpaceChar} from '../util/chars.js'
import {cString} from './source-file.js'
import {TableError, TableLog, TableType} from './table.js'
import {CLASSES, classOf, literal} from './regexp.js'
import {
  expressionTableType, type ExpressionRule, loadExpressionRules, parseRuleReplacement, PatternTable,
  type ReplacementPart, scanDelimitedPattern, searchRules,
} from './pattern-rules.js'

// ---------------------------------------------------------------------------- translation

/** pcre2_compile() failed: Postfix warns "error in regex at offset N: MESSAGE" and skips. */
export class PcreCompileError extends Error {
  constructor(readonly offset: number, message: string) {
    super(message)
  }
}

/** A construct this implementation cannot reproduce exactly (the table is refused). */
export class PcreUnsupportedError extends Error {}

export interface PcreOptions {
  caseless: boolean
  multiline: boolean
  dotall: boolean
  extended: boolean
  anchored: boolean
  dollarEndonly: boolean
  ungreedy: boolean
}

export interface PcreTranslation {
  /** JavaScript RegExp source, compiled without flags; PCRE group N is JS group `pN`. */
  source: string
  /** PCRE2_INFO_CAPTURECOUNT. */
  captures: number
  /** Groups whose JS capture may differ from PCRE's (why), by group number. */
  unsafeGroups: Map<number, string>
}

interface Opts {
  i: boolean
  m: boolean
  s: boolean
  x: boolean
  U: boolean
  n: boolean
}

interface Piece {
  source: string
  /** Minimum and fixed length (undefined: variable), for lookbehinds and empty checks. */
  min: number
  fixed: number | undefined
  /** Capture groups opened inside (including the piece itself when it is one). */
  groups: number[]
  /** The piece is itself capture group N. */
  own?: number
  /** Cannot be quantified (anchor / simple assertion): PCRE error. */
  anchor?: boolean
  /** A lookaround (quantifying it is refused). */
  lookaround?: boolean
  /** Already carries a quantifier. */
  quantified?: boolean
}

interface Alternation {
  source: string
  branches: {fixed: number | undefined}[]
  min: number
  fixed: number | undefined
  groups: number[]
}

const range = (lo: number, hi: number): boolean[] => {
  const set = new Array<boolean>(256).fill(false)
  for (let c = lo; c <= hi; c++) set[c] = true
  return set
}
const setOf = (test: (c: number) => boolean): boolean[] => Array.from({length: 256}, (_, c) => test(c))
const invert = (set: boolean[]): boolean[] => set.map((b) => !b)
const SETS = {
  d: range(0x30, 0x39),
  s: setOf((c) => c === 0x20 || (c >= 0x09 && c <= 0x0d)),
  w: setOf((c) => CLASSES.alnum(c) || c === 0x5f),
  h: setOf((c) => c === 0x09 || c === 0x20 || c === 0xa0),
  v: setOf((c) => (c >= 0x0a && c <= 0x0d) || c === 0x85),
}
const POSIX: Record<string, (c: number) => boolean> = {
  ...CLASSES,
  word: (c) => CLASSES.alnum(c) || c === 0x5f,
  ascii: (c) => c < 0x80,
}
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9'
const isOctal = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '7'
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9A-Fa-f]$/.test(c)
const isWordChar = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9_]$/.test(c)
const isPatternSpace = (c: string | undefined): boolean => c === ' ' || (c !== undefined && c >= '\t' && c <= '\r')
const NOT_SUPPORTED_ESCAPES = 'PCRE2 does not support \\F, \\L, \\l, \\N{name}, \\U, or \\u'
const MAX_QUANTIFIER = 65535

type Escape =
  | {kind: 'char'; code: number}
  | {kind: 'set'; set: boolean[]}
  | {kind: 'assert'; source: string}
  | {kind: 'piece'; source: string; min: number; fixed: number | undefined}
  | {kind: 'backref'}
  | {kind: 'keep'}
  | {kind: 'quote'}
  | {kind: 'endquote'}

/**
 * Translate a PCRE2 pattern (8-bit, non-UTF, built-in tables) into JS RegExp source.
 * Throws PcreCompileError for PCRE2 compile errors, PcreUnsupportedError for refusals.
 */
export function translatePcre(pattern: string, options: PcreOptions): PcreTranslation {
  // First pass only counts the capture groups (needed to read \NN as backreference or octal).
  const first = translatePass(pattern, options, Number.POSITIVE_INFINITY)
  return translatePass(pattern, options, first.captures)
}

function translatePass(pattern: string, options: PcreOptions, totalCaptures: number): PcreTranslation {
  let pos = 0
  let captures = 0
  let atomics = 0
  let lookbehindDepth = 0
  let lookaroundDepth = 0
  let inQuote = false
  const names = new Set<string>()
  const unsafeGroups = new Map<number, string>()
  const ch = (i = pos): string | undefined => pattern[i]
  const unsupported = (what: string): never => {
    throw new PcreUnsupportedError(`${what} is not supported by this implementation`)
  }
  const fail = (offset: number, message: string): never => {
    throw new PcreCompileError(offset, message)
  }

  const anchorStart = '(?<![^])'
  const anchorEnd = '(?![^])'

  /** Parse an escape at `pos` (pointing at the backslash). */
  const parseEscape = (inClass: boolean): Escape => {
    const start = pos
    pos++
    if (pos >= pattern.length) fail(pattern.length, '\\ at end of pattern')
    const e = pattern[pos++]
    const code = (c: string): Escape => ({kind: 'char', code: c.charCodeAt(0)})
    switch (e) {
      case 'a': return {kind: 'char', code: 0x07}
      case 'e': return {kind: 'char', code: 0x1b}
      case 'f': return {kind: 'char', code: 0x0c}
      case 'n': return {kind: 'char', code: 0x0a}
      case 'r': return {kind: 'char', code: 0x0d}
      case 't': return {kind: 'char', code: 0x09}
      case 'd': return {kind: 'set', set: SETS.d}
      case 'D': return {kind: 'set', set: invert(SETS.d)}
      case 's': return {kind: 'set', set: SETS.s}
      case 'S': return {kind: 'set', set: invert(SETS.s)}
      case 'w': return {kind: 'set', set: SETS.w}
      case 'W': return {kind: 'set', set: invert(SETS.w)}
      case 'h': return {kind: 'set', set: SETS.h}
      case 'H': return {kind: 'set', set: invert(SETS.h)}
      case 'v': return {kind: 'set', set: SETS.v}
      case 'V': return {kind: 'set', set: invert(SETS.v)}
      case 'Q': return {kind: 'quote'}
      case 'E': return {kind: 'endquote'}
      case 'c': {
        if (pos >= pattern.length) fail(pos, '\\c at end of pattern')
        const c = pattern.charCodeAt(pos)
        if (c < 0x20 || c > 0x7e) unsupported('\\c followed by a non-printable character')
        pos++
        const upper = c >= 0x61 && c <= 0x7a ? c - 0x20 : c
        return {kind: 'char', code: upper ^ 0x40}
      }
      case 'x': {
        if (ch() === '{') {
          const close = pattern.indexOf('}', pos)
          const digits = close < 0 ? '' : pattern.slice(pos + 1, close)
          if (close < 0 || !/^[0-9A-Fa-f]+$/.test(digits)) unsupported('this \\x{...} form')
          const value = Number.parseInt(digits, 16)
          if (value > 0xff) fail(close, 'character code point value in \\x{} or \\o{} is too large')
          pos = close + 1
          return {kind: 'char', code: value}
        }
        let digits = ''
        while (digits.length < 2 && isHex(ch())) digits += pattern[pos++]
        return {kind: 'char', code: digits.length === 0 ? 0 : Number.parseInt(digits, 16)}
      }
      case 'o': {
        if (ch() !== '{') unsupported('\\o without braces')
        const close = pattern.indexOf('}', pos)
        const digits = close < 0 ? '' : pattern.slice(pos + 1, close)
        if (close < 0 || !/^[0-7]+$/.test(digits)) unsupported('this \\o{...} form')
        const value = Number.parseInt(digits, 8)
        if (value > 0xff) fail(close, 'character code point value in \\x{} or \\o{} is too large')
        pos = close + 1
        return {kind: 'char', code: value}
      }
      case '0': {
        let digits = ''
        while (digits.length < 2 && isOctal(ch())) digits += pattern[pos++]
        return {kind: 'char', code: digits.length === 0 ? 0 : Number.parseInt(digits, 8)}
      }
    }
    if (e >= '1' && e <= '9') {
      if (inClass) {
        // In a class, \1..\7 start an octal number; \8 and \9 are errors in PCRE2.
        if (!isOctal(e)) unsupported('\\8 or \\9 in a character class')
        let digits = e
        while (digits.length < 3 && isOctal(ch())) digits += pattern[pos++]
        const value = Number.parseInt(digits, 8)
        if (value > 0xff) unsupported('an octal escape above \\377')
        return {kind: 'char', code: value}
      }
      let end = pos
      while (isDigit(pattern[end])) end++
      const number = Number(pattern.slice(pos - 1, end))
      if (number < 10 || e === '8' || e === '9' || number <= totalCaptures) {
        pos = end
        if (number > totalCaptures) fail(end - 1, 'reference to non-existent subpattern')
        return {kind: 'backref'}
      }
      let digits = ''
      pos--
      while (digits.length < 3 && isOctal(ch())) digits += pattern[pos++]
      const value = Number.parseInt(digits, 8)
      if (value > 0xff) unsupported('an octal escape above \\377')
      return {kind: 'char', code: value}
    }
    if (inClass) {
      if (e === 'b') return {kind: 'char', code: 0x08}
      if (e === 'N') fail(pos, '\\N is not supported in a class')
      if ('BRXAzZGKgk'.includes(e)) fail(start + 1, 'escape sequence is invalid in character class')
    } else {
      switch (e) {
        case 'b': return {kind: 'assert', source: '\\b'}
        case 'B': return {kind: 'assert', source: '\\B'}
        case 'A': case 'G': return {kind: 'assert', source: anchorStart}
        case 'z': return {kind: 'assert', source: anchorEnd}
        case 'Z': return {kind: 'assert', source: '(?=\\n?(?![^]))'}
        case 'K': return {kind: 'keep'}
        case 'N':
          if (ch() === '{') unsupported('\\N{...}')
          return {kind: 'piece', source: '[^\\n]', min: 1, fixed: 1}
        case 'C': return {kind: 'piece', source: '[^]', min: 1, fixed: 1}
        case 'R': return {kind: 'piece', source: '(?:\\r\\n|[\\n\\x0b\\x0c\\r\\x85])', min: 1, fixed: undefined}
        case 'g': case 'k': return {kind: 'backref'}
      }
    }
    if ('pPX'.includes(e)) unsupported(`\\${e}`)
    if ('FLlUu'.includes(e)) fail(pos, NOT_SUPPORTED_ESCAPES)
    if (/^[A-Za-z0-9]$/.test(e)) fail(start + 1, 'unrecognized character follows \\')
    return code(e)
  }

  /** A character class; `pos` is just after '['. */
  const parseClass = (opts: Opts): string => {
    let set = new Array<boolean>(256).fill(false)
    let negate = false
    if (ch() === '^') {
      negate = true
      pos++
    }
    let first = true
    let quote = false
    // The previous single character (range start candidate) and where its '-' may follow.
    type Item = {code: number; end: number} | {set: boolean[]} | undefined
    const next = (): Item | 'close' | 'skip' => {
      if (pos >= pattern.length) fail(pattern.length, 'missing terminating ] for character class')
      const c = pattern[pos]
      if (quote) {
        if (c === '\\' && ch(pos + 1) === 'E') {
          pos += 2
          quote = false
          return 'skip'
        }
        pos++
        return {code: c.charCodeAt(0), end: pos}
      }
      if (c === ']' && !first) {
        pos++
        return 'close'
      }
      if (c === '[' && (ch(pos + 1) === ':' || ch(pos + 1) === '.' || ch(pos + 1) === '=')) {
        const kind = pattern[pos + 1]
        const end = pattern.indexOf(`${kind}]`, pos + 2)
        if (end >= 0 && /^\^?[A-Za-z]*$/.test(pattern.slice(pos + 2, end))) {
          if (kind !== ':') fail(pos, 'POSIX collating elements are not supported')
          let name = pattern.slice(pos + 2, end)
          const neg = name.startsWith('^')
          if (neg) name = name.slice(1)
          if (!(name in POSIX)) fail(pos + 2 + (neg ? 1 : 0), 'unknown POSIX class name')
          pos = end + 2
          const s = setOf(POSIX[name])
          return {set: neg ? invert(s) : s}
        }
      }
      if (c === '\\') {
        const at = pos
        const e = parseEscape(true)
        if (e.kind === 'char') return {code: e.code, end: pos}
        if (e.kind === 'set') return {set: e.set}
        if (e.kind === 'quote') {
          quote = true
          return 'skip'
        }
        if (e.kind === 'endquote') return 'skip'
        return fail(at + 1, 'escape sequence is invalid in character class')
      }
      pos++
      return {code: c.charCodeAt(0), end: pos}
    }
    for (;;) {
      const item = next()
      if (item === 'close') break
      if (item === 'skip') continue
      first = false
      if (item === undefined) continue
      const add = (s: boolean[]): void => {
        for (let c = 0; c < 256; c++) if (s[c]) set[c] = true
      }
      // A range "x-y" (a '-' that is not last).
      if (ch() === '-' && !quote && pos + 1 < pattern.length && ch(pos + 1) !== ']') {
        const dash = pos
        pos++
        let end: Item | 'close' | 'skip' = 'skip'
        while (end === 'skip') end = next()
        if (end === 'close') throw new Error('unreachable')
        if ('set' in item!) fail(dash, 'invalid range in character class')
        if (end === undefined) continue
        if ('set' in end) return fail(pos, 'invalid range in character class')
        const lo = (item as {code: number}).code
        const hi = end.code
        if (hi < lo) fail(end.end - 1, 'range out of order in character class')
        add(range(lo, hi))
        continue
      }
      if ('set' in item) add(item.set)
      else set[item.code] = true
    }
    if (opts.i) for (let c = 0; c < 256; c++) if (set[c] && CLASSES.alpha(c)) set[c ^ 0x20] = true
    if (negate) set = invert(set)
    return classOf(set)
  }

  const skipExtended = (opts: Opts): void => {
    if (!opts.x || inQuote) return
    for (;;) {
      if (isPatternSpace(ch())) pos++
      else if (ch() === '#') {
        while (pos < pattern.length && pattern[pos] !== '\n') pos++
      } else break
    }
  }

  /** A {n}, {n,} or {n,m} quantifier at pos ('{'); undefined when it is a literal. */
  const parseBraces = (): {min: number; max: number} | undefined => {
    const m = /^\{(\d+)(?:(,)(\d*))?\}/.exec(pattern.slice(pos))
    if (!m) return undefined
    const min = Number(m[1])
    if (min > MAX_QUANTIFIER) fail(pos + 1 + m[1].length, 'number too big in {} quantifier')
    let max = min
    if (m[2] !== undefined) {
      max = m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3])
      if (max !== Number.POSITIVE_INFINITY && max > MAX_QUANTIFIER)
        fail(pos + 2 + m[1].length + m[3].length, 'number too big in {} quantifier')
    }
    if (max < min) fail(pos + m[0].length - 1, 'numbers out of order in {} quantifier')
    pos += m[0].length
    return {min, max}
  }

  const quantify = (piece: Piece, min: number, max: number, mode: 'greedy' | 'lazy' | 'possessive'): void => {
    if (piece.lookaround) unsupported('a quantified assertion')
    const q = min === 0 && max === Number.POSITIVE_INFINITY ? '*'
      : min === 1 && max === Number.POSITIVE_INFINITY ? '+'
        : min === 0 && max === 1 ? '?'
          : max === Number.POSITIVE_INFINITY ? `{${min},}` : min === max ? `{${min}}` : `{${min},${max}}`
    const body = `(?:${piece.source})${q}${mode === 'lazy' ? '?' : ''}`
    if (mode === 'possessive' && lookbehindDepth === 0) {
      const name = `a${++atomics}`
      piece.source = `(?:(?=(?<${name}>${body}))\\k<${name}>)`
    } else {
      piece.source = body
    }
    if (max > 1) {
      for (const g of piece.groups) {
        if (g !== piece.own) unsafeGroups.set(g, 'a group inside a repeated group')
        else if (piece.min === 0) unsafeGroups.set(g, 'a repeated group that can match the empty string')
      }
    }
    piece.fixed = min === max && piece.fixed !== undefined ? piece.fixed * min : undefined
    piece.min = piece.min * min
    piece.quantified = true
    piece.own = undefined
  }

  const parseAlternation = (outer: Opts): Alternation => {
    const opts: Opts = {...outer}
    const branches: {source: string; min: number; fixed: number | undefined; groups: number[]}[] = []
    for (;;) {
      branches.push(parseBranch(opts))
      if (!inQuote && ch() === '|') {
        pos++
        continue
      }
      break
    }
    const fixed = branches.every((b) => b.fixed === branches[0].fixed) ? branches[0].fixed : undefined
    return {
      source: branches.map((b) => b.source).join('|'),
      branches,
      min: Math.min(...branches.map((b) => b.min)),
      fixed,
      groups: branches.flatMap((b) => b.groups),
    }
  }

  const parseBranch = (opts: Opts): {source: string; min: number; fixed: number | undefined; groups: number[]} => {
    const pieces: Piece[] = []
    for (;;) {
      skipExtended(opts)
      if (pos >= pattern.length) break
      const c = pattern[pos]
      if (inQuote) {
        if (c === '\\' && ch(pos + 1) === 'E') {
          pos += 2
          inQuote = false
          continue
        }
        pos++
        pieces.push({source: literal(c.charCodeAt(0), opts.i), min: 1, fixed: 1, groups: []})
        continue
      }
      if (c === '|' || c === ')') break
      // Quantifiers.
      let quant: {min: number; max: number} | undefined
      if (c === '*') quant = {min: 0, max: Number.POSITIVE_INFINITY}
      else if (c === '+') quant = {min: 1, max: Number.POSITIVE_INFINITY}
      else if (c === '?') quant = {min: 0, max: 1}
      if (quant) pos++
      else if (c === '{') quant = parseBraces()
      if (quant) {
        const prev = pieces[pieces.length - 1]
        if (!prev || prev.anchor || prev.quantified) fail(pos - 1, 'quantifier does not follow a repeatable item')
        let mode: 'greedy' | 'lazy' | 'possessive' = opts.U ? 'lazy' : 'greedy'
        if (ch() === '+') {
          mode = 'possessive'
          pos++
        } else if (ch() === '?') {
          mode = opts.U ? 'greedy' : 'lazy'
          pos++
        }
        quantify(prev as Piece, quant.min, quant.max, mode)
        continue
      }
      const atom = parseAtom(opts)
      if (atom) pieces.push(atom)
    }
    let min = 0
    let fixed: number | undefined = 0
    for (const p of pieces) {
      min += p.min
      fixed = fixed !== undefined && p.fixed !== undefined ? fixed + p.fixed : undefined
    }
    return {source: pieces.map((p) => p.source).join(''), min, fixed, groups: pieces.flatMap((p) => p.groups)}
  }

  const plain = (source: string, min = 1, fixed: number | undefined = 1): Piece => ({source, min, fixed, groups: []})
  const anchor = (source: string): Piece => ({source, min: 0, fixed: 0, groups: [], anchor: true})

  /** Parse one atom; undefined for things that produce nothing (comments, option settings). */
  const parseAtom = (opts: Opts): Piece | undefined => {
    const c = pattern[pos]
    if (c === '(') return parseGroup(opts)
    if (c === '[') {
      if (/^\[:\^?[A-Za-z]*:\]/.test(pattern.slice(pos)) || /^\[[.=][^\]]*[.=]\]/.test(pattern.slice(pos))) {
        if (pattern[pos + 1] === ':') fail(pos, 'POSIX named classes are supported only within a class')
      }
      pos++
      return plain(parseClass(opts))
    }
    if (c === '.') {
      pos++
      return plain(opts.s ? '[^]' : '[^\\n]')
    }
    if (c === '^') {
      pos++
      return anchor(opts.m ? '(?:(?<![^])|(?<=\\n)(?=[^]))' : anchorStart)
    }
    if (c === '$') {
      pos++
      if (opts.m) return anchor('(?=\\n|(?![^]))')
      return anchor(options.dollarEndonly ? anchorEnd : '(?=\\n?(?![^]))')
    }
    if (c === '\\') {
      const e = parseEscape(false)
      switch (e.kind) {
        case 'char': return plain(literal(e.code, opts.i))
        case 'set': return plain(classOf(e.set))
        case 'assert': return anchor(e.source)
        case 'piece': return plain(e.source, e.min, e.fixed)
        case 'backref': return Number.isFinite(totalCaptures) ? unsupported('a backreference') : plain('')
        case 'keep':
          if (lookaroundDepth > 0) fail(pattern.length, '\\K is not allowed in lookarounds (but see PCRE2_EXTRA_ALLOW_LOOKAROUND_BSK)')
          // \K only moves the start of $0, which Postfix never substitutes.
          return anchor('')
        case 'quote':
          inQuote = true
          return undefined
        case 'endquote':
          return undefined
      }
    }
    if (c === '*' || c === '+' || c === '?') fail(pos, 'quantifier does not follow a repeatable item')
    if (c === '{' && parseBraces() !== undefined) fail(pos - 1, 'quantifier does not follow a repeatable item')
    pos++
    return plain(literal(c.charCodeAt(0), opts.i))
  }

  const closeGroup = (): void => {
    if (ch() !== ')') fail(pattern.length, 'missing closing parenthesis')
    pos++
  }

  const capture = (opts: Opts, name?: string): Piece => {
    const n = ++captures
    if (name !== undefined) names.add(name)
    const inner = parseAlternation(opts)
    closeGroup()
    return {source: `(?<p${n}>${inner.source})`, min: inner.min, fixed: inner.fixed, groups: [n, ...inner.groups], own: n}
  }

  const group = (opts: Opts, kind: 'plain' | 'atomic' | '=' | '!' | '<=' | '<!', open: number): Piece => {
    const look = kind !== 'plain' && kind !== 'atomic'
    if (look) lookaroundDepth++
    if (kind === '<=' || kind === '<!') lookbehindDepth++
    const inner = parseAlternation(opts)
    closeGroup()
    if (look) lookaroundDepth--
    if (kind === '<=' || kind === '<!') {
      lookbehindDepth--
      if (inner.branches.some((b) => b.fixed === undefined)) fail(open, 'lookbehind assertion is not fixed length')
    }
    const piece: Piece = {source: '', min: inner.min, fixed: inner.fixed, groups: inner.groups}
    if (kind === 'plain') piece.source = `(?:${inner.source})`
    else if (kind === 'atomic') {
      if (lookbehindDepth > 0) piece.source = `(?:${inner.source})`
      else {
        const name = `a${++atomics}`
        piece.source = `(?:(?=(?<${name}>${inner.source}))\\k<${name}>)`
      }
    } else {
      piece.source = `(?${kind}${inner.source})`
      piece.min = 0
      piece.fixed = 0
      piece.lookaround = true
      if (kind === '!' || kind === '<!') piece.groups = []
    }
    return piece
  }

  const parseName = (terminator: string, start: number): string => {
    let end = start
    while (isWordChar(pattern[end])) end++
    if (isDigit(pattern[start])) fail(start, 'subpattern name must start with a non-digit')
    if (end === start) unsupported('this group name syntax')
    if (pattern[end] !== terminator) fail(end, 'syntax error in subpattern name (missing terminator?)')
    if (end - start > 32) unsupported('a group name longer than 32 characters')
    const name = pattern.slice(start, end)
    pos = end + 1
    if (names.has(name)) fail(pos, 'two named subpatterns have the same name (PCRE2_DUPNAMES not set)')
    return name
  }

  const parseGroup = (opts: Opts): Piece | undefined => {
    const open = pos
    pos++
    if (ch() === '*') {
      const m = /^\(\*([A-Za-z_]*)\)/.exec(pattern.slice(open))
      if (m && (m[1] === 'F' || m[1] === 'FAIL')) {
        pos = open + m[0].length
        return plain('(?!)', 0, 0)
      }
      return unsupported('a (*VERB) or start-of-pattern option')
    }
    if (ch() !== '?') {
      if (opts.n) return group(opts, 'plain', open)
      return capture(opts)
    }
    pos++
    const c = ch()
    switch (c) {
      case ':': pos++; return group(opts, 'plain', open)
      case '>': pos++; return group(opts, 'atomic', open)
      case '=': pos++; return group(opts, '=', open)
      case '!': pos++; return group(opts, '!', open)
      case '|': return unsupported('branch reset (?|...)')
      case '(': return unsupported('a conditional group')
      case 'C': return unsupported('a callout')
      case 'R': case '&': case '+': return unsupported('recursion or a subroutine call')
      case '#': {
        const end = pattern.indexOf(')', pos)
        if (end < 0) fail(pattern.length, 'missing ) after (?# comment')
        pos = end + 1
        return undefined
      }
      case '<':
        if (ch(pos + 1) === '=') {
          pos += 2
          return group(opts, '<=', open)
        }
        if (ch(pos + 1) === '!') {
          pos += 2
          return group(opts, '<!', open)
        }
        return capture(opts, parseName('>', pos + 1))
      case "'":
        return capture(opts, parseName("'", pos + 1))
      case 'P':
        if (ch(pos + 1) === '<') return capture(opts, parseName('>', pos + 2))
        return unsupported('(?P=name) or (?P>name)')
    }
    if (isDigit(c) || (c === '-' && isDigit(ch(pos + 1)))) return unsupported('recursion or a subroutine call')
    // Option settings: (?imnsxU-imnsxU) or (?^...), optionally followed by ':' for a group.
    const next: Opts = {...opts}
    let on = true
    if (ch() === '^') {
      Object.assign(next, {i: false, m: false, n: false, s: false, x: false})
      pos++
    }
    for (;;) {
      const o = ch()
      if (o === undefined) fail(pos, 'missing closing parenthesis')
      if (o === ')' || o === ':') break
      if (o === '-' && on) on = false
      else if (o === 'x' && ch(pos + 1) === 'x') unsupported('(?xx)')
      else if (o === 'i' || o === 'm' || o === 'n' || o === 's' || o === 'x' || o === 'U') next[o] = on
      else if (o === 'J') unsupported('(?J)')
      else fail(pos, 'unrecognized character after (? or (?-')
      pos++
    }
    if (ch() === ':') {
      pos++
      return group(next, 'plain', open)
    }
    pos++
    Object.assign(opts, next) // the rest of the enclosing group, including later branches
    return undefined
  }

  const opts: Opts = {i: options.caseless, m: options.multiline, s: options.dotall, x: options.extended, U: options.ungreedy, n: false}
  const top = parseAlternation(opts)
  if (pos < pattern.length) fail(pos, 'unmatched closing parenthesis')
  const source = options.anchored ? `${anchorStart}(?:${top.source})` : top.source
  return {source, captures, unsafeGroups}
}

// ---------------------------------------------------------------------------- the table

interface CompiledPattern {
  regex: RegExp
  match: boolean
}

interface PcreMatchRule {
  op: 'match'
  lineno: number
  pattern: CompiledPattern
  parts: ReplacementPart[]
  maxSub: number
  literal?: string
}

type PcreRule = ExpressionRule<PcreMatchRule, CompiledPattern>

export class PcreTable extends PatternTable {
  readonly type = 'pcre'

  constructor(name: string, private readonly rules: PcreRule[], dictFlags: number) {
    super(name, dictFlags)
  }

  lookup(key: string): string | undefined {
    if (this.flags & DICT_FLAG.FOLD_MUL) key = lowercaseAscii(key)
    // Postfix matches the C string: nothing after a NUL byte.
    const subject = cString(key)
    return searchRules(this.rules, (rule) => {
      if (rule.literal !== undefined) return rule.pattern.regex.test(subject) === rule.pattern.match ? rule.literal : undefined
      const m = rule.pattern.regex.exec(subject)
      if (!m) return undefined
      let out = ''
      for (const part of rule.parts) {
        if (typeof part === 'string') out += part
        else out += m.groups?.[`p${part}`] ?? ''
      }
      return out
    }, (rule) => rule.pattern.regex.test(subject) === rule.pattern.match)
  }
}

interface RawPattern {
  text: string
  match: boolean
  options: PcreOptions
}

/** Postfix dict_pcre_get_pattern(): [!...]<delim>pattern<delim>[flags]. */
function getPattern(line: string, from: number, where: string, warn: (m: string) => void): {pattern: RawPattern; pos: number} | undefined {
  const scanned = scanDelimitedPattern(line, from, where, warn, {finalBackslashCloses: false, unclosedVerb: 'ignoring'})
  if (!scanned) return undefined
  const {match, text} = scanned
  let pos = scanned.pos
  const options: PcreOptions = {
    caseless: true, multiline: false, dotall: true, extended: false, anchored: false, dollarEndonly: false, ungreedy: false,
  }
  const toggles: Record<string, keyof PcreOptions> = {
    i: 'caseless', m: 'multiline', s: 'dotall', x: 'extended', A: 'anchored', E: 'dollarEndonly', U: 'ungreedy',
  }
  while (pos < line.length && !isSpaceChar(line[pos])) {
    const flag = line[pos]
    if (flag in toggles) options[toggles[flag]] = !options[toggles[flag]]
    else if (flag === 'X') warn(`${where}: ignoring obsolete regexp option "X"`)
    else {
      warn(`${where}: unknown regexp option "${flag}": skipping this rule`)
      return undefined
    }
    pos++
  }
  return {pattern: {text, match, options}, pos}
}

function compile(raw: RawPattern, where: string, warn: (m: string) => void):
  {compiled: CompiledPattern; translation: PcreTranslation} | undefined {
  let translation: PcreTranslation
  try {
    translation = translatePcre(raw.text, raw.options)
  } catch (err) {
    if (err instanceof PcreCompileError) {
      warn(`${where}: error in regex at offset ${err.offset}: ${err.message}`)
      return undefined
    }
    if (err instanceof PcreUnsupportedError) throw new TableError('config', `${where}: ${err.message}`)
    throw err
  }
  let regex: RegExp
  try {
    regex = new RegExp(translation.source)
  } catch (err) {
    throw new TableError('config', `${where}: cannot translate this regular expression: ${(err as Error).message}`)
  }
  return {compiled: {regex, match: raw.match}, translation}
}

/** A pattern rule line: pattern(s), then the replacement text. */
async function parseMatchRule(line: string, where: string, dictFlags: number, warn: (m: string) => void):
  Promise<PcreMatchRule | undefined> {
  const got = getPattern(line, 0, where, warn)
  if (!got) return undefined
  // dict_regexp words one prescan message differently; the logic is the same.
  const prescanWarn = (m: string): void => warn(m.replace(': out-of-range replacement index "', ': out of range replacement index "'))
  const replacement = await parseRuleReplacement(line, got.pos, where, dictFlags, got.pattern.match, warn, prescanWarn)
  if (!replacement) return undefined
  const {parts, maxSub} = replacement
  const one = compile(got.pattern, where, warn)
  if (!one) return undefined
  if (maxSub > one.translation.captures) {
    warn(`${where}: out of range replacement index "${maxSub}": skipping this rule`)
    return undefined
  }
  for (const part of parts) {
    const why = typeof part === 'number' ? one.translation.unsafeGroups.get(part) : undefined
    if (why !== undefined)
      throw new TableError('config', `${where}: cannot reproduce PCRE's capture of group ${part} for $${part} substitution (${why})`)
  }
  const literal = maxSub === 0 ? parts.join('') : undefined
  return {op: 'match', lineno: 0, pattern: one.compiled, parts, maxSub, literal}
}

/** Load rules from pcre_table(5) text; throws TableError for refused patterns. */
export async function loadPcreRules(name: string, content: string, dictFlags: number, log: TableLog): Promise<PcreRule[]> {
  return loadExpressionRules('pcre', name, content, dictFlags, log, {getPattern, compile, parseMatch: parseMatchRule})
}

/**
 * Open as dict_pcre_open() does: O_RDONLY only; the file (or inline `{ {rule} ... }` list)
 * is read and compiled once; bad rules are skipped with Postfix's warnings.
 */
export const pcreType: TableType = expressionTableType('pcre', loadPcreRules, (name, rules, dictFlags) => new PcreTable(name, rules, dictFlags))
