// regexp:/path — POSIX regular expression tables (Postfix dict_regexp.c; format:
// regexp_table(5)). As Postfix, each pattern is compiled with the C library's regcomp() in
// the C locale (REG_EXTENDED|REG_ICASE by default; the i, m and x flags toggle REG_ICASE,
// REG_NEWLINE and REG_EXTENDED; REG_NOSUB where no $number needs the groups) and the key
// is matched by regexec() as bytes, through the native addon (native/patterns.cc), which
// answers "no match" without regexec() for a key that lacks a text every match contains
// (regexp-literal.ts).

import {isSpaceChar} from '../util/chars.js'
import {requiredTexts} from './regexp-literal.js'
import {TableType} from './table.js'
import {
  expressionTableType, type ExpressionMatchRule, type ExpressionSyntax, parseRuleReplacement, PATTERN_ENGINE,
  patternEngines, type PatternText, scanDelimitedPattern,
} from './pattern-rules.js'

// Shared with pcre and cidr; still exported from here, where they were first defined.
export {parseReplacement, readPatternSource, type ReplacementPart} from './pattern-rules.js'

/** Postfix dict_regexp_get_pat(): [!...]<delim>pattern<delim>[flags]. */
function getPattern(line: string, from: number, where: string, warn: (m: string) => void): {pattern: PatternText; pos: number} | undefined {
  const scanned = scanDelimitedPattern(line, from, where, warn, {finalBackslashCloses: true, unclosedVerb: 'skipping'})
  if (!scanned) return undefined
  const {REG_EXTENDED, REG_ICASE, REG_NEWLINE} = patternEngines().patternConstants
  let pos = scanned.pos
  let flags = REG_EXTENDED | REG_ICASE
  while (pos < line.length && !isSpaceChar(line[pos]) && line[pos] !== '!') {
    const flag = line[pos]
    if (flag === 'i') flags ^= REG_ICASE
    else if (flag === 'm') flags ^= REG_NEWLINE
    else if (flag === 'x') flags ^= REG_EXTENDED
    else {
      warn(`${where}: unknown regexp option "${flag}": skipping this rule`)
      return undefined
    }
    pos++
  }
  return {pattern: {text: scanned.text, match: scanned.match, flags}, pos}
}

/** Postfix dict_regexp_parseline() for a pattern rule: pattern(s), then the replacement text. */
const parseMatch: ExpressionSyntax['parseMatch'] = async (line, where, dictFlags, warn, compile) => {
  const first = getPattern(line, 0, where, warn)
  if (!first) return undefined
  let pos = first.pos
  let second: PatternText | undefined
  if (line[pos] === '!') {
    const got = getPattern(line, pos, where, warn)
    if (!got) return undefined
    second = got.pattern
    pos = got.pos
  }
  const replacement = await parseRuleReplacement(line, pos, where, dictFlags, first.pattern.match, warn)
  if (!replacement) return undefined
  const {parts, maxSub} = replacement
  // Postfix asks for no submatches where the replacement uses none (and never of the second).
  const {REG_NOSUB} = patternEngines().patternConstants
  const one = compile(maxSub === 0 ? {...first.pattern, flags: first.pattern.flags | REG_NOSUB} : first.pattern, where)
  if (!one) return undefined
  if (maxSub > one.groups) {
    warn(`${where}: out of range replacement index "${maxSub}": skipping this rule`)
    return undefined
  }
  const two = second ? compile({...second, flags: second.flags | REG_NOSUB}, where) : undefined
  if (second && !two) return undefined
  const rule: ExpressionMatchRule = {op: 'match', lineno: 0, first: one, second: two, parts, maxSub}
  if (maxSub === 0) rule.literal = parts.join('')
  return rule
}

/**
 * Open as dict_regexp_open() does: O_RDONLY only; the file (or inline `{ {rule} ... }`
 * list) is read and compiled once; bad rules are skipped with Postfix's warnings.
 */
export const regexpType: TableType = expressionTableType({
  type: 'regexp',
  engine: PATTERN_ENGINE.posix,
  getPattern,
  compileError: (where, {error}) => `${where}: ${error}`,
  parseMatch,
  requiredTexts: (pattern) => requiredTexts(pattern.text, (pattern.flags & patternEngines().patternConstants.REG_EXTENDED) !== 0),
})
