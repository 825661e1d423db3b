// $name expansion of main.cf values, with the syntax and limits of Postfix 3.7's mac_parse(3)
// and mac_expand(3): $name, ${name}, $(name), ${name?text}, ${name:text}, ${name?{text}},
// ${name:{text}}, ${name?{t1}:{t2}}, relational ${{a} == {b} ? {t1} : {t2}} with the operators
// == != < <= >= > and the "level" suffix (compatibility levels, as in ${{$compatibility_level}
// <level {2} ? ...}). Error texts are Postfix's warning texts, so that a user can search for them.

import { ConfigError } from './errors.js'

/** The answer of a parameter lookup: its value, or undefined when the parameter is not defined. */
export type ParameterLookup = (name: string) => string | undefined

/** Thrown when a value cannot be expanded; `postfixMessage` is the warning Postfix logs for it. */
export class MacroExpansionError extends ConfigError {
  constructor(
    readonly postfixMessage: string,
    message = postfixMessage,
  ) {
    super(message)
    this.name = 'MacroExpansionError'
  }
}

// Postfix allows a macro to be expanded inside at most this many enclosing expansions
// (mac_expand_callback: "if (mc->level++ > 100)").
const MAX_NESTING_LEVEL = 100

// A relational operand is expanded with a fresh nesting counter in Postfix, so a value such as
// "a = ${{$a} == {x}}" recurses until postconf crashes (SIGSEGV, seen with 3.7.11). We stop
// well before the JavaScript stack does and report it like the ordinary nesting error.
const MAX_RELATIONAL_DEPTH = 20

// Postfix's CHARS_SPACE: the whitespace that mac_expand skips around names and {operands}.
const EXPANSION_WHITESPACE = ' \t\r\n'
const OPERATOR_CHARACTERS = '<>!=?+-*/~&|%'
const RELATIONAL_OPERATORS = ['==', '!=', '<', '<=', '>=', '>'] as const
type RelationalOperator = (typeof RELATIONAL_OPERATORS)[number]
// Postfix builds this list with unbalanced quotes (MAC_EXP_OP_STR_ANY); keep its exact text.
const OPERATOR_EXPECTED = '"==" or "!="" or "<"" or "<="" or ">="" or ">"'
// The only operator suffix that Postfix 3.7 registers (compat_level_relop_register()).
const COMPATIBILITY_LEVEL_SUFFIX = 'level'

const TRUE_VALUE = 'true'
const FALSE_VALUE = ''

/** Expands all $name references in `text`, recursively, as Postfix's mac_expand(MAC_EXP_FLAG_RECURSE). */
export function expandMacros(text: string, lookup: ParameterLookup): string {
  try {
    return new Expansion(lookup, 0).run(text)
  } catch (error) {
    // Only reachable with relational operands nested inside deep chains of references.
    if (error instanceof RangeError) {
      throw new MacroExpansionError(`unreasonable macro call nesting: "${text.slice(0, 60)}"`)
    }
    throw error
  }
}

class Expansion {
  private readonly result: string[] = []
  private level = 0

  constructor(
    private readonly lookup: ParameterLookup,
    private readonly relationalDepth: number,
  ) {}

  run(text: string): string {
    this.parse(text)
    return this.result.join('')
  }

  // mac_parse(): split text into literal runs and macro references.
  private parse(text: string): void {
    let literal = ''
    let position = 0
    while (position < text.length) {
      const ch = text[position]
      if (ch !== '$') {
        literal += ch
        position += 1
        continue
      }
      if (text[position + 1] === '$') {
        literal += '$' // Postfix: "$$" is a literal "$" and is not expanded again.
        position += 2
        continue
      }
      if (literal.length > 0) {
        this.onToken('literal', literal)
        literal = ''
      }
      position += 1
      let name: string
      const open = text[position]
      if (open === '{' || open === '(') {
        // Only the kind of bracket that opened the reference counts for nesting.
        const close = open === '{' ? '}' : ')'
        let depth = 1
        let end = position + 1
        for (; depth > 0; end++) {
          if (end >= text.length) throw new MacroExpansionError(`truncated macro reference: "${text}"`)
          if (text[end] === open) depth++
          if (text[end] === close) depth--
        }
        name = text.slice(position + 1, end - 1)
        position = end
      } else {
        let end = position
        while (end < text.length && isNameCharacter(text[end])) end++
        name = text.slice(position, end)
        position = end
      }
      if (name.length === 0) throw new MacroExpansionError(`empty macro name: "${text}"`)
      this.onToken('expression', name)
    }
    if (literal.length > 0) this.onToken('literal', literal)
  }

  // mac_expand_callback(): one literal run or one ${...} expression.
  private onToken(type: 'literal' | 'expression', token: string): void {
    if (this.level++ > MAX_NESTING_LEVEL) {
      throw new MacroExpansionError(`unreasonable macro call nesting: "${token}"`)
    }
    if (type === 'literal') {
      this.result.push(token)
    } else {
      this.expandExpression(token)
    }
    this.level--
  }

  private expandExpression(expression: string): void {
    let cursor = 0
    let value: string | undefined
    let operator: '' | '?' | ':'

    const leadingSpace = spanOf(expression, 0, EXPANSION_WHITESPACE)
    if (expression[leadingSpace] === '{') {
      const relational = this.evaluateRelational(expression, leadingSpace)
      value = relational.value
      cursor = relational.end
      const next = expression[cursor]
      if (next === undefined) {
        operator = ''
      } else if (next === '?' || next === ':') {
        operator = next
        cursor += 1
      } else {
        throw new MacroExpansionError(`"?" or ":" expected at: "...}>>>${first20(expression, cursor)}"`)
      }
    } else {
      // A parameter name, optionally followed by ? or : (whitespace around the name is allowed).
      const start = leadingSpace
      cursor = start
      for (;;) {
        const afterSpace = cursor + spanOf(expression, cursor, EXPANSION_WHITESPACE)
        const ch = expression[afterSpace]
        if (ch === undefined) {
          operator = ''
          break
        }
        if (ch === '?' || ch === ':') {
          operator = ch
          break
        }
        if (!isNameCharacter(expression[cursor])) {
          throw new MacroExpansionError(
            `attribute name syntax error at: "...${expression.slice(0, cursor)}>>>${first20(expression, cursor)}"`,
          )
        }
        cursor += 1
      }
      const name = expression.slice(start, cursor)
      if (operator !== '') cursor = cursor + spanOf(expression, cursor, EXPANSION_WHITESPACE) + 1
      value = this.lookup(name)
    }

    const isNonEmpty = value !== undefined && value !== ''
    if (operator === '') {
      // Postfix expands the value of a parameter again (MAC_EXP_FLAG_RECURSE), one level deeper.
      if (isNonEmpty) this.parse(value as string)
      return
    }
    if (operator === '?') {
      const ifTrue = this.takeOperand(expression, cursor)
      if (isNonEmpty) this.parse(ifTrue.text)
      cursor = ifTrue.end
      if (cursor >= expression.length) return
      if (expression[cursor] !== ':') {
        throw new MacroExpansionError(`":" expected at: "...${ifTrue.text}}>>>${first20(expression, cursor)}"`)
      }
      cursor += 1
    }
    // operator ':' (or the ':' branch of a ternary ?:)
    const ifFalse = this.takeOperand(expression, cursor)
    if (!isNonEmpty) this.parse(ifFalse.text)
    if (ifFalse.end < expression.length) {
      throw new MacroExpansionError(
        `unexpected input at: "...${ifFalse.text}}>>>${first20(expression, ifFalse.end)}"`,
      )
    }
  }

  // The text after ? or :. A {braced} operand ends at its closing brace (whitespace around it is
  // ignored); any other operand is the rest of the expression, ':' and '?' included.
  private takeOperand(expression: string, from: number): { text: string; end: number } {
    const brace = from + spanOf(expression, from, EXPANSION_WHITESPACE)
    if (expression[brace] === '{') return extractBracedPayload(expression, brace)
    return { text: expression.slice(from), end: expression.length }
  }

  private evaluateRelational(expression: string, leftBrace: number): { value: string; end: number } {
    const left = extractBracedPayload(expression, leftBrace)
    let cursor = left.end
    const operatorStart = cursor
    const operatorText = expression.slice(cursor, cursor + spanOf(expression, cursor, OPERATOR_CHARACTERS))
    if (!(RELATIONAL_OPERATORS as readonly string[]).includes(operatorText)) {
      throw new MacroExpansionError(
        `${OPERATOR_EXPECTED} expected at: "...${left.text}}>>>${first20(expression, cursor)}"`,
      )
    }
    const operator = operatorText as RelationalOperator
    cursor += operatorText.length
    let compareAsCompatibilityLevels = false
    if (isAlphanumeric(expression[cursor])) {
      let suffixEnd = cursor
      while (isAlphanumeric(expression[suffixEnd])) suffixEnd++
      const suffix = expression.slice(cursor, suffixEnd)
      if (suffix !== COMPATIBILITY_LEVEL_SUFFIX) {
        throw new MacroExpansionError(`bad operator suffix at: "...${operatorText}>>>${suffix}"`)
      }
      compareAsCompatibilityLevels = true
      cursor = suffixEnd
    }
    const rightBrace = cursor + spanOf(expression, cursor, EXPANSION_WHITESPACE)
    if (expression[rightBrace] !== '{') {
      throw new MacroExpansionError(
        `"{expression}" expected at: "...{${left.text}} ${expression.slice(operatorStart, cursor)}>>>${first20(expression, cursor)}"`,
      )
    }
    const right = extractBracedPayload(expression, rightBrace)

    // Postfix expands each operand as a separate, complete expansion (with its own nesting count).
    if (this.relationalDepth >= MAX_RELATIONAL_DEPTH) {
      throw new MacroExpansionError(`unreasonable macro call nesting: "${left.text}"`)
    }
    const leftValue = new Expansion(this.lookup, this.relationalDepth + 1).run(left.text)
    const rightValue = new Expansion(this.lookup, this.relationalDepth + 1).run(right.text)
    const holds = compareAsCompatibilityLevels
      ? compareCompatibilityLevels(leftValue, operator, rightValue)
      : compareValues(leftValue, operator, rightValue)
    return { value: holds ? TRUE_VALUE : FALSE_VALUE, end: right.end }
  }
}

// mac_exp_extract_curly_payload(): balance {}, then skip whitespace after the closing brace.
function extractBracedPayload(expression: string, openBrace: number): { text: string; end: number } {
  let depth = 1
  for (let cursor = openBrace + 1; cursor < expression.length; cursor++) {
    const ch = expression[cursor]
    if (ch === '{') depth++
    else if (ch === '}' && --depth <= 0) {
      const after = cursor + 1
      return { text: expression.slice(openBrace + 1, cursor), end: after + spanOf(expression, after, EXPANSION_WHITESPACE) }
    }
  }
  throw new MacroExpansionError(`unbalanced {} in attribute expression: "${expression.slice(openBrace)}"`)
}

// mac_exp_eval(): numeric when both sides are all digits, else a byte-wise strcmp().
function compareValues(left: string, operator: RelationalOperator, right: string): boolean {
  let delta: number
  if (isAllDigits(left) && isAllDigits(right)) {
    const difference = BigInt(left) - BigInt(right)
    delta = difference === 0n ? 0 : difference < 0n ? -1 : 1
  } else {
    delta = Buffer.compare(Buffer.from(left, 'utf8'), Buffer.from(right, 'utf8'))
  }
  return applyOperator(delta, operator)
}

function compareCompatibilityLevels(left: string, operator: RelationalOperator, right: string): boolean {
  const delta = Math.sign(parseCompatibilityLevel(left) - parseCompatibilityLevel(right))
  return applyOperator(delta, operator)
}

function applyOperator(delta: number, operator: RelationalOperator): boolean {
  switch (operator) {
    case '==':
      return delta === 0
    case '!=':
      return delta !== 0
    case '<':
      return delta < 0
    case '<=':
      return delta <= 0
    case '>=':
      return delta >= 0
    case '>':
      return delta > 0
  }
}

/**
 * A compatibility level "major[.minor[.patch]]" as one comparable number, like Postfix's
 * compat_level_from_string() (10 bits each for minor and patch).
 */
export function parseCompatibilityLevel(text: string): number {
  // Each number is read with strtol(), which allows leading whitespace and a sign.
  const match = /^\s*([+-]?\d+)(?:\.\s*([+-]?\d+)(?:\.\s*([+-]?\d+))?)?$/.exec(text)
  const major = match ? Number(match[1]) : NaN
  const minor = match?.[2] === undefined ? 0 : Number(match[2])
  const patch = match?.[3] === undefined ? 0 : Number(match[3])
  const isValid =
    match !== null && Number.isSafeInteger(major) && major >= 0 && minor >= 0 && minor <= 0x3ff && patch >= 0 && patch <= 0x3ff
  if (!isValid) {
    throw new MacroExpansionError(`malformed compatibility level syntax: "${text}"`)
  }
  return major * 2 ** 20 + minor * 2 ** 10 + patch
}

function spanOf(text: string, from: number, characters: string): number {
  let end = from
  while (end < text.length && characters.includes(text[end])) end++
  return end - from
}

function first20(text: string, from: number): string {
  return text.slice(from, from + 20)
}

function isAlphanumeric(ch: string | undefined): boolean {
  return ch !== undefined && /^[A-Za-z0-9]$/.test(ch)
}

function isNameCharacter(ch: string | undefined): boolean {
  return ch === '_' || isAlphanumeric(ch)
}

function isAllDigits(text: string): boolean {
  return /^[0-9]+$/.test(text)
}
