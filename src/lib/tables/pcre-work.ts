// When a pcre: pattern may be matched by PCRE2's JIT and still answer as Postfix's
// interpreter (pcre2_match() without JIT, default limits) does. The two agree on every key
// on which the interpreter stays within its limits; they differ only where it would stop
// with "match limit exceeded" (or the depth or heap limit), because the JIT counts its work
// in another way. So the JIT is used only on keys short enough that the interpreter
// provably stays far below its limits, from an upper bound on its work worked out here.
//
// The interpreter of PCRE2 10.x records one backtracking frame (and counts one against the
// match limit, which is reset at each start position) for each alternative of a group it
// tries and for each length it tries of a repeated single character; literals, classes and
// the assertions ^ $ \b \B add none. For a pattern with no repeated group, no
// back-reference, no lookaround and nothing else whose work this does not know, every
// frame is reached by a distinct series of such choices, at most one per group or repeat
// of the pattern, so at one start position
//   frames <= (choices + 1) * paths(n)
// where paths(n) is the number of ways through the pattern: the product over a sequence,
// the sum over the alternatives of a group, and for a repeat the number of lengths it can
// take on a key of n bytes. The depth of the frames is at most choices + 1, far from the
// depth and heap limits. Anything else in a pattern makes it "unknown": always the interpreter.

/** A tenth of PCRE2's default match limit (10,000,000), for margin. */
export const JIT_FRAME_BOUND = 1_000_000

/** A repeated single character: the lengths it may take. */
interface Repeat {
  kind: 'repeat'
  min: number
  max: number
}

interface Group {
  kind: 'group'
  alternatives: Sequence[]
}

/** Only what records frames; single characters and assertions are left out. */
type Sequence = (Repeat | Group)[]

/** Escapes after which the pattern is a single character (or a class of them). */
const SINGLE_CHAR_ESCAPES = new Set([...'dDwWsShHvVtnrfea'])
/** Escapes that are assertions: no character, no frame. */
const ASSERTION_ESCAPES = new Set([...'bB'])

class Unknown extends Error {}

/**
 * The choices of a pattern as PCRE2 compiles it, or undefined when it holds
 * anything this module does not bound (the JIT is not used for it).
 */
export function parseChoices(pattern: string, extended: boolean): Group | undefined {
  // Extended syntax (PCRE2_EXTENDED) gives white space and # a meaning of their own.
  if (extended) return undefined
  const nul = pattern.indexOf('\0')
  const text = nul >= 0 ? pattern.slice(0, nul) : pattern
  let pos = 0

  // One atom at `pos`: 'char' (a single character), 'assertion', or a group.
  const atom = (): 'char' | 'assertion' | Group => {
    const ch = text[pos]
    if (ch === '\\') {
      const next = text[pos + 1]
      if (next === undefined) throw new Unknown()
      pos += 2
      if (!/[A-Za-z0-9]/.test(next) || SINGLE_CHAR_ESCAPES.has(next)) return 'char'
      if (ASSERTION_ESCAPES.has(next)) return 'assertion'
      throw new Unknown()
    }
    if (ch === '[') {
      skipClass()
      return 'char'
    }
    if (ch === '(') {
      pos++
      if (text[pos] === '?') {
        if (text[pos + 1] !== ':') throw new Unknown()
        pos += 2
      } else if (text[pos] === '*') {
        throw new Unknown()
      }
      const group = alternatives()
      if (text[pos] !== ')') throw new Unknown()
      pos++
      return group
    }
    if (ch === '^' || ch === '$') {
      pos++
      return 'assertion'
    }
    if (ch === '*' || ch === '+' || ch === '?' || ch === ')' || ch === '|') throw new Unknown()
    if (ch === '{' && quantifierAt(pos) !== undefined) throw new Unknown()
    pos++
    return 'char'
  }

  // A character class [...], as one character; \Q, \E and anything odd inside: unknown.
  const skipClass = (): void => {
    pos++
    if (text[pos] === '^') pos++
    if (text[pos] === ']') pos++
    while (pos < text.length && text[pos] !== ']') {
      if (text[pos] === '\\') {
        const next = text[pos + 1]
        if (next === undefined || next === 'Q' || next === 'E') throw new Unknown()
        pos += 2
      } else if (text[pos] === '[' && /[:.=]/.test(text[pos + 1] ?? '')) {
        const close = text.indexOf(`${text[pos + 1]}]`, pos + 2)
        if (close < 0) throw new Unknown()
        pos = close + 2
      } else {
        pos++
      }
    }
    if (text[pos] !== ']') throw new Unknown()
    pos++
  }

  // A quantifier at `at`: its bounds and length, or undefined.
  const quantifierAt = (at: number): {min: number; max: number; length: number} | undefined => {
    const ch = text[at]
    if (ch === '*') return {min: 0, max: Infinity, length: 1}
    if (ch === '+') return {min: 1, max: Infinity, length: 1}
    if (ch === '?') return {min: 0, max: 1, length: 1}
    if (ch !== '{') return undefined
    const m = /^\{(\d+)(,(\d*))?\}/.exec(text.slice(at))
    if (!m) return undefined
    const min = Number(m[1])
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3])
    if (min > 65535 || max < min || (max !== Infinity && max > 65535)) throw new Unknown()
    return {min, max, length: m[0].length}
  }

  const sequence = (): Sequence => {
    const items: Sequence = []
    while (pos < text.length && text[pos] !== '|' && text[pos] !== ')') {
      const got = atom()
      const q = quantifierAt(pos)
      if (q === undefined) {
        if (typeof got === 'object') items.push(got)
        continue
      }
      // A repeated group or assertion is not bounded here.
      if (got !== 'char') throw new Unknown()
      pos += q.length
      // Lazy (?) or possessive (+) repeats take the same lengths or fewer.
      if (text[pos] === '?' || text[pos] === '+') pos++
      if (quantifierAt(pos) !== undefined) throw new Unknown()
      items.push({kind: 'repeat', min: q.min, max: q.max})
    }
    return items
  }

  const alternatives = (): Group => {
    const group: Group = {kind: 'group', alternatives: [sequence()]}
    while (text[pos] === '|') {
      pos++
      group.alternatives.push(sequence())
    }
    return group
  }

  try {
    const top = alternatives()
    return pos === text.length ? top : undefined
  } catch (err) {
    if (err instanceof Unknown) return undefined
    throw err
  }
}

const choicesIn = (group: Group): number =>
  1 + group.alternatives.reduce((sum, seq) => sum + seq.reduce((s, item) => s + (item.kind === 'group' ? choicesIn(item) : 1), 0), 0)

function paths(group: Group, n: number): number {
  let sum = 0
  for (const seq of group.alternatives) {
    let product = 1
    for (const item of seq) {
      product *= item.kind === 'group' ? paths(item, n) : Math.max(1, Math.min(item.max - item.min + 1, n + 1))
    }
    sum += product
  }
  return sum
}

/** The upper bound on the interpreter's frames at one start position, for a key of n bytes. */
export function frameBound(choices: Group, n: number): number {
  return (choicesIn(choices) + 1) * paths(choices, n)
}

/** The longest key (bytes) on which the interpreter's work stays within JIT_FRAME_BOUND; -1: no JIT. */
export function jitKeyLimit(pattern: string, extended: boolean): number {
  const choices = parseChoices(pattern, extended)
  if (choices === undefined || frameBound(choices, 0) > JIT_FRAME_BOUND) return -1
  let low = 0
  let high = 0x7fffffff
  if (frameBound(choices, high) <= JIT_FRAME_BOUND) return high
  // frameBound grows with n: the largest n within the bound.
  while (low < high) {
    const mid = Math.floor((low + high + 1) / 2)
    if (frameBound(choices, mid) <= JIT_FRAME_BOUND) low = mid
    else high = mid - 1
  }
  return low
}
