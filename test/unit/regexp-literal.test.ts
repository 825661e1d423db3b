// The texts that every match of a regexp: pattern contains (src/lib/tables/regexp-literal.ts),
// by which a key is answered "no match" without regexec(): on random extended patterns and
// keys, glibc's regexec() itself never matches a key that lacks one of them, and the
// table's answers with and without the shortcut are the same.
//
// Run: node --import tsx --test test/unit/regexp-literal.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'

import {loadNative, type NativePatternProgram} from '../../src/lib/native/index.js'
import {requiredTexts} from '../../src/lib/tables/regexp-literal.js'
import {randomSource} from '../differential/pattern-helpers.js'

const ATOMS = ['a', 'b', 'c', 'A', 'ab', 'Bc', ' ', '@', '-', ':', '.', '\\.', '\\\\', '\\*', '\\[', '\\w', '\\W', '\\<', '\\>', '\\b',
  '[a-c]', '[^b]', '[]a]', '[\\]', '[[:upper:]]', '[[.a.]b]', '^', '$', '(a|b)', '(ab|[c)])', '(\\(|b)', '\\`', "\\'"]
const QUANTIFIERS = ['', '', '', '', '*', '+', '?', '*?', '{1,2}', '{2}']

const RULE_FIELDS = [0, 0, 0, -1, 0, 0, -1]

function program(native: ReturnType<typeof loadNative>, pattern: string, flags: number, texts: string[]): NativePatternProgram | undefined {
  const p = new native.PatternProgram(0)
  const compiled = p.compile(pattern, flags, -1, texts.join('\0'))
  if ('error' in compiled) return undefined
  p.setRules(new Int32Array(RULE_FIELDS), new Int32Array(2))
  return p
}

test('regexec() never matches a key without one of the required texts', () => {
  const native = loadNative()
  const {REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB} = native.patternConstants
  const random = randomSource(0x7e11)
  const fold = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase())
  let withTexts = 0
  let shortcuts = 0
  for (let i = 0; i < 1500; i++) {
    let pattern = ''
    for (let p = 0, pieces = 1 + random.int(6); p < pieces; p++) pattern += random.pick(ATOMS) + random.pick(QUANTIFIERS)
    if (random.int(8) === 0) pattern += `|${random.pick(ATOMS)}`
    const flags = (REG_EXTENDED | random.pick([0, REG_ICASE, REG_NEWLINE, REG_ICASE | REG_NOSUB])) >>> 0
    const texts = requiredTexts(pattern, true)
    const plain = program(native, pattern, flags, [])
    const shortcut = program(native, pattern, flags, texts)
    if (!plain || !shortcut) continue
    if (texts.length > 0) withTexts++
    for (let k = 0; k < 20; k++) {
      let key = ''
      for (let j = 0, length = random.int(10); j < length; j++) key += random.pick([...'aabbcAB @-:.\\*[]()`\'\n'])
      const icase = (flags & REG_ICASE) !== 0
      const missing = texts.some((t) => !(icase ? fold(key) : key).includes(icase ? fold(t) : t))
      const answer: unknown = plain.search(key, 0)
      if (missing) {
        shortcuts++
        assert.equal(answer, -1, `/${pattern}/ (flags ${flags}) matched ${JSON.stringify(key)} without ${JSON.stringify(texts)}`)
      }
      assert.deepEqual(shortcut.search(key, 0), answer, `/${pattern}/ on ${JSON.stringify(key)}`)
    }
  }
  console.log(`${withTexts} patterns with required texts, ${shortcuts} keys answered by the shortcut`)
  assert.ok(withTexts > 150 && shortcuts > 2500, `${withTexts} patterns, ${shortcuts} shortcuts`)
})

test('required texts: top-level runs only, none where the pattern is not known', () => {
  assert.deepEqual(requiredTexts('^Subject: .*cheap12(pills|watches)', true), ['Subject: ', 'cheap12'])
  assert.deepEqual(requiredTexts('ab*c\\.d[xy]e?f', true), ['a', 'c.d', 'f'])
  assert.deepEqual(requiredTexts('[]x]yz', true), ['yz'])
  assert.deepEqual(requiredTexts('[\\]q', true), ['q'])
  assert.deepEqual(requiredTexts('\\<word\\>', true), ['word'])
  for (const pattern of ['a|b', 'ab{2}', 'a)b', '*ab', 'ab\\', '[ab', '(ab', 'x]y', 'x}y']) assert.deepEqual(requiredTexts(pattern, true), [], pattern)
  assert.deepEqual(requiredTexts('abc', false), [], 'basic syntax')
  assert.deepEqual(requiredTexts('ab\0cd', true), ['ab'])
})
