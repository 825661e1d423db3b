// regexp:/path — POSIX regular expression tables (Postfix dict_regexp.c; format:
// regexp_table(5)). Postfix compiles each pattern with glibc regcomp() in the C locale
// (REG_EXTENDED|REG_ICASE by default) and matches the key as bytes. We translate each
// pattern into a JavaScript RegExp over our latin1 "binary" strings (one char per byte):
//
// - no JS `i`, `m`, `s` or `u` flag is used: case-insensitivity is spelled out for ASCII
//   letters only (C locale: é and É are different bytes), `^`/`$` become lookarounds on
//   the start/end of the key (or on '\n' with the `m` flag = REG_NEWLINE), `.` is any
//   byte (not '\n' with REG_NEWLINE), bracket expressions are computed as byte sets
//   ([:classes:] in the C locale, `\` literal inside brackets, `]` first is literal,
//   [=c=] and [.c.] of one byte);
// - glibc's GNU escapes \w \W \s \S \b \B \< \> \` \' are supported; any other escaped
//   character is literal (as glibc does: `\n` is "n");
// - `x` toggles REG_EXTENDED off (POSIX basic syntax with GNU \+ \? \| ), as in Postfix;
// - compile errors are reported with glibc's regerror() texts for the cases glibc
//   reports (the rule is skipped, as in Postfix).
//
// Match/no-match does not depend on leftmost-first vs leftmost-longest semantics, so
// rules without $number substitution behave exactly like Postfix. With substitution, the
// matched span is computed leftmost-longest (POSIX), and the groups are those of a
// JS match forced to that span. That equals POSIX's subexpression rules when the pattern
// has no alternation that could match in more than one way (we accept alternation of
// plain literal strings none of which is a prefix of another), no backreference, and no
// referenced group inside a repeated group. Any other pattern whose groups are
// substituted is REFUSED: the table fails to open (config error naming the line) rather
// than answer differently from Postfix. Backreferences (\1..\9) are refused in any rule.

import {DICT_FLAG} from '../protocol/constants.js'
import {lowercaseAscii} from './fold.js'
import {isSpaceChar} from '../util/chars.js'
import {TableError, TableLog, TableType} from './table.js'
import {
  expressionTableType, type ExpressionRule, loadExpressionRules, parseRuleReplacement, PatternTable,
  type ReplacementPart, scanDelimitedPattern, searchRules,
} from './pattern-rules.js'

// Shared with pcre and cidr; still exported from here, where they were first defined.
export {parseReplacement, readPatternSource, type ReplacementPart} from './pattern-rules.js'

// ---------------------------------------------------------------------------- translation

export interface PosixOptions {
  extended: boolean
  icase: boolean
  newline: boolean
}

export interface Translation {
  /** JavaScript RegExp source, to be compiled without flags. */
  source: string
  /** regcomp()'s re_nsub: the number of groups. */
  nsub: number
  /** Why JS captures could differ from POSIX submatches, if they could. */
  ambiguity?: string
  /** The pattern uses backreferences (refused). */
  backref: boolean
  /** Groups (1-based) that sit inside a repeated group. */
  repeatedGroups: Set<number>
}

class RegcompError extends Error {}

const REG = {
  EBRACK: 'Unmatched [, [^, [:, [., or [=',
  EPAREN: 'Unmatched ( or \\(',
  ERPAREN: 'Unmatched ) or \\)',
  EBRACE: 'Unmatched \\{',
  BADBR: 'Invalid content of \\{\\}',
  ERANGE: 'Invalid range end',
  ECTYPE: 'Invalid character class name',
  ECOLLATE: 'Invalid collation character',
  BADRPT: 'Invalid preceding regular expression',
  EESCAPE: 'Trailing backslash',
  ESUBREG: 'Invalid back reference',
  ESIZE: 'Regular expression too big',
} as const

export const hex = (c: number): string => `\\x${c.toString(16).padStart(2, '0')}`
const isAsciiLetter = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
const isDigitCode = (c: number): boolean => c >= 0x30 && c <= 0x39

export const CLASSES: Record<string, (c: number) => boolean> = {
  alpha: isAsciiLetter,
  upper: (c) => c >= 0x41 && c <= 0x5a,
  lower: (c) => c >= 0x61 && c <= 0x7a,
  digit: isDigitCode,
  xdigit: (c) => isDigitCode(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66),
  alnum: (c) => isAsciiLetter(c) || isDigitCode(c),
  space: (c) => c === 0x20 || (c >= 0x09 && c <= 0x0d),
  blank: (c) => c === 0x20 || c === 0x09,
  punct: (c) => c > 0x20 && c < 0x7f && !isAsciiLetter(c) && !isDigitCode(c),
  print: (c) => c >= 0x20 && c < 0x7f,
  graph: (c) => c > 0x20 && c < 0x7f,
  cntrl: (c) => c < 0x20 || c === 0x7f,
}

/** A byte set as a JS character class (never matches chars above 0xFF). */
export function classOf(set: boolean[]): string {
  let out = ''
  let count = 0
  for (let c = 0; c < 256;) {
    if (!set[c]) {
      c++
      continue
    }
    let d = c
    while (d + 1 < 256 && set[d + 1]) d++
    out += d === c ? hex(c) : `${hex(c)}-${hex(d)}`
    count += d - c + 1
    c = d + 1
  }
  return count === 0 ? '(?!)' : `[${out}]`
}

export function literal(c: number, icase: boolean): string {
  if (icase && isAsciiLetter(c)) {
    const lower = c | 0x20
    return `[${String.fromCharCode(lower)}${String.fromCharCode(lower - 0x20)}]`
  }
  if (isAsciiLetter(c) || isDigitCode(c)) return String.fromCharCode(c)
  return hex(c)
}

interface Piece {
  source: string
  /** The text this piece matches when it is a plain literal, else undefined. */
  literal?: string
  /** Already carries a quantifier (a second one needs a wrapping group). */
  quantified: boolean
  /** An anchor or assertion (glibc: a quantifier after it is an error in ERE). */
  anchor: boolean
  /** Groups opened inside this piece (including the piece itself). */
  groups: number[]
}

/**
 * Translate a POSIX regular expression (glibc dialect, C locale) into JS RegExp source.
 * Throws RegcompError with glibc's regerror() text for the errors glibc reports.
 */
export function translatePosix(pattern: string, options: PosixOptions): Translation {
  const {extended: ere, icase, newline} = options
  let pos = 0
  let nsub = 0
  const closed = new Set<number>()
  let backref = false
  const ambiguities: string[] = []
  const repeatedGroups = new Set<number>()
  const at = (i = pos): number => (i < pattern.length ? pattern.charCodeAt(i) : -1)
  const ch = (i = pos): string | undefined => pattern[i]

  const lineStart = newline ? '(?<![^\\n])' : '(?<![^])'
  const lineEnd = newline ? '(?![^\\n])' : '(?![^])'

  const parseBracket = (): string => {
    // at '[' already consumed
    const set = new Array<boolean>(256).fill(false)
    let negate = false
    if (ch() === '^') {
      negate = true
      pos++
    }
    let first = true
    const element = (): number | {cls: string} | undefined => {
      // one bracket element start: a byte, or a class; undefined at end of input
      if (pos >= pattern.length) return undefined
      if (ch() === '[' && (ch(pos + 1) === ':' || ch(pos + 1) === '=' || ch(pos + 1) === '.')) {
        const kind = ch(pos + 1) as string
        const end = pattern.indexOf(`${kind}]`, pos + 2)
        if (end < 0) throw new RegcompError(REG.EBRACK)
        const name = pattern.slice(pos + 2, end)
        pos = end + 2
        if (kind === ':') {
          if (!(name in CLASSES)) throw new RegcompError(REG.ECTYPE)
          return {cls: name}
        }
        if (name.length !== 1) throw new RegcompError(REG.ECOLLATE)
        return name.charCodeAt(0)
      }
      return pattern.charCodeAt(pos++)
    }
    for (;;) {
      if (pos >= pattern.length) throw new RegcompError(REG.EBRACK)
      if (ch() === ']' && !first) {
        pos++
        break
      }
      first = false
      const start = element()
      if (start === undefined) throw new RegcompError(REG.EBRACK)
      if (typeof start === 'object') {
        const test = CLASSES[start.cls]
        for (let c = 0; c < 256; c++) if (test(c)) set[c] = true
        continue
      }
      if (ch() === '-' && ch(pos + 1) !== ']' && pos + 1 < pattern.length) {
        pos++
        const end = element()
        if (end === undefined) throw new RegcompError(REG.EBRACK)
        if (typeof end === 'object' || end < start) throw new RegcompError(REG.ERANGE)
        for (let c = start; c <= end; c++) set[c] = true
        continue
      }
      set[start] = true
    }
    if (icase) {
      for (let c = 0; c < 256; c++) if (set[c] && isAsciiLetter(c)) set[c ^ 0x20] = true
    }
    if (negate) {
      for (let c = 0; c < 256; c++) set[c] = !set[c]
      if (newline) set[0x0a] = false
    }
    return classOf(set)
  }

  /** An interval after `{` (ERE) or `\{` (BRE); returns the JS quantifier. */
  const parseInterval = (): string => {
    const num = (): number | undefined => {
      const start = pos
      while (isDigitCode(at())) pos++
      if (pos === start) return undefined
      return Number(pattern.slice(start, pos))
    }
    const min = num()
    let max = min
    if (ch() === ',') {
      pos++
      max = num()
    }
    if (pos >= pattern.length) throw new RegcompError(REG.EBRACE)
    const closeOk = ere ? ch() === '}' : ch() === '\\' && ch(pos + 1) === '}'
    if (!closeOk) {
      if (!ere && ch() === '\\' && pos + 1 >= pattern.length) throw new RegcompError(REG.EESCAPE)
      throw new RegcompError(REG.BADBR)
    }
    if (min === undefined && max === undefined && pattern[pos - 1] !== ',') throw new RegcompError(REG.BADBR)
    pos += ere ? 1 : 2
    const lo = min ?? 0
    if (max !== undefined && lo > max) throw new RegcompError(REG.BADBR)
    if ((max ?? lo) > 0x7fff) throw new RegcompError(REG.ESIZE)
    return max === undefined ? `{${lo},}` : `{${lo},${max}}`
  }

  /** Parse alternatives until end or a closing group; returns the source. */
  const parseAlternation = (depth: number): {source: string; literal?: string} => {
    const branches: {source: string; literal?: string}[] = []
    for (;;) {
      branches.push(parseBranch(depth))
      if (ere ? ch() === '|' : ch() === '\\' && ch(pos + 1) === '|') {
        pos += ere ? 1 : 2
        continue
      }
      break
    }
    if (branches.length > 1) {
      const lits = branches.map((b) => b.literal)
      let ok = lits.every((l) => l !== undefined && l.length > 0)
      if (ok) {
        const folded = (lits as string[]).map((l) => (icase ? lowercaseAscii(l) : l))
        for (let i = 0; ok && i < folded.length; i++) {
          for (let j = 0; j < folded.length; j++) {
            if (i !== j && folded[j].startsWith(folded[i])) ok = false
          }
        }
      }
      if (!ok) ambiguities.push('alternation whose alternatives can match the same text in more than one way')
    }
    return {source: branches.map((b) => b.source).join('|'), literal: branches.length === 1 ? branches[0].literal : undefined}
  }

  const parseBranch = (depth: number): {source: string; literal?: string} => {
    const pieces: Piece[] = []
    const branchStart = pos
    for (;;) {
      if (pos >= pattern.length) break
      const c = ch()
      const next = ch(pos + 1)
      if (ere && c === '|') break
      if (!ere && c === '\\' && next === '|') break
      if (ere && c === ')' && depth > 0) break
      if (!ere && c === '\\' && next === ')') {
        if (depth > 0) break
        throw new RegcompError(REG.ERPAREN)
      }
      // Quantifiers.
      let quant: string | undefined
      if (c === '*') {
        // BRE: a leading '*' (start of RE, after \( or \|, or after a leading ^) is literal.
        const prev = pieces[pieces.length - 1]
        if (!ere && (pieces.length === 0 || (pieces.length === 1 && prev.anchor && prev.source === lineStart && pos - branchStart === 1))) {
          pos++
          pieces.push({source: hex(0x2a), literal: '*', quantified: false, anchor: false, groups: []})
          continue
        }
        pos++
        quant = '*'
      } else if (ere && (c === '+' || c === '?')) {
        pos++
        quant = c
      } else if (!ere && c === '\\' && (next === '+' || next === '?')) {
        pos += 2
        quant = next
      } else if (ere ? c === '{' : c === '\\' && next === '{') {
        if (pieces.length === 0 || pieces[pieces.length - 1].anchor) throw new RegcompError(REG.BADRPT)
        pos += ere ? 1 : 2
        quant = parseInterval()
      }
      if (quant !== undefined) {
        const prev = pieces[pieces.length - 1]
        if (!prev || (ere && prev.anchor)) throw new RegcompError(REG.BADRPT)
        const isGroup = !prev.quantified && prev.groups.length > 0
        const base = prev.quantified || prev.anchor ? `(?:${prev.source})` : prev.source
        prev.source = `${base}${quant}`
        prev.quantified = true
        prev.literal = undefined
        // A repeated group reports its last iteration (JS and POSIX agree); groups
        // nested inside a repeated group may not.
        for (const g of isGroup ? prev.groups.slice(1) : prev.groups) repeatedGroups.add(g)
        continue
      }
      pieces.push(parseAtom(depth, pieces.length === 0))
    }
    let lit: string | undefined = ''
    for (const p of pieces) {
      if (p.literal === undefined) {
        lit = undefined
        break
      }
      lit += p.literal
    }
    return {source: pieces.map((p) => p.source).join(''), literal: lit}
  }

  const parseAtom = (depth: number, atBranchStart: boolean): Piece => {
    const c = ch() as string
    const plain = (source: string, lit?: string): Piece => ({source, literal: lit, quantified: false, anchor: false, groups: []})
    const assertion = (source: string): Piece => ({source, quantified: false, anchor: true, groups: []})
    const openGroup = ere ? c === '(' : c === '\\' && ch(pos + 1) === '('
    if (openGroup) {
      pos += ere ? 1 : 2
      const group = ++nsub
      const before = nsub
      const inner = parseAlternation(depth + 1)
      const closes = ere ? ch() === ')' : ch() === '\\' && ch(pos + 1) === ')'
      if (!closes) throw new RegcompError(REG.EPAREN)
      pos += ere ? 1 : 2
      closed.add(group)
      const groups = [group]
      for (let g = before + 1; g <= nsub; g++) groups.push(g)
      return {source: `(${inner.source})`, quantified: false, anchor: false, groups}
    }
    if (c === '[') {
      pos++
      return plain(parseBracket())
    }
    if (c === '.') {
      pos++
      return plain(newline ? '[^\\n]' : '[^]')
    }
    if (c === '^') {
      pos++
      if (ere || atBranchStart) return assertion(lineStart)
      return plain(hex(0x5e), '^')
    }
    if (c === '$') {
      pos++
      const atEnd = pos >= pattern.length || (ch() === '\\' && (ch(pos + 1) === ')' || ch(pos + 1) === '|'))
      if (ere || atEnd) return assertion(lineEnd)
      return plain(hex(0x24), '$')
    }
    if (c === '\\') {
      if (pos + 1 >= pattern.length) throw new RegcompError(REG.EESCAPE)
      const e = pattern[pos + 1]
      pos += 2
      if (e >= '1' && e <= '9') {
        const n = Number(e)
        if (!closed.has(n)) throw new RegcompError(REG.ESUBREG)
        backref = true
        return plain(`\\${n}`)
      }
      switch (e) {
        case 'w': return plain('[A-Za-z0-9_]')
        case 'W': return plain('[^A-Za-z0-9_]')
        case 's': return plain('[\\t\\n\\v\\f\\r ]')
        case 'S': return plain('[^\\t\\n\\v\\f\\r ]')
        case 'b': return assertion('\\b')
        case 'B': return assertion('\\B')
        case '<': return assertion('\\b(?=[A-Za-z0-9_])')
        case '>': return assertion('\\b(?<=[A-Za-z0-9_])')
        case '`': return assertion('(?<![^])')
        case "'": return assertion('(?![^])')
      }
      return plain(literal(e.charCodeAt(0), icase), icase ? lowercaseAscii(e) : e)
    }
    if (ere && (c === '*' || c === '+' || c === '?' || c === '{')) throw new RegcompError(REG.BADRPT)
    pos++
    return plain(literal(c.charCodeAt(0), icase), icase ? lowercaseAscii(c) : c)
  }

  const top = parseAlternation(0)
  if (pos < pattern.length) {
    // Only an unmatched close can stop the top level.
    throw new RegcompError(REG.ERPAREN)
  }
  const source = top.source
  return {source, nsub, backref, repeatedGroups, ambiguity: ambiguities[0]}
}

// ---------------------------------------------------------------------------- the table

interface CompiledPattern {
  regex: RegExp
  source: string
  match: boolean
}

interface RegexpMatchRule {
  op: 'match'
  lineno: number
  first: CompiledPattern
  second?: CompiledPattern
  parts: ReplacementPart[]
  maxSub: number
  literal?: string
  forced: Map<number, RegExp>
}

type RegexpRule = ExpressionRule<RegexpMatchRule, CompiledPattern>

export class RegexpTable extends PatternTable {
  readonly type = 'regexp'

  constructor(name: string, private readonly rules: RegexpRule[], dictFlags: number) {
    super(name, dictFlags)
  }

  lookup(key: string): string | undefined {
    if (this.flags & DICT_FLAG.FOLD_MUL) key = lowercaseAscii(key)
    return searchRules(this.rules, (rule) => {
      if (rule.first.regex.test(key) !== rule.first.match) return undefined
      if (rule.second && rule.second.regex.test(key) !== rule.second.match) return undefined
      return rule.literal ?? expand(rule, key)
    }, (rule) => rule.pattern.regex.test(key) === rule.pattern.match)
  }
}

/** The POSIX (leftmost-longest) match of a substituting rule, and its expansion. */
function expand(rule: RegexpMatchRule, key: string): string {
  const first = rule.first.regex.exec(key) as RegExpExecArray
  const start = first.index
  let groups: RegExpExecArray = first
  const shortest = start + first[0].length
  for (let end = key.length; end > shortest; end--) {
    const tail = key.length - end
    let forced = rule.forced.get(tail)
    if (!forced) {
      forced = new RegExp(`(?:${rule.first.source})(?=[^]{${tail}}(?![^]))`, 'y')
      if (rule.forced.size < 256) rule.forced.set(tail, forced)
    }
    forced.lastIndex = start
    const m = forced.exec(key)
    if (m) {
      groups = m
      break
    }
  }
  let out = ''
  for (const part of rule.parts) {
    if (typeof part === 'string') out += part
    else {
      const text = groups[part]
      if (text) out += text
    }
  }
  return out
}

interface RawPattern {
  text: string
  match: boolean
  options: PosixOptions
}

/** Postfix dict_regexp_get_pat(): [!...]<delim>pattern<delim>[flags]. */
function getPattern(line: string, from: number, where: string, warn: (m: string) => void): {pattern: RawPattern; pos: number} | undefined {
  const scanned = scanDelimitedPattern(line, from, where, warn, {finalBackslashCloses: true, unclosedVerb: 'skipping'})
  if (!scanned) return undefined
  const {match, text} = scanned
  let pos = scanned.pos
  const options: PosixOptions = {extended: true, icase: true, newline: false}
  while (pos < line.length && !isSpaceChar(line[pos]) && line[pos] !== '!') {
    const flag = line[pos]
    if (flag === 'i') options.icase = !options.icase
    else if (flag === 'm') options.newline = !options.newline
    else if (flag === 'x') options.extended = !options.extended
    else {
      warn(`${where}: unknown regexp option "${flag}": skipping this rule`)
      return undefined
    }
    pos++
  }
  return {pattern: {text, match, options}, pos}
}

function compile(raw: RawPattern, where: string, warn: (m: string) => void):
  {compiled: CompiledPattern; translation: Translation} | undefined {
  let translation: Translation
  try {
    translation = translatePosix(raw.text, raw.options)
  } catch (err) {
    if (!(err instanceof RegcompError)) throw err
    warn(`${where}: ${err.message}`)
    return undefined
  }
  if (translation.backref)
    throw new TableError('config', `${where}: back-references in regular expressions are not supported by this implementation`)
  return {compiled: {regex: new RegExp(translation.source), source: translation.source, match: raw.match}, translation}
}

/** A pattern rule line: pattern(s), then the replacement text. */
async function parseMatchRule(line: string, where: string, dictFlags: number, warn: (m: string) => void):
  Promise<RegexpMatchRule | undefined> {
  const first = getPattern(line, 0, where, warn)
  if (!first) return undefined
  let pos = first.pos
  let second: RawPattern | undefined
  if (line[pos] === '!') {
    const got = getPattern(line, pos, where, warn)
    if (!got) return undefined
    second = got.pattern
    pos = got.pos
  }
  const replacement = await parseRuleReplacement(line, pos, where, dictFlags, first.pattern.match, warn)
  if (!replacement) return undefined
  const {parts, maxSub} = replacement
  const one = compile(first.pattern, where, warn)
  if (!one) return undefined
  if (maxSub > one.translation.nsub) {
    warn(`${where}: out of range replacement index "${maxSub}": skipping this rule`)
    return undefined
  }
  let two: CompiledPattern | undefined
  if (second) {
    const compiled = compile(second, where, warn)
    if (!compiled) return undefined
    two = compiled.compiled
  }
  if (maxSub > 0) {
    const t = one.translation
    const repeated = [...t.repeatedGroups].find((g) => g <= maxSub)
    const why = t.ambiguity ?? (repeated !== undefined ? `substituted group ${repeated} inside a repeated group` : undefined)
    if (why !== undefined)
      throw new TableError('config', `${where}: cannot reproduce POSIX submatch semantics for $number substitution (${why})`)
  }
  const literal = maxSub === 0 ? parts.join('') : undefined
  return {op: 'match', lineno: 0, first: one.compiled, second: two, parts, maxSub, literal, forced: new Map()}
}

/** Load rules from regexp_table(5) text; throws TableError for refused patterns. */
export async function loadRegexpRules(name: string, content: string, dictFlags: number, log: TableLog): Promise<RegexpRule[]> {
  return loadExpressionRules('regexp', name, content, dictFlags, log, {getPattern, compile, parseMatch: parseMatchRule})
}

/**
 * Open as dict_regexp_open() does: O_RDONLY only; the file (or inline `{ {rule} ... }`
 * list) is read and compiled once; bad rules are skipped with Postfix's warnings.
 */
export const regexpType: TableType = expressionTableType('regexp', loadRegexpRules, (name, rules, dictFlags) => new RegexpTable(name, rules, dictFlags))
