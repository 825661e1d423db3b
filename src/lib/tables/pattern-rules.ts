// The rule-file machinery that Postfix's pattern tables (regexp, pcre, cidr) share: where
// the rules come from, the IF/ENDIF statements, the replacement text with its $number
// references, the search that skips a failed IF's block, and the read-only open. Postfix
// repeats this code in dict_regexp.c, dict_pcre.c and dict_cidr.c; it is kept in one place
// here so that the three types cannot drift apart where Postfix behaves alike.

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {isSpaceChar, trimSpace} from '../util/chars.js'
import {CHARS_COMMA_SP, extractBraced, splitOutsideBraces} from '../util/postfix-strings.js'
import {cString, FileStamp, fileChanged, filesToBase64, logicalLines, readBinaryFile, stampOf, strerror} from './source-file.js'
import {OpenOptions, Table, TableError, TableLog, TableType} from './table.js'

type Warn = (message: string) => void

// ---------------------------------------------------------------------------- sources

/**
 * Postfix dict_stream_open(): the text of a pattern table, read from a file or, for a
 * name that starts with `{`, the rules of an inline `{ {rule}, {rule} }` list, one per
 * line. Errors are TableErrors with Postfix's reasons.
 */
export async function readPatternSource(type: string, name: string): Promise<{content: string; stamp?: FileStamp}> {
  if (name[0] === '{') {
    const outer = extractBraced(name)
    if (outer.error !== undefined) throw new TableError('config', `${type} map: ${outer.error}`)
    let content = ''
    for (const token of splitOutsideBraces(name.slice(1, -1), CHARS_COMMA_SP)) {
      const inner = extractBraced(token)
      if (inner.error !== undefined) throw new TableError('config', `${type} map: ${inner.error}`)
      content += `${inner.text}\n`
    }
    return {content}
  }
  const file = await readBinaryFile(name)
  if ('failed' in file) {
    if (file.failed === 'open') throw new TableError('retry', `open ${name}: ${strerror(file.error)}`)
    throw new TableError('retry', `read ${name}: ${strerror(file.error)}`)
  }
  return {content: file.content, stamp: stampOf(file.stat)}
}

// ---------------------------------------------------------------------------- statements

const isAlnum = (ch: string | undefined): boolean => ch !== undefined && /^[A-Za-z0-9]$/.test(ch)

/** A line that starts with a letter or digit is a statement, not a pattern. */
const startsStatement = (line: string): boolean => isAlnum(line[0])

/** `if` as a whole word at the start of the line (case-insensitive, as Postfix). */
export const isIfStatement = (line: string): boolean => /^if/i.test(line) && !isAlnum(line[2])

/** `endif` as a whole word at the start of the line (case-insensitive, as Postfix). */
export const isEndifStatement = (line: string): boolean => /^endif/i.test(line) && !isAlnum(line[5])

/** The `!` negations (with blanks between) before a pattern: each one flips the match. */
export function skipNegations(line: string, pos: number): {match: boolean; pos: number} {
  let match = true
  for (; pos < line.length; pos++) {
    if (line[pos] === '!') match = !match
    else if (!isSpaceChar(line[pos])) break
  }
  return {match, pos}
}

/**
 * Postfix's two pattern scanners differ in small ways that show in their results: what a
 * backslash that ends the line does, and one word of a warning.
 */
export interface DelimiterQuirks {
  /**
   * dict_regexp.c stops on a final backslash, so it closes a pattern that backslashes
   * delimit; dict_pcre.c steps past it and the pattern is unclosed.
   */
  finalBackslashCloses: boolean
  /** What the "no closing regexp delimiter" warning says is done with the rule. */
  unclosedVerb: 'skipping' | 'ignoring'
}

/**
 * `[!...]<delim>text<delim>` from `from`: the negations, the text between the delimiters
 * (a backslash escapes the next character) and the position after the closing delimiter,
 * where the flags start. undefined: skipped, it has warned.
 */
export function scanDelimitedPattern(line: string, from: number, where: string, warn: Warn, quirks: DelimiterQuirks):
  {match: boolean; text: string; pos: number} | undefined {
  const negations = skipNegations(line, from)
  let pos = negations.pos
  if (pos >= line.length) {
    warn(`${where}: no regexp: skipping this rule`)
    return undefined
  }
  const delim = line[pos++]
  const start = pos
  while (pos < line.length) {
    if (line[pos] === '\\') {
      if (pos + 1 < line.length) pos++
      else {
        if (!quirks.finalBackslashCloses) pos++
        break
      }
    } else if (line[pos] === delim) {
      break
    }
    pos++
  }
  if (pos >= line.length || line[pos] !== delim) {
    warn(`${where}: no closing regexp delimiter "${delim}": ${quirks.unclosedVerb} this rule`)
    return undefined
  }
  return {match: negations.match, text: line.slice(start, pos), pos: pos + 1}
}

/** regexp and pcre accept text after an IF pattern, but warn as Postfix does. */
function warnTextAfterIf(line: string, pos: number, where: string, warn: Warn): void {
  const rest = line.slice(pos).replace(/^[\t\n\v\f\r ]+/, '')
  if (rest.length > 0) {
    warn(`${where}: ignoring extra text after IF statement: "${rest}"`)
    warn(`${where}: do not prepend whitespace to statements between IF and ENDIF`)
  }
}

/** An ENDIF line of a regexp or pcre table (cidr words its errors differently). */
function parseEndif(line: string, where: string, nesting: number, warn: Warn): {op: 'endif'; lineno: number} | undefined {
  if (nesting === 0) {
    warn(`${where}: ignoring ENDIF without matching IF`)
    return undefined
  }
  if (trimSpace(line.slice(5)).length > 0) warn(`${where}: ignoring extra text after ENDIF`)
  return {op: 'endif', lineno: 0}
}

// ---------------------------------------------------------------------------- replacement

export type ReplacementPart = string | number

/**
 * Postfix mac_parse() + dict_regexp_prescan(): split the replacement into literal text
 * ($$ already replaced by $) and $n / ${n} / $(n) references. Warnings are Postfix's.
 */
export function parseReplacement(value: string, warn: Warn, where: string):
  {parts: ReplacementPart[]; maxSub: number} | undefined {
  const parts: ReplacementPart[] = []
  let maxSub = 0
  let error = false
  let buf = ''
  let i = 0
  while (i < value.length) {
    if (value[i] !== '$') {
      buf += value[i++]
      continue
    }
    if (value[i + 1] === '$') {
      buf += '$'
      i += 2
      continue
    }
    if (buf.length > 0) parts.push(buf)
    buf = ''
    i++
    const open = value[i]
    if (open === '(' || open === '{') {
      const close = open === '(' ? ')' : '}'
      let level = 1
      let j = i + 1
      for (; level > 0; j++) {
        if (j >= value.length) break
        if (value[j] === open) level++
        if (value[j] === close) level--
      }
      if (level > 0) {
        warn(`truncated macro reference: "${value}"`)
        error = true
        break
      }
      buf = value.slice(i + 1, j - 1)
      i = j
    } else {
      let j = i
      while (j < value.length && /^[A-Za-z0-9_]$/.test(value[j])) j++
      buf = value.slice(i, j)
      i = j
    }
    if (buf.length === 0) {
      warn(`empty macro name: "${value}"`)
      error = true
      break
    }
    if (!/^[0-9]+$/.test(buf)) {
      warn(`${where}: non-numeric replacement index "${buf}"`)
      error = true
    } else {
      const n = Number(buf)
      if (n < 1) {
        warn(`${where}: out-of-range replacement index "${buf}"`)
        error = true
      } else {
        maxSub = Math.max(maxSub, Math.min(n, 0x7fffffff))
        parts.push(n)
      }
    }
    buf = ''
  }
  if (error) return undefined
  if (buf.length > 0) parts.push(buf)
  return {parts, maxSub}
}

/**
 * The replacement text of a regexp or pcre rule, from `pos` (after its pattern) to the end
 * of the line, checked as Postfix checks it before compiling the pattern: RHS files
 * (src_rhs_is_file) are read, $number is refused in a negative match and under
 * NO_REGSUB. `prescanWarn` lets pcre word one prescan message as dict_pcre.c does.
 */
export async function parseRuleReplacement(
  line: string, pos: number, where: string, dictFlags: number, match: boolean, warn: Warn, prescanWarn: Warn = warn,
): Promise<{parts: ReplacementPart[]; maxSub: number} | undefined> {
  while (pos < line.length && isSpaceChar(line[pos])) pos++
  let value = line.slice(pos)
  if (value.length === 0) warn(`${where}: no replacement text: using empty string`)
  if (dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
    const encoded = await filesToBase64(value)
    if ('error' in encoded) {
      warn(`${where}: ${encoded.error}: skipping this rule`)
      return undefined
    }
    value = encoded.value
  }
  const replacement = parseReplacement(value, prescanWarn, where)
  if (!replacement) {
    warn(`${where}: bad replacement syntax: skipping this rule`)
    return undefined
  }
  if (replacement.maxSub > 0 && !match) {
    warn(`${where}: $number found in negative match replacement text: skipping this rule`)
    return undefined
  }
  if (replacement.maxSub > 0 && (dictFlags & DICT_FLAG.NO_REGSUB)) {
    warn(`${where}: regular expression substitution is not allowed: skipping this rule`)
    return undefined
  }
  return replacement
}

// ---------------------------------------------------------------------------- rule lists

/** What the shared loader and search need of a rule; an IF also records its ENDIF. */
export type PatternRule =
  | {op: 'match'; lineno: number}
  | {op: 'if'; lineno: number; end?: number}
  | {op: 'endif'; lineno: number}

/**
 * Read the logical lines of a rule file, parse each with `parseLine` (undefined: skipped,
 * it has warned) and link every IF to the index of its ENDIF, so that a failed IF can jump
 * over its block. An IF left open keeps end -1 and is warned about, as Postfix does.
 */
export async function loadRules<R extends PatternRule>(
  type: string, name: string, content: string, warn: Warn,
  parseLine: (text: string, lineno: number, nesting: number) => Promise<R | undefined>,
): Promise<R[]> {
  const rules: R[] = []
  const stack: number[] = []
  for (const {text, lineno} of logicalLines(content, name, warn)) {
    const rule = await parseLine(text, lineno, stack.length)
    if (!rule) continue
    rule.lineno = lineno
    if (rule.op === 'if') stack.push(rules.length)
    else if (rule.op === 'endif') (rules[stack.pop() as number] as {end?: number}).end = rules.length
    rules.push(rule)
  }
  while (stack.length > 0) {
    const rule = rules[stack.pop() as number]
    warn(`${type} map ${name}, line ${rule.lineno}: IF has no matching ENDIF`)
  }
  return rules
}

/**
 * The rules of one kind (`op`) of a rule type. cidr keeps every kind in one interface
 * (op is not a discriminant there), so its callbacks get that interface as it is.
 */
type RuleOf<R, Op> = [Extract<R, {op: Op}>] extends [never] ? R : Extract<R, {op: Op}>

/**
 * Postfix's first-match search: the result of the first match rule that `matchResult`
 * answers for; an IF that `ifHolds` rejects skips to its ENDIF, and an IF without ENDIF
 * then ends the search.
 */
export function searchRules<R extends PatternRule>(
  rules: readonly R[],
  matchResult: (rule: RuleOf<R, 'match'>) => string | undefined,
  ifHolds: (rule: RuleOf<R, 'if'>) => boolean,
): string | undefined {
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]
    if (rule.op === 'match') {
      const result = matchResult(rule as RuleOf<R, 'match'>)
      if (result !== undefined) return result
    } else if (rule.op === 'if') {
      if (ifHolds(rule as RuleOf<R, 'if'>)) continue
      const end = (rule as {end?: number}).end
      if (end === undefined || end < 0) return undefined
      i = end
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------- regexp and pcre

/**
 * What differs between the rule files of regexp and pcre tables: the pattern syntax
 * (`[!]/pattern/flags`, parsed and compiled each its own way) and the match rule. IF,
 * ENDIF and everything else about a line are parsed alike (dict_regexp.c, dict_pcre.c).
 */
export interface ExpressionSyntax<Match extends {op: 'match'; lineno: number}, Raw, Compiled> {
  /** A pattern starting at `pos` (negations included), and where it ends. */
  getPattern(line: string, pos: number, where: string, warn: Warn): {pattern: Raw; pos: number} | undefined
  /** Compile a pattern (here: an IF condition); undefined: skipped, it has warned. */
  compile(pattern: Raw, where: string, warn: Warn): {compiled: Compiled} | undefined
  /** A line that is a pattern rule (not a statement). */
  parseMatch(line: string, where: string, dictFlags: number, warn: Warn): Promise<Match | undefined>
}

export type ExpressionRule<Match, Compiled> =
  | Match
  | {op: 'if'; lineno: number; pattern: Compiled; end: number}
  | {op: 'endif'; lineno: number}

/** Load the rules of a regexp or pcre table; bad lines are skipped with Postfix's warnings. */
export async function loadExpressionRules<Match extends {op: 'match'; lineno: number}, Raw, Compiled>(
  type: string, name: string, content: string, dictFlags: number, log: TableLog, syntax: ExpressionSyntax<Match, Raw, Compiled>,
): Promise<ExpressionRule<Match, Compiled>[]> {
  const warn = (message: string): void => log.warning(message)
  return loadRules(type, name, content, warn, async (text, lineno, nesting) => {
    const line = trimSpace(cString(text))
    if (line.length === 0) return undefined
    return parseExpressionLine(line, `${type} map ${name}, line ${lineno}`, nesting, dictFlags | DICT_FLAG.PATTERN, warn, syntax)
  })
}

async function parseExpressionLine<Match extends {op: 'match'; lineno: number}, Raw, Compiled>(
  line: string, where: string, nesting: number, dictFlags: number, warn: Warn, syntax: ExpressionSyntax<Match, Raw, Compiled>,
): Promise<ExpressionRule<Match, Compiled> | undefined> {
  if (!startsStatement(line)) return syntax.parseMatch(line, where, dictFlags, warn)
  if (isIfStatement(line)) {
    let pos = 2
    while (pos < line.length && isSpaceChar(line[pos])) pos++
    const got = syntax.getPattern(line, pos, where, warn)
    if (!got) return undefined
    warnTextAfterIf(line, got.pos, where, warn)
    const condition = syntax.compile(got.pattern, where, warn)
    if (!condition) return undefined
    return {op: 'if', lineno: 0, pattern: condition.compiled, end: -1}
  }
  if (isEndifStatement(line)) return parseEndif(line, where, nesting, warn)
  warn(`${where}: ignoring unrecognized request`)
  return undefined
}

// ---------------------------------------------------------------------------- the table

/** What regexp, pcre and cidr tables have in common: read-only, PATTERN, file-stamped. */
export abstract class PatternTable implements Table {
  abstract readonly type: string
  flags: number
  stamp?: FileStamp

  constructor(readonly name: string, dictFlags: number) {
    this.flags = dictFlags | DICT_FLAG.PATTERN
  }

  abstract lookup(key: string): string | undefined

  changed(): boolean {
    return this.stamp !== undefined && fileChanged(this.name, this.stamp)
  }
}

/**
 * Open as dict_regexp_open(), dict_pcre_open() and dict_cidr_open() do: O_RDONLY only;
 * the file (or inline `{ {rule} ... }` list) is read once and handed to `build`; the
 * table remembers the file's stamp for changed(), and gets UTF-8 checks when enabled.
 */
export async function openPatternTable(
  type: string, name: string, options: OpenOptions, build: (content: string) => Promise<PatternTable>,
): Promise<Table> {
  if (options.mode !== 'read') throw new TableError('config', `${type}:${name} map requires O_RDONLY access mode`)
  const source = await readPatternSource(type, name)
  const table = await build(source.content)
  table.stamp = source.stamp
  return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
}

/**
 * The TableType of regexp or pcre: dict_regexp_open() and dict_pcre_open() differ only in
 * how they load their rules and in the table that serves them.
 */
export function expressionTableType<Rule>(
  type: string,
  load: (name: string, content: string, dictFlags: number, log: TableLog) => Promise<Rule[]>,
  makeTable: (name: string, rules: Rule[], dictFlags: number) => PatternTable,
): TableType {
  return {
    type,
    async open(name: string, options: OpenOptions): Promise<Table> {
      return openPatternTable(type, name, options, async (content) =>
        makeTable(name, await load(name, content, options.dictFlags, options.log), options.dictFlags))
    },
  }
}
