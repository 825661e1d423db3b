// Differential test of pcre: tables against real Postfix 3.7 (PCRE2 10.42): for every
// (table, key) we open the table ourselves with the flags `postmap -q` uses and compare the
// printed value, the warnings and the exit status with a real
// `postmap -c DIR -q KEY pcre:FILE`, with smtputf8_enable on and off; then thousands of
// generated patterns and keys through `postmap -q -`, and a pathological pattern that runs
// into PCRE2's match limit while other lookups are answered.
//
// Run: node --import tsx --test test/differential/pcre.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {pcreType} from '../../src/lib/tables/pcre.js'
import {
  bulkDifferential, checkPatternFlags, differential, generatedTables, makeConfig, openWith, pcreGrammar, useScratchRoot, writeTable,
  type DiffCase,
} from './pattern-helpers.js'

let root: string
useScratchRoot('pmx-pcre-', (dir) => { root = dir })

const KEYS = [
  'user@example.com', 'USER@EXAMPLE.COM', 'User@Example.Com', 'foo', 'FOO', 'Foo', 'bar', 'BAR', 'foobar', 'fooBAR',
  'abcd', 'abbb', 'aab', 'x', '', 'a.b.c', 'a+b', 'hello world', 'Ünïcödé', 'école', 'ÉCOLE', 'É', 'é',
  'straße', 'tab\there', 'a\nb', 'abc\n', 'x{1}', '123', 'a1b2', 'postmaster@sub.example.net', 'a-b_c', '[x]',
  'aaa', 'aaab', 'xxa', 'ab', 'abab', 'root+ext@example.org', '日本語', 'a/b', '$1', 'a.b', 'a\\b', 'AbC',
  'mailer-daemon', 'foo.bar@baz.qux', ' lead', 'nbsp\u00a0x', 'Q.E', 'line1\nline2',
  'abcabc', 'abba', 'xyzzy', '((a))', '(a(b)c)', 'aXa', 'bcd', 'abcd@abcd', 'racecar', 'ABab', 'aaaa', 'a1a1', 'Zz',
]

const TABLES: Record<string, string> = {
  basic: `/^user@example\\.com$/ exact
/foo/ has-foo
/^bar$/ bar
/./ anything
`,
  caseflags: `/^FOO$/ default-icase
/^foo$/i case-sensitive-lower
/^ÉCOLE$/ upper-e
/^école$/ lower-e
/^user/i sensitive-user
/^User/ insensitive-user
/^[A-C]+$/i upper-class
/^\\w+$/i word
`,
  inline: `/^(?-i)foo$/ inline-sensitive
/^(?i)bar$/i inline-insensitive
/^f(?-i:oo)bar$/ scoped-sensitive
/^(?-i)a(?i)b(?-i)c$/ mixed
/^(?-i:(?i)a)B/ nested-opts
/^(?-i)x|(?i)FOO$/ alt-scope
/(a(?i)B|c)D/i group-scope
/^(?^)abc$/ caret-reset
/^(?-s)a.b$/ no-dotall
/^a.b$/ dotall
/^a.b$/s no-dotall-flag
/^(?m)line2$/ multiline
/^line1$/m multiline-flag
/^(?x) f o o  # comment
/ extended
/^a b c$/x extended-flag
/^(?x: b a r )$/ extended-group
/^a(?#comment)b$/ comment
`,
  anchors: `/\\Afoo\\z/ A-z
/^abc\\Z/ Z
/^abc$/E dollar-endonly
/^abc$/ dollar
/\\Gaa/ G
/ab\\Kc/ K
/^bar/A anchored-flag
/ar$/A anchored-flag-2
/\\bfoo\\b/ word-foo
/o\\B/ nonboundary
/^$/ empty
`,
  groups: `/^(?<local>[^@]+)@(?<dom>.+)$/ local=$1 dom=$2
/^(?P<x>f)(?'y'o)(o)$/ $1$2$3
/^(a)|(b)$/ [$1][$2]
/^(?:fo)(o)(bar)?$/ o=$1 bar=\${2} paren=$(2) lit=$$1
/^(?n)(a)(?<k>b)/ k=$1
/^(x)?y$/ opt=$1
`,
  atomic: `/^(?>a+)b$/ atomic-ab
/^(?>a*)a$/ atomic-never
/^x++a$/ possessive
/^x*+x$/ possessive-never
/^(?>fo|foo)bar$/ atomic-alt
/^(?:a|ab)++b$/ possessive-group
/^a?+a$/ possessive-opt
/^a{1,2}+b/ possessive-brace
/^(?>(a+))(b)$/ atomic-groups=$1,$2
`,
  quoting: `/^\\Qa.b\\E$/ quoted-dot
/^Q\\Q.\\EE$/ quoted
/^\\Q[x]/ quoted-to-end
/^a\\.b$/ escaped-dot
/^[\\Q.\\E]$/ class-quoted
/^a\\\\b$/ backslash
/^\\$1$/ dollar-one
`,
  lookaround: `/foo(?=bar)/ lookahead
/foo(?!bar)/ neg-lookahead
/(?<=foo)bar/ lookbehind
/(?<!foo)bar/ neg-lookbehind
/(?<=a|bc)d/ lookbehind-alt
/(?<=^|\\.)b\\./ lookbehind-anchor
/^(?=.*@)(?!.*example)/ has-at-not-example
/(?<=(a|b)(c))d/ lb-groups=$1$2
`,
  escapes: `/^\\d+$/ digits
/^\\D+$/ nondigits
/\\s/ space
/^\\S+$/ nonspace
/\\t/ tab
/^\\w+$/ word
/\\W/ nonword
/\\h/ hspace
/\\v/ vspace
/\\x{41}\\x62c/ hex
/\\101\\142\\143/ octal
/\\o{141}\\0142/ octal2
/^\\N+$/ not-newline
/a\\Rb/ any-newline
/\\cI/ control-i
/\\e|\\a|\\f/ ctl
/^[\\d\\s]+$/ class-escapes
/^[^\\W\\d]+$/ letters
/\\xa0/ nbsp
/^[[:alpha:]]+$/ posix-alpha
/^[[:^alpha:][:digit:]]+$/ posix-neg
/^[[:word:]]+$/ posix-word
/^[[:punct:]]+$/ posix-punct
`,
  quantifiers: `/^a{2}b$/ a2b
/^a{1,}b+$/ a-plus
/^x{1}$/ brace
/^x\\{1\\}$/ literal-brace
/^a{,3}$/ not-quantifier
/^(ab)+$/ repeated=$1
/^(a+?)(a*)$/ lazy=$1/$2
/^(a+)(a*)$/U ungreedy=$1/$2
/^(a+?)(a*)$/U ungreedy-lazy=$1/$2
/^(?U)(a+)(.*)$/ inline-ungreedy=$1/$2
/^.{3}$/ three
/^.{2,3}$/ two-three
/^[^a]*$/ no-a
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
!!/foo/ double-neg
!/x/ $1
/a/!/b/ two-patterns
! /^$/ spaced-neg
`,
  errors: `/a(b/ e1
/a)b/ e2
/*a/ e3
/[ab/ e4
/a\\/ e5
/[b-a]/ e6
/a{3,2}/ e7
/a{70000}/ e8
/\\i/ e9
/(?z)/ e10
/[:alpha:]/ e11
/[[:foo:]]/ e12
/(?<=a+)b/ e13
/(?<=a(b|cd))b/ e14
/[\\d-z]/ e15
/\\c/ e16
/(?#abc/ e17
/(?<1a>x)/ e18
/(?<a>x)(?<a>y)/ e19
/\\x{100}/ e20
/[\\N]/ e21
/[\\R]/ e22
/\\8/ e23
/a**/ e24
/^*/ e25
/a{2}{3}/ e26
/[b-\\x61]/ e27
/[a-\\d]/ e28
/(?<=\\Ka)b/ e29
/(a)\\2/ e30
/x{1,70000}/ e31
/[[.a.]]/ e32
/\\L/ e33
/(?<ab/ e34
/a/z bad-option
/a/X obsolete-x
/no-close
/(a)/ $2
/a/ $x
/a/ \${1
/a/ $
/b/ $0
/(?<n>a)/ $n
/(a)/ \${n?x}
endif
foo bar
if /x/ extra
/x/ inside
/x/
if /y/
/y/ unclosed-if
`,
  backrefs: `/^(a|b)\\1$/ same-twice=$1
/(\\w)\\1/ doubled=$1
/^(?<w>\\w+)@\\k<w>$/ named=$1
/^(?P<p>a)(?P=p)/ python-named=$1
/^(\\w)(\\w)\\g{-1}\\g1$/ relative=$1$2
/^(ab)\\g{1}$/i caseless-backref=$1
`,
  recursion: `/^\\((?:[^()]|(?R))*\\)$/ balanced
/^(a|b(?1)c)$/ subroutine=$1
/^(?<p>.|(.)(?&p)\\2)$/ palindrome=$1
/^(\\w)(?1)(?1)$/ three=$1
/^(?P<n>x)(?P>n)$/ python-call
`,
  conditionals: `/^(a)?(?(1)b|c)d$/ numbered=$1
/^(?<q>")?\\w+(?(q)")$/ named-cond=$1
/^(?(?=a)ab|cd)/ lookahead-cond
/^(?(?<=x)a|b)/ lookbehind-cond
/^(?(R)a|b)/ recursion-cond
/^(?(DEFINE)(?<d>\\d))(?&d)+$/ define
`,
  verbs: `/^a(*COMMIT)b|ac/ commit
/^(*FAIL)|x/ fail
/a+(*SKIP)b|a+c/ skip
/(*MARK:m)z(*PRUNE)z/ mark-prune
/^(*NO_START_OPT)Zz$/ start-opt
/(?C1)XX|xyzzy/ callout
`,
  more: `/^(?|(a)|(b))(\\1)$/ branch-reset=$1/$2
/^\\p{Lu}\\p{Ll}$/ property
/^\\X\\X$/ graphemes
/(?J)(?<n>a)|(?<n>b)/ dupnames=$1
/^(?xx)[a b c]+$/ extended-more
/(?=a)*ab/ quantified-assertion
/^((a)|b)+$/ repeated=$1:$2
/^(a?)*$/ empty-repeat=$1
/^(?:(a)|b)*$/ last-iteration=$1
/^(a|ab)(c|bcd)(d*)$/ leftmost-first=$1/$2/$3
/\\U/ unsupported-escape
/^\\Qa(b\\E(c)$/ quoted-group=$1
`,
  lookbehinds: `/(?<=ab|c)d/ alt-lengths
/(?<=a(?:b|cd))e/ inner-alt
/(?<!^|a)b/ neg-anchor
/(?<=\\d{2})x/ counted
/(?<=(?<=a)b)c/ nested
/(?<=a(?=b)b)c/ lookahead-inside
/(?<=\\Ka)b/ keep-inside
/(?<=a+)b/ variable-length
/(?<=(a))\\1/ captured-then-backref=$1
`,
  utf8: `/^é$/ e-acute
/^..$/ two-bytes
/^[^a-z]+$/ nonascii
/ß/ sharp-s
/^日本/ japanese
/^(.)/ first-byte=$1
/^\\xc3\\xa9$/ e-bytes
`,
}

function buildCases(dir: string): DiffCase[] {
  const cases: DiffCase[] = []
  for (const [name, text] of Object.entries(TABLES)) {
    const file = writeTable(path.join(dir, name), text)
    for (const key of KEYS) cases.push({spec: `pcre:${file}`, key})
  }
  cases.push({spec: 'pcre:{ {/^foo$/ inline-foo}, {/bar/ inline-bar} }', key: 'foo'})
  cases.push({spec: 'pcre:{ {/^foo$/ inline-foo}, {/bar/ inline-bar} }', key: 'xbarx'})
  cases.push({spec: `pcre:${dir}/missing`, key: 'foo'})
  return cases
}

for (const [label, params] of [
  ['smtputf8 on', {compatibility_level: '3.6'}],
  ['smtputf8 off', {compatibility_level: '3.6', smtputf8_enable: 'no'}],
] as const) {
  test(`pcre lookups match postmap -q (${label})`, async () => {
    const confDir = fs.mkdtempSync(path.join(root, 'conf-'))
    const dir = fs.mkdtempSync(path.join(root, 'tables-'))
    const config = makeConfig(confDir, params)
    const cases = buildCases(dir)
    const result = await differential(pcreType, cases, config, confDir)
    console.log(`pcre: ${result.count} cases compared with postmap (${label})`)
    assert.equal(result.failures.length, 0, `${result.failures.length} mismatches:\n${result.failures.slice(0, 40).join('\n')}`)
    assert.ok(result.count >= 500)
  })
}

test('pcre: thousands of generated patterns and keys match postmap -q -', async () => {
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const dir = fs.mkdtempSync(path.join(root, 'generated-'))
  const tables = generatedTables(pcreGrammar, 0x9c7e, 420, 5, 60)
  const result = await bulkDifferential(pcreType, 'pcre', dir, tables, config, root)
  console.log(`pcre: ${result.patterns} generated patterns (${result.compiled} compiled), ${result.lookups} lookups, ${result.hits} hits, same as postmap; ${result.skipped} tables skipped: postmap hangs or crashes on them`)
  assert.equal(result.failures.length, 0, `${result.failures.length} mismatches:\n${result.failures.slice(0, 10).join('\n')}`)
  assert.ok(result.patterns >= 2000 && result.lookups >= 20000 && result.hits >= 2000 && result.skipped <= 5)
})

test('pcre flags, NO_REGSUB, FOLD_MUL, O_RDWR and changed()', async () => {
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const file = await checkPatternFlags(pcreType, 'pcre', root, config)
  await assert.rejects(Promise.resolve().then(() => pcreType.open(file, {
    mode: 'write', dictFlags: 0, config, log: {warning: () => undefined, error: () => undefined, info: () => undefined},
    openNested: () => { throw new Error('unused') },
  })), /requires O_RDONLY/)
})
