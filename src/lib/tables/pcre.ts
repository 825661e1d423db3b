// pcre:/path — PCRE tables (Postfix dict_pcre.c built with PCRE2; format: pcre_table(5)).
// As Postfix, each pattern is compiled by libpcre2-8's pcre2_compile() (8-bit, no UTF,
// default compile context) with CASELESS|DOTALL by default, the flags after the closing
// delimiter toggling i m s x A E U (X is ignored with a warning), and matched by
// pcre2_match() with PCRE2's default match, depth and heap limits; a match error is
// Postfix's warning and counts as no match. Through the native addon (native/patterns.cc),
// which matches with PCRE2's JIT where that provably gives the interpreter's answer
// (pcre-work.ts).

import {isSpaceChar} from '../util/chars.js'
import {jitKeyLimit} from './pcre-work.js'
import {TableType} from './table.js'
import {
  expressionTableType, type ExpressionMatchRule, type ExpressionSyntax, parseRuleReplacement, PATTERN_ENGINE,
  patternEngines, type PatternText, scanDelimitedPattern,
} from './pattern-rules.js'

/** Postfix dict_pcre_get_pattern(): [!...]<delim>pattern<delim>[flags]. */
function getPattern(line: string, from: number, where: string, warn: (m: string) => void): {pattern: PatternText; pos: number} | undefined {
  const scanned = scanDelimitedPattern(line, from, where, warn, {finalBackslashCloses: false, unclosedVerb: 'ignoring'})
  if (!scanned) return undefined
  const c = patternEngines().patternConstants
  const toggles: Record<string, number> = {
    i: c.PCRE2_CASELESS, m: c.PCRE2_MULTILINE, s: c.PCRE2_DOTALL, x: c.PCRE2_EXTENDED,
    A: c.PCRE2_ANCHORED, E: c.PCRE2_DOLLAR_ENDONLY, U: c.PCRE2_UNGREEDY,
  }
  let pos = scanned.pos
  // PCRE2_ANCHORED is bit 31: keep the flags an unsigned 32-bit number.
  let flags = c.PCRE2_CASELESS | c.PCRE2_DOTALL
  while (pos < line.length && !isSpaceChar(line[pos])) {
    const flag = line[pos]
    if (flag in toggles) flags = (flags ^ toggles[flag]) >>> 0
    else if (flag === 'X') warn(`${where}: ignoring obsolete regexp option "X"`)
    else {
      warn(`${where}: unknown regexp option "${flag}": skipping this rule`)
      return undefined
    }
    pos++
  }
  return {pattern: {text: scanned.text, match: scanned.match, flags}, pos}
}

/** Postfix dict_pcre_parse_rule() for a pattern rule: the pattern, then the replacement text. */
const parseMatch: ExpressionSyntax['parseMatch'] = async (line, where, dictFlags, warn, compile) => {
  const got = getPattern(line, 0, where, warn)
  if (!got) return undefined
  // dict_regexp words one prescan message differently; the logic is the same.
  const prescanWarn = (m: string): void => warn(m.replace(': out-of-range replacement index "', ': out of range replacement index "'))
  const replacement = await parseRuleReplacement(line, got.pos, where, dictFlags, got.pattern.match, warn, prescanWarn)
  if (!replacement) return undefined
  const {parts, maxSub} = replacement
  const one = compile(got.pattern, where)
  if (!one) return undefined
  if (maxSub > one.groups) {
    warn(`${where}: out of range replacement index "${maxSub}": skipping this rule`)
    return undefined
  }
  const rule: ExpressionMatchRule = {op: 'match', lineno: 0, first: one, parts, maxSub}
  if (maxSub === 0) rule.literal = parts.join('')
  return rule
}

/**
 * Open as dict_pcre_open() does: O_RDONLY only; the file (or inline `{ {rule} ... }` list)
 * is read and compiled once; bad rules are skipped with Postfix's warnings.
 */
export const pcreType: TableType = expressionTableType({
  type: 'pcre',
  engine: PATTERN_ENGINE.pcre,
  getPattern,
  compileError: (where, {error, offset}) => `${where}: error in regex at offset ${offset}: ${error}`,
  parseMatch,
  jitKeyLimit: (pattern) => jitKeyLimit(pattern.text, (pattern.flags & patternEngines().patternConstants.PCRE2_EXTENDED) !== 0),
})
