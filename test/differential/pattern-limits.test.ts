// A pcre table whose patterns backtrack without end: real Postfix stops each at PCRE2's
// match limit ("match limit exceeded", the rule does not match) and goes on with the next
// rule. Ours must answer the same, directly (postmap -q) and through the proxy, and while
// it works on that key in a worker thread, other clients of the same server are answered.
//
// Run: node --import tsx --test test/differential/pattern-limits.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {pcreType} from '../../src/lib/tables/pcre.js'
import {createPostfixInstance, type PostfixInstance, requirePostfix} from '../helpers/postfix.js'
import {theirsThenOurs} from '../helpers/compare.js'
import {differential, makeConfig} from './pattern-helpers.js'

/** Each line costs PCRE2's full default match limit (10,000,000) on PATHOLOGICAL_KEY. */
const SLOW_RULES = 12
const TABLE = [
  ...Array.from({length: SLOW_RULES}, (_, i) => `/^(a+)+$/ never-${i}`),
  '/^(\\w)\\w*b$/ ends-with-b:$1',
  '/^quick$/ quick-answer',
  '',
].join('\n')
const PATHOLOGICAL_KEY = `${'a'.repeat(30)}b`

let pf: PostfixInstance
let table: string

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-limits-'})
  table = await pf.createTable('pcre', 'slow.pcre', TABLE, {build: false})
  await pf.approve({read: [table], write: []})
})

after(async () => {
  await pf?.destroy()
})

test('a pattern that runs into the match limit answers as postmap -q: the warning, then the next rule', async () => {
  const confDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-limits-conf-'))
  try {
    const config = makeConfig(confDir, {compatibility_level: '3.6'})
    const cases = [PATHOLOGICAL_KEY, 'quick', 'aaaa'].map((key) => ({spec: table, key}))
    const result = await differential(pcreType, cases, config, confDir, 1)
    assert.equal(result.failures.length, 0, result.failures.join('\n'))
  } finally {
    fs.rmSync(confDir, {recursive: true, force: true})
  }
})

test('while one client waits for the match limits, the others are answered (ours as Postfix\'s)', async () => {
  const slowRun = async (): Promise<{slow: string; quickWhileSlow: number}> => {
    let slowDone = false
    const slow = pf.postmap(['-q', PATHOLOGICAL_KEY, `proxy:${table}`], {timeoutMs: 60_000}).then((r) => {
      slowDone = true
      return r
    })
    let quickWhileSlow = 0
    // Bounded: at most 200 quick clients, one after the other, while the slow one runs.
    for (let i = 0; i < 200 && !slowDone; i++) {
      const quick = await pf.postmap(['-q', 'quick', `proxy:${table}`])
      assert.equal(quick.stdout, 'quick-answer\n', quick.stderr)
      if (!slowDone) quickWhileSlow++
    }
    const r = await slow
    return {slow: `${r.code} ${r.stdout}`, quickWhileSlow}
  }
  const {theirs, ours} = await theirsThenOurs(pf, slowRun)
  console.log(`# quick clients answered while the slow one ran: Postfix ${theirs.quickWhileSlow}, ours ${ours.quickWhileSlow}`)
  assert.equal(theirs.slow, `0 ends-with-b:a\n`)
  assert.equal(ours.slow, theirs.slow)
  assert.ok(ours.quickWhileSlow >= 3, `only ${ours.quickWhileSlow} quick clients were answered while the slow one ran`)
  const warnings = pf.ourStderr().split('\n').filter((l) => l.includes('match limit exceeded'))
  assert.equal(warnings.length, SLOW_RULES, pf.ourStderr())
  assert.match(warnings[0], new RegExp(`/proxymap\\[\\d+\\]: warning: pcre map ${path.join(pf.etc, 'slow.pcre')}, line 1: match limit exceeded$`))
})

test("a regexp rule on which glibc's regexec() runs out of stack: postmap dies, our server answers RETRY and goes on", async () => {
  // Real postmap -q dies of SIGSEGV on this rule and key (regexec() recurses without end).
  const crashing = await pf.createTable('regexp', 'crash.re', '/^ok$/ fine\n/(@[a-c]*|)(\\1+){1,}\\b/ never\n', {build: false})
  const direct = await pf.postmap(['-q', '-', crashing], {input: '-_\n', timeoutMs: 60_000})
  assert.ok(direct.signal === 'SIGSEGV' || direct.code === 139, `real postmap survived: ${JSON.stringify(direct)}`)

  await pf.approve({read: [table, crashing], write: []})
  await pf.startOurs()
  try {
    const pid = pf.ourPid()
    let crashDone = false
    const crash = pf.postmap(['-q', '-_', `proxy:${crashing}`], {timeoutMs: 60_000}).then(r => { crashDone = true; return r })
    // Meanwhile (regexec() takes seconds to use up its stack) the same table answers others.
    let answered = 0
    for (let i = 0; i < 200 && !crashDone; i++) {
      const ok = await pf.postmap(['-q', 'ok', `proxy:${crashing}`])
      assert.deepEqual([ok.code, ok.stdout], [0, 'fine\n'], ok.stderr)
      if (!crashDone) answered++
    }
    const r = await crash
    assert.equal(r.timedOut, false)
    assert.notEqual(r.code, 0)
    assert.equal(r.stdout, '')
    await pf.waitForOurStderr(/warning: regexp map .*crash\.re, line 2: regexec\(\) died on this key/)
    assert.equal(pf.ourPid(), pid, 'the server is alive')
    assert.ok(answered >= 3, `only ${answered} lookups answered while regexec() ran`)
    const other = await pf.postmap(['-q', 'quick', `proxy:${table}`])
    assert.deepEqual([other.code, other.stdout], [0, 'quick-answer\n'])
    assert.doesNotMatch(pf.ourStderr(), /Uncaught|Unhandled|TypeError|RangeError/)
  } finally {
    await pf.stopOurs()
  }
})
