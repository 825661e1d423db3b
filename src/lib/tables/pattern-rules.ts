// The rule-file machinery that Postfix's pattern tables (regexp, pcre, cidr) share: where
// the rules come from, the IF/ENDIF statements, the replacement text with its $number
// references, the search that skips a failed IF's block, the read-only open, and the
// table that matches regexp and pcre rules in the native addon's engines. Postfix
// repeats this code in dict_regexp.c, dict_pcre.c and dict_cidr.c; it is kept in one place
// here so that the three types cannot drift apart where Postfix behaves alike.

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {loadNative, type NativePatternProgram, type NativeSearchResult, type PostfixNative} from '../native/index.js'
import {isSpaceChar, trimSpace} from '../util/chars.js'
import {CHARS_COMMA_SP, extractBraced, splitOutsideBraces} from '../util/postfix-strings.js'
import {cString, FileStamp, fileChanged, filesToBase64, logicalLines, readBinaryFile, stampOf, strerror} from './source-file.js'
import {MaybePromise, OpenOptions, Table, TableError, TableLog, TableType} from './table.js'

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

/** A pattern as written: its text, whether it is negated (`!`), and the engine's flags. */
export interface PatternText {
  text: string
  match: boolean
  flags: number
}

/** A pattern compiled into the table's native program. */
export interface CompiledPattern {
  index: number
  /** regcomp()'s re_nsub or PCRE2_INFO_CAPTURECOUNT. */
  groups: number
  match: boolean
}

/** Compile a pattern; undefined: the engine refused it and the rule is skipped (warned). */
export type CompilePattern = (pattern: PatternText, where: string) => CompiledPattern | undefined

export interface ExpressionMatchRule {
  op: 'match'
  lineno: number
  first: CompiledPattern
  /** regexp's `/first/!/second/` form. */
  second?: CompiledPattern
  parts: ReplacementPart[]
  maxSub: number
  /** The replacement when it has no $number. */
  literal?: string
}

export type ExpressionRule =
  | ExpressionMatchRule
  | {op: 'if'; lineno: number; pattern: CompiledPattern; end: number}
  | {op: 'endif'; lineno: number}

/**
 * What differs between the rule files of regexp and pcre tables: the engine, the pattern
 * syntax (`[!]/pattern/flags`), how a compile error is worded and the match rule. IF,
 * ENDIF and everything else about a line are parsed alike (dict_regexp.c, dict_pcre.c).
 */
export interface ExpressionSyntax {
  readonly type: 'regexp' | 'pcre'
  readonly engine: typeof ENGINE_POSIX | typeof ENGINE_PCRE
  /** A pattern starting at `pos` (negations included), and where it ends. */
  getPattern(line: string, pos: number, where: string, warn: Warn): {pattern: PatternText; pos: number} | undefined
  /** The warning for a pattern that the engine does not compile. */
  compileError(where: string, error: {error: string; offset?: number}): string
  /** The longest key that the engine's JIT may match for this pattern (-1 or absent: never). */
  jitKeyLimit?(pattern: PatternText): number
  /** Texts that every match of this pattern contains (none or absent: unknown). */
  requiredTexts?(pattern: PatternText): string[]
  /** A line that is a pattern rule (not a statement). */
  parseMatch(line: string, where: string, dictFlags: number, warn: Warn, compile: CompilePattern): Promise<ExpressionMatchRule | undefined>
}

const ENGINE_POSIX = 0
const ENGINE_PCRE = 1
export const PATTERN_ENGINE = {posix: ENGINE_POSIX, pcre: ENGINE_PCRE} as const

/** The native addon's pattern engines; a missing build makes the table unavailable. */
export function patternEngines(): PostfixNative {
  try {
    return loadNative()
  } catch (err) {
    throw new TableError('config', (err as Error).message)
  }
}

/** Load and compile the rules of a regexp or pcre table; bad lines are skipped with Postfix's warnings. */
export async function loadExpressionRules(name: string, content: string, dictFlags: number, log: TableLog, syntax: ExpressionSyntax):
  Promise<{rules: ExpressionRule[]; program: NativePatternProgram}> {
  const warn = (message: string): void => log.warning(message)
  const program = new (patternEngines().PatternProgram)(syntax.engine)
  const compile: CompilePattern = (pattern, where) => {
    const compiled = program.compile(pattern.text, pattern.flags, syntax.jitKeyLimit?.(pattern) ?? -1, (syntax.requiredTexts?.(pattern) ?? []).join('\0'))
    if ('error' in compiled) {
      warn(syntax.compileError(where, compiled))
      return undefined
    }
    return {index: compiled.index, groups: compiled.groups, match: pattern.match}
  }
  const rules = await loadRules(syntax.type, name, content, warn, async (text, lineno, nesting) => {
    const line = trimSpace(cString(text))
    if (line.length === 0) return undefined
    return parseExpressionLine(line, `${syntax.type} map ${name}, line ${lineno}`, nesting, dictFlags | DICT_FLAG.PATTERN, warn, syntax, compile)
  })
  return {rules, program}
}

async function parseExpressionLine(
  line: string, where: string, nesting: number, dictFlags: number, warn: Warn, syntax: ExpressionSyntax, compile: CompilePattern,
): Promise<ExpressionRule | undefined> {
  if (!startsStatement(line)) return syntax.parseMatch(line, where, dictFlags, warn, compile)
  if (isIfStatement(line)) {
    let pos = 2
    while (pos < line.length && isSpaceChar(line[pos])) pos++
    const got = syntax.getPattern(line, pos, where, warn)
    if (!got) return undefined
    warnTextAfterIf(line, got.pos, where, warn)
    const condition = compile(got.pattern, where)
    if (!condition) return undefined
    return {op: 'if', lineno: 0, pattern: condition, end: -1}
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

  abstract lookup(key: string): MaybePromise<string | undefined>

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

const RULE_FIELDS = 7
const RULE_KIND = {match: 0, if: 1, endif: 2} as const
/**
 * A table whose searches cost more than this on average is searched in the addon's
 * threads from the start unless the main thread is idle: the main thread stays free for
 * other clients, and several clients' lookups run on several CPUs at once, as they do in
 * Postfix's several proxymap processes.
 */
const IN_THREAD_ABOVE_NS = 50_000

/**
 * Whether a search of a table that is slow on average may run on the main thread: only
 * when lookups do not overlap, that is no search is under way in the addon's threads,
 * none ran on the main thread earlier in this turn of the event loop (other clients'
 * requests, read while it ran, wait for it there), and neither was the case for any lookup
 * in the last CONTENTION_MEMORY_MS. Then one client is answered without the two thread
 * switches of a search elsewhere, and several clients keep several CPUs busy (a search on
 * the main thread would hold back the answers of the others' searches meanwhile).
 */
let searchesInThreads = 0
let searchedThisTurn = false
let contendedAt = -Infinity
const CONTENTION_MEMORY_MS = 100

function mainThreadIsIdle(): boolean {
  const now = performance.now()
  if (searchesInThreads > 0 || searchedThisTurn) {
    contendedAt = now
    return false
  }
  return now - contendedAt > CONTENTION_MEMORY_MS
}

function noteMainThreadSearch(): void {
  if (searchedThisTurn) return
  searchedThisTurn = true
  setImmediate(() => {
    searchedThisTurn = false
  })
}

/**
 * A regexp or pcre table: its rules compiled into one native program, so that a lookup is
 * one call that returns the first matching rule and its groups. That call runs on the main
 * thread while it is quick; what would hold the thread longer (a pattern that backtracks a
 * lot, a POSIX back-reference, a long key) goes on in one of the addon's threads, so other
 * clients keep being served, and ends as Postfix's would, within PCRE2's default limits.
 */
export class ExpressionTable extends PatternTable {
  private readonly offsets: Int32Array
  private averageNs = 0

  constructor(readonly type: string, name: string, private readonly rules: ExpressionRule[],
    private readonly program: NativePatternProgram, dictFlags: number, private readonly log: TableLog) {
    super(name, dictFlags)
    const flat = new Int32Array(rules.length * RULE_FIELDS)
    let maxSub = 0
    rules.forEach((rule, i) => {
      const at = i * RULE_FIELDS
      flat[at] = RULE_KIND[rule.op]
      flat[at + 1] = rule.op === 'match' ? rule.first.index : rule.op === 'if' ? rule.pattern.index : -1
      flat[at + 2] = rule.op === 'match' ? Number(!rule.first.match) : rule.op === 'if' ? Number(!rule.pattern.match) : 0
      flat[at + 3] = rule.op === 'match' && rule.second ? rule.second.index : -1
      flat[at + 4] = rule.op === 'match' && rule.second ? Number(!rule.second.match) : 0
      flat[at + 5] = rule.op === 'match' ? rule.maxSub : 0
      flat[at + 6] = rule.op === 'if' ? rule.end : -1
      if (rule.op === 'match') maxSub = Math.max(maxSub, rule.maxSub)
    })
    this.offsets = new Int32Array(2 * (maxSub + 1))
    program.setRules(flat, this.offsets)
  }

  lookup(key: string): string | undefined | Promise<string | undefined> {
    if (this.flags & DICT_FLAG.FOLD_MUL) key = lowercaseAscii(key)
    if (this.averageNs > IN_THREAD_ABOVE_NS) {
      if (!mainThreadIsIdle()) return this.searchInThread(key, 0)
      noteMainThreadSearch()
    }
    const started = performance.now()
    const found = this.program.search(key, 0)
    this.account((performance.now() - started) * 1e6)
    if (typeof found === 'number') return found < 0 ? undefined : this.result(found, key, this.offsets)
    this.warnAll(found.warnings)
    this.failIfUnfinished(found)
    if (found.resume === undefined) return found.rule < 0 ? undefined : this.result(found.rule, key, this.offsets)
    return this.searchInThread(key, found.resume)
  }

  private searchInThread(key: string, from: number): Promise<string | undefined> {
    const pending = this.program.searchAsync(key, from)
    searchesInThreads++
    return pending.finally(() => {
      searchesInThreads--
    }).then((found) => {
      this.account(found.ns as number)
      this.warnAll(found.warnings)
      this.failIfUnfinished(found)
      return found.rule < 0 ? undefined : this.result(found.rule, key, found.offsets as Int32Array)
    })
  }

  /** A search the C library could not finish is no answer: RETRY, as a dead Postfix process gives. */
  private failIfUnfinished(found: NativeSearchResult): void {
    if (found.failed) throw new TableError('retry', `${this.type} map ${this.name}: the search could not be finished`)
  }

  /** A moving average of what a search costs, over about the last 16. */
  private account(ns: number): void {
    this.averageNs += (ns - this.averageNs) / 16
  }

  private warnAll(warnings: [number, string][]): void {
    for (const [rule, message] of warnings) this.log.warning(`${this.type} map ${this.name}, line ${this.rules[rule].lineno}: ${message}`)
  }

  /**
   * The replacement of the matching rule, $n expanded as Postfix does: an unset or empty
   * group adds nothing, and so does one that ends before it starts (glibc's regexec() can
   * report such a group next to a back-reference; Postfix's vstring_strncat() then copies
   * a negative length, nothing).
   */
  private result(index: number, key: string, offsets: Int32Array): string {
    const rule = this.rules[index] as ExpressionMatchRule
    if (rule.literal !== undefined) return rule.literal
    let out = ''
    for (const part of rule.parts) {
      if (typeof part === 'string') {
        out += part
        continue
      }
      const start = offsets[2 * part]
      const end = offsets[2 * part + 1]
      if (start >= 0 && end > start) out += key.slice(start, end)
    }
    return out
  }
}

/** The TableType of regexp or pcre: dict_regexp_open() and dict_pcre_open(). */
export function expressionTableType(syntax: ExpressionSyntax): TableType {
  return {
    type: syntax.type,
    async open(name: string, options: OpenOptions): Promise<Table> {
      return openPatternTable(syntax.type, name, options, async (content) => {
        const {rules, program} = await loadExpressionRules(name, content, options.dictFlags, options.log, syntax)
        return new ExpressionTable(syntax.type, name, rules, program, options.dictFlags, options.log)
      })
    },
  }
}
