// Texts that every match of a regexp: pattern contains, so that a key without one of them
// is answered "no match" without regexec(). That is exact for the C library's regexec():
// without back-references it has no limit and no error (but for running out of memory), so
// where a text is missing it returns REG_NOMATCH, as in Postfix's process. Found only
// in extended syntax (REG_EXTENDED) and only at the top level of a pattern without
// alternation: the runs of ordinary characters, none of them repeated. Every match of a
// sequence is the concatenation of matches of its parts, so each such run appears in it as is
// (in either case under REG_ICASE: ASCII letters only, the C locale). Whatever this does
// not know ends a run; "|" at the top level, an interval "{" or a stray ")" gives none.

/** Escaped characters that extended syntax takes as themselves (GNU \< \> \` \' \w ... are not). */
const LITERAL_ESCAPES = new Set([...'.\\/-[]*+?$^@:'])
/** Characters that are not themselves outside a bracket expression. */
const SPECIAL = new Set([...'\\[]().*+?{}|^$'])

class NoLiteral extends Error {}

/** The required runs of characters of an extended pattern; none when none is known. */
export function requiredTexts(pattern: string, extended: boolean): string[] {
  if (!extended) return []
  const nul = pattern.indexOf('\0')
  const text = nul >= 0 ? pattern.slice(0, nul) : pattern
  let pos = 0

  // A bracket expression from its "[" to after its "]": a "]" first is a member, [: :],
  // [. .] and [= =] hold their own "]", and a backslash is an ordinary member.
  const skipBracket = (): void => {
    pos++
    if (text[pos] === '^') pos++
    if (text[pos] === ']') pos++
    while (pos < text.length && text[pos] !== ']') {
      if (text[pos] === '[' && ':.='.includes(text[pos + 1] ?? '\0')) {
        const close = text.indexOf(`${text[pos + 1]}]`, pos + 2)
        if (close < 0) throw new NoLiteral()
        pos = close + 2
      } else {
        pos++
      }
    }
    if (pos >= text.length) throw new NoLiteral()
    pos++
  }

  const skipGroup = (): void => {
    let depth = 0
    while (pos < text.length) {
      const ch = text[pos]
      if (ch === '\\') pos += 2
      else if (ch === '[') skipBracket()
      else {
        pos++
        if (ch === '(') depth++
        else if (ch === ')' && --depth === 0) return
      }
    }
    throw new NoLiteral()
  }

  try {
    const runs: string[] = []
    let run = ''
    while (pos < text.length) {
      const ch = text[pos]
      let literal: string | undefined
      if (ch === '\\') {
        const next = text[pos + 1]
        if (next === undefined) throw new NoLiteral()
        if (LITERAL_ESCAPES.has(next)) literal = next
        pos += 2
      } else if (ch === '[') {
        skipBracket()
      } else if (ch === '(') {
        skipGroup()
      } else if (ch === '^' || ch === '$' || ch === '.') {
        pos++
      } else if (SPECIAL.has(ch)) {
        // ")" unopened, "|", "{", or a repeat with nothing before it.
        throw new NoLiteral()
      } else {
        literal = ch
        pos++
      }
      if ('*+?{'.includes(text[pos] ?? '\0')) {
        literal = undefined
        while ('*+?'.includes(text[pos] ?? '\0')) pos++
        if (text[pos] === '{') throw new NoLiteral()
      }
      if (literal === undefined) {
        if (run.length > 0) runs.push(run)
        run = ''
      } else {
        run += literal
      }
    }
    if (run.length > 0) runs.push(run)
    return runs
  } catch (err) {
    if (err instanceof NoLiteral) return []
    throw err
  }
}
