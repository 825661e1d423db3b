// The bound on PCRE2's interpreter (src/lib/tables/pcre-work.ts) that decides where the
// JIT may answer for it: on random patterns of the syntax it knows and random keys, the
// real libpcre2-8 interpreter (the smallest match limit under which it finishes, as
// pcre2test's find_limits reports it) never needs more than the bound; syntax it does not
// know gets no JIT.
//
// Run: node --import tsx --test test/unit/pcre-work.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'

import {loadNative} from '../../src/lib/native/index.js'
import {frameBound, jitKeyLimit, JIT_FRAME_BOUND, parseChoices} from '../../src/lib/tables/pcre-work.js'
import {randomSource} from '../differential/pattern-helpers.js'

const PCRE2_DEFAULT_MATCH_LIMIT = 10_000_000

const ATOMS = ['a', 'b', 'x', '.', '\\w', '\\d', '\\s', '\\.', '[ab]', '[^a]', '[]a]', '[[:alpha:]x]', '\\ba', '^', '$', '#', ' ', '{', 'a{,2}']
const QUANTIFIERS = ['', '*', '*', '+', '+', '?', '{2}', '{1,3}', '{2,}', '*?', '+?', '??', '*+', '{0,2}?']

function randomPattern(random: ReturnType<typeof randomSource>, depth: number): string {
  const branches = 1 + (random.int(3) === 0 ? random.int(3) : 0)
  const out: string[] = []
  for (let b = 0; b < branches; b++) {
    let text = ''
    for (let p = 0, pieces = 1 + random.int(5); p < pieces; p++) {
      if (depth < 2 && random.int(5) === 0) {
        text += `(${random.int(2) ? '?:' : ''}${randomPattern(random, depth + 1)})`
        continue
      }
      const atom = random.pick(ATOMS)
      text += atom
      // Only single characters are repeated in the syntax the bound knows.
      if (atom.length === 1 ? !'^$'.includes(atom) : /^(\\[a-z.]|\[.*\])$/.test(atom)) text += random.pick(QUANTIFIERS)
    }
    out.push(text)
  }
  return out.join('|')
}

/** Repeats in a row before "cd", on keys with a "d" (PCRE2 looks for it first) and no "c": the interpreter backtracks through them all. */
const BACKTRACKING = ['a*', '.*', '[ab]*', 'a?', '(a|ab)', '(?:b|a)', '\\w*?', 'a+', 'a{0,3}', '(?:a*|b)', '[^c]+?']
function backtrackingPattern(random: ReturnType<typeof randomSource>): string {
  let text = random.int(2) ? '^' : ''
  for (let p = 0, pieces = 2 + random.int(3); p < pieces; p++) text += random.pick(BACKTRACKING)
  return `${text}cd`
}

test('the interpreter never needs more frames than the bound, on random patterns and keys', () => {
  const native = loadNative()
  const c = native.patternConstants
  const random = randomSource(0x51ab)
  let checked = 0
  let heavy = 0
  for (let i = 0; i < 400; i++) {
    const backtracking = i % 2 === 1
    const pattern = backtracking ? backtrackingPattern(random) : randomPattern(random, 0)
    const flags = random.pick([c.PCRE2_CASELESS | c.PCRE2_DOTALL, 0, c.PCRE2_MULTILINE, c.PCRE2_UNGREEDY, c.PCRE2_ANCHORED]) >>> 0
    const choices = parseChoices(pattern, false)
    assert.ok(choices, `the bound knows /${pattern}/`)
    const program = new native.PatternProgram(1)
    const compiled = program.compile(pattern, flags)
    assert.ok(!('error' in compiled), `/${pattern}/: ${JSON.stringify(compiled)}`)
    for (let k = 0; k < 6; k++) {
      let key = backtracking ? 'd' : ''
      for (let j = 0, length = random.int(k < 3 ? 12 : 40); j < length; j++) key += random.pick([...(backtracking ? 'aaab' : 'aaabbx. _1\n')])
      const bound = frameBound(choices, key.length)
      if (bound > PCRE2_DEFAULT_MATCH_LIMIT) continue
      const work = program.interpreterWork(compiled.index, key)
      assert.ok(work >= 1 && work <= bound, `/${pattern}/ on ${JSON.stringify(key)}: the interpreter needs ${work}, bound ${bound}`)
      checked++
      if (work > 50) heavy++
    }
  }
  // The keys and patterns make the interpreter work, not only answer at once.
  console.log(`${checked} checked, ${heavy} with more than 50 frames`)
  assert.ok(checked > 1500 && heavy > 100, `${checked} checked, ${heavy} with more than 50 frames`)
})

test('a pattern that backtracks a lot gets the JIT only on keys too short for the limit', () => {
  const native = loadNative()
  const program = new native.PatternProgram(1)
  const pattern = '^.*.*.*xy'
  const compiled = program.compile(pattern, 0)
  assert.ok(!('error' in compiled))
  const limit = jitKeyLimit(pattern, false)
  assert.ok(limit > 10 && limit < 200, `${limit}`)
  const key = (n: number): string => `y${'a'.repeat(n - 1)}`
  assert.ok(program.interpreterWork(compiled.index, key(limit)) <= JIT_FRAME_BOUND)
  // Well past the limit the interpreter gives up ("match limit exceeded"), as Postfix's does.
  assert.equal(program.interpreterWork(compiled.index, key(400)), -1)
  assert.equal(jitKeyLimit('^Subject: .*cheap12(pills|watches)', false) > 100_000, true)
})

test('what the bound does not know gets no JIT', () => {
  for (const pattern of ['^(a+)+$', '(a|b)*c', '(ab)?', '(a)\\1', 'a(?=b)', '(?i)a', '(?>a*)', '\\x61*', '\\Qa*\\E', '(*COMMIT)a', 'a{2}{3}',
    '\\Ka', '[\\Q]\\E]', '(a', 'a)', '*a', 'a|*', '\\', '\\p{Lu}', '\\Aa', 'a**', '{2}']) {
    assert.equal(parseChoices(pattern, false), undefined, pattern)
    assert.equal(jitKeyLimit(pattern, false), -1, pattern)
  }
  assert.equal(jitKeyLimit('a*', true), -1, 'extended syntax')
  assert.equal(jitKeyLimit('^quick$', false), 0x7fffffff)
})
