// Differential test of regexp: tables against real Postfix 3.7: for every (table, key) we
// open the table ourselves with the flags `postmap -q` uses and compare the printed value,
// the warnings and the exit status with a real `postmap -c DIR -q KEY regexp:FILE`; then
// thousands of generated patterns and keys through `postmap -q -`.
//
// Run: node --import tsx --test test/differential/regexp.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {regexpType} from '../../src/lib/tables/regexp.js'
import {
  bulkDifferential, checkPatternFlags, differential, generatedTables, makeConfig, posixGrammar, useScratchRoot, writeTable, type DiffCase,
} from './pattern-helpers.js'

let root: string
useScratchRoot('pmx-regexp-', (dir) => { root = dir })

const KEYS = [
  'user@example.com', 'USER@EXAMPLE.COM', 'User@Example.Com', 'foo', 'FOO', 'bar', 'foobar',
  'abcd', 'abbb', 'aab', 'x', '', 'a.b.c', 'a+b', 'hello world', 'Ünïcödé', 'école', 'ÉCOLE',
  'straße', 'tab\there', 'x{1}', '123', 'a1b2', 'postmaster@sub.example.net', 'a-b_c', '[x]',
  'line1', 'ab', 'abab', 'root+ext@example.org', '日本語', 'é', 'É', 'a/b', '$1', 'mailer-daemon', 'xaab', 'xab', 'aab.c.d', 'fooo', 'abbc',
  'abcd', 'abcdd', 'abbcd', 'xyabcd', 'aa', 'abab', 'abba', 'a-a', 'b.b', 'xyzzy', 'aXa', 'AbAb',
]

const TABLES: Record<string, string> = {
  basic: `/^user@example\\.com$/ exact
/foo/ has-foo
/^bar$/ bar
/./ anything
`,
  caseflags: `/^FOO$/ default-icase
/^foo$/i case-sensitive-lower
/^FOO$/i case-sensitive-upper
/^ÉCOLE$/ upper-e
/^école$/ lower-e
/^user/i sensitive-user
/^User/ insensitive-user
`,
  substitution: `/^([^@]+)@(.*)$/ local=$1 domain=$2
/^(a+)(b*)$/ a=$1 b=\${2} lit=$$1
/^(x)?y$/ opt=$1
/(foo)(bar)?/ f=$(1) b=$2!
`,
  alternation: `/^(postmaster|abuse|root)(\\+.*)?@/ role:$1
/^.*@(example\\.com|example\\.org)$/ ours:$1
/foo|bar/ foo-or-bar
/^(a|ab)(c|bcd)$/ nosub
/^(com|net)$/ tld=$1
`,
  brackets: `/^[[:alpha:]]+$/ alpha
/^[[:digit:]]+$/ digit
/^[[:alnum:]_-]+$/ alnumish
/^[]x[]+$/ bracket-chars
/^[^[:space:]]+[[:space:]]/ has-space
/^[a-c]+$/ a-to-c
/^[\\]+$/ backslash
/^[.]$/ dot
/[[:upper:]]/i upper-icase-off
/^[[=a=][.b.]]+$/ equiv
`,
  anchors: `/a^b/ impossible
/^$/ empty
/b$/ ends-b
/\\<foo\\>/ word-foo
/\\bbar/ word-bar
/o\\B/ o-nonboundary
/^\\w+$/ word
/\\s/ space
/^\\S+$/ nonspace
/\\\`a/ buffer-start
`,
  quantifiers: `/^a{2}b$/ a2b
/^a{1,}b+$/ a-plus
/^x\\{1\\}$/ literal-brace
/^ab{0,1}$/ ab-opt
/a**/ star-star
/^(ab)+$/ repeated-ab=$1
/^x{,3}$/ upto3
/a+?/ plus-q
`,
  ifendif: `if /@example\\.com$/
/^user@/ example-user
if !/^u/
/./ example-non-u
endif
endif
/^foo/ top-foo
IF /bar/
/r$/ bar-r
ENDIF
/./ fallback
`,
  negation: `!/@/ no-at
/^a/!/b/ a-without-b
!!/foo/ double-neg
!/x/ $1
`,
  errors: `/*a/ bad1
/a{/ bad2
/(a/ bad3
/[a/ bad4
/[[:foo:]]/ bad5
/[b-a]/ bad6
/a/z bad-option
/no-close bad7
/(a)/ $2
/a/ $x
/a/ \${1
/a/ $
/b/ $0
endif
foo bar
if /x/ extra
/x/ inside
/[[.hyphen.]]/ bad8
/a{2,1}/ bad9
/x/
if /y/
/y/ unclosed-if
`,
  delimiters: `#comment
|^foo$| pipe
"^bar$" quote
/a\\/b/ slash
 /continued/ x
!/zzz/!/[a-z]/ not-z-not-letter
/^a.b/m newline-mode
/^x/x bre-x
/^\\(a*\\)b$/x bre-group=$1
/^a\\{2\\}b$/x bre-interval
/^*a/x bre-star
/^a+$/x bre-plus-literal
/^a\\+$/x bre-plus-op
`,
  longest: `/a?(ab)?/ span=$1
/^x(a*)(a?b)?/ g1=$1 g2=$2
/(o+)/ os=$1
/(b*)c?$/ tail=$1
/^([a-z]*)([.][a-z]+)*$/ head=$1
/(.)(.)$/ last2=$1$2
`,
  submatches: `/^(a|ab)(c|bcd)(d*)$/ posix:$1/$2/$3
/^(a|ab)(b*)$/ alt-longest=$1/$2
/^((a)|b)+$/ repeated=$1:$2
/^(a*|b)$/ empty-alt=$1
/^(a*)*$/ nested-star=$1
/^(a*)+(b)$/ plus-star=$1/$2
/(a|ab|abc)(bcd|cd|d)?/ three-way=$1/$2
/^x((ab)*|c)y$/ inner-repeat=$1/$2
/^(.*)(.*)$/ greedy-split=$1|$2
/^(a?)((ab)?)(b?)$/ optional-chain=$1/$2/$3/$4
`,
  backrefs: `/^(a|b)\\1$/ same-twice=$1
/(.)\\1/ doubled=$1
/^(ab*)\\1$/ repeated-group=$1
/^(a)(b)\\2\\1$/ abba=$1$2
/^\\(a*\\)\\1$/x bre-backref=$1
/(x)?\\1y/ unset-ref
`,
  utf8: `/^é$/ e-acute
/^..$/ two-bytes
/^[^a-z]+$/ nonascii=$0x
/ß/ sharp-s
/^日本/ japanese
/^(.)/ first-byte=$1
`,
}

function buildCases(dir: string): DiffCase[] {
  const cases: DiffCase[] = []
  for (const [name, text] of Object.entries(TABLES)) {
    const file = writeTable(path.join(dir, name), text)
    for (const key of KEYS) cases.push({spec: `regexp:${file}`, key})
  }
  cases.push({spec: 'regexp:{ {/^foo$/ inline-foo}, {/bar/ inline-bar} }', key: 'foo'})
  cases.push({spec: 'regexp:{ {/^foo$/ inline-foo}, {/bar/ inline-bar} }', key: 'xbarx'})
  cases.push({spec: 'regexp:{ /^foo$/ inline-foo }', key: 'foo'})
  cases.push({spec: `regexp:${dir}/missing`, key: 'foo'})
  return cases
}

test('regexp lookups match postmap -q', async () => {
  const dir = fs.mkdtempSync(path.join(root, 'tables-'))
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const cases = buildCases(dir)
  const result = await differential(regexpType, cases, config, root)
  console.log(`regexp: ${result.count} cases compared with postmap -q`)
  assert.equal(result.failures.length, 0, `${result.failures.length} mismatches:\n${result.failures.slice(0, 40).join('\n')}`)
  assert.ok(result.count >= 300)
})

test('regexp: thousands of generated patterns and keys match postmap -q -', async () => {
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const dir = fs.mkdtempSync(path.join(root, 'generated-'))
  const tables = generatedTables(posixGrammar, 0x5e9e, 420, 5, 60)
  const result = await bulkDifferential(regexpType, 'regexp', dir, tables, config, root)
  console.log(`regexp: ${result.patterns} generated patterns (${result.compiled} compiled), ${result.lookups} lookups, ${result.hits} hits, same as postmap; ${result.skipped} tables skipped: postmap hangs or crashes on them`)
  assert.equal(result.failures.length, 0, `${result.failures.length} mismatches:\n${result.failures.slice(0, 10).join('\n')}`)
  assert.ok(result.patterns >= 2000 && result.lookups >= 20000 && result.hits >= 2000 && result.skipped <= 5)
})

test('regexp flags, NO_REGSUB, FOLD_MUL and changed()', async () => {
  const config = makeConfig(root, {compatibility_level: '3.6'})
  await checkPatternFlags(regexpType, 'regexp', root, config)
})
