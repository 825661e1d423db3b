// Character classes as Postfix's C code uses them (C locale).

/** Postfix ISSPACE(): ASCII isspace() in the C locale. */
export function isSpaceChar(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ch === '\v' || ch === '\f'
}

/** Postfix trimblanks() + leading-blank skip: strip ASCII whitespace at both ends. */
export function trimSpace(s: string): string {
  let a = 0
  let b = s.length
  while (a < b && isSpaceChar(s[a])) a++
  while (b > a && isSpaceChar(s[b - 1])) b--
  return s.slice(a, b)
}

/**
 * A copy of `s` that shares no memory with the string it was cut from. The decoder cuts
 * request strings out of one conversion of a whole read (up to 64 KB); a name kept for
 * the life of an open table must not keep that read alive.
 */
export function detachedString(s: string): string {
  return Buffer.from(s, 'utf16le').toString('utf16le')
}
