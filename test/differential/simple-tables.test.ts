// Differential test of the in-memory table types (texthash, inline, static, fail) against
// real Postfix 3.7: for every (table, key, postmap option) we open the table ourselves with
// the flags `postmap -q` uses, emulate postmap's printing around the lookup, and compare
// stdout, the warning/fatal lines on stderr and the exit status with a real
// `postmap -c DIR [option] -q KEY TYPE:NAME`. Two configurations: smtputf8 on (UTF-8 layer,
// ICU case folding) and smtputf8_enable = no (ASCII folding). Sequences are compared with
// `postmap -s` (as sorted lines: Postfix's hash order is randomised per process).
//
// Run: node --import tsx --test test/differential/simple-tables.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {DICT_FLAG, DICT_FLAG_RQST_MASK} from '../../src/lib/protocol/constants.js'
import type {MainConfig} from '../../src/lib/config/index.js'
import {OpenOptions, Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {texthashType} from '../../src/lib/tables/texthash.js'
import {inlineType} from '../../src/lib/tables/inline.js'
import {staticType} from '../../src/lib/tables/static.js'
import {failType} from '../../src/lib/tables/fail.js'
import {casefoldUtf8, foldKey, isValidUtf8} from '../../src/lib/tables/fold.js'
import {POSTMAP, requirePostfix} from '../helpers/postfix.js'
import {collectingLog, concurrencyLimit, makeConfigDirs, printable} from './table-helpers.js'

const TYPES: Record<string, TableType> = {
  texthash: texthashType, inline: inlineType, static: staticType, fail: failType,
}

// ------------------------------------------------------------------------------ fixtures

/** Byte strings are written as JS strings of UTF-8 text; `bin` marks raw bytes. */
const b = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')

let root: string
const configs: {name: string; dir: string; config: MainConfig; utf8: boolean}[] = []

function writeBinary(file: string, content: string): string {
  fs.writeFileSync(file, Buffer.from(content, 'latin1'))
  const t = Date.now() / 1000 - 10 // Postfix re-reads files modified in the last ~2 s
  fs.utimesSync(file, t, t)
  return file
}

// -------------------------------------------------------------------------- the emulation

/** What one postmap run printed: stdout bytes, stderr lines without "postmap: ", status. */
interface Outcome {
  stdout: string
  stderr: string[]
  status: number
}

/** postmap's -f/-r/-w/-u/-F options as dict flags (postmap.c main()). */
function postmapFlags(options: readonly string[]): number {
  let flags = DICT_FLAG.DUP_WARN | DICT_FLAG.FOLD_FIX | DICT_FLAG.UTF8_REQUEST
  for (const o of options) {
    if (o === '-f') flags &= ~DICT_FLAG.FOLD_FIX
    if (o === '-r') flags = (flags & ~(DICT_FLAG.DUP_WARN | DICT_FLAG.DUP_IGNORE)) | DICT_FLAG.DUP_REPLACE
    if (o === '-w') flags = (flags & ~(DICT_FLAG.DUP_WARN | DICT_FLAG.DUP_REPLACE)) | DICT_FLAG.DUP_IGNORE
    if (o === '-u') flags &= ~DICT_FLAG.UTF8_REQUEST
    if (o === '-F') flags |= DICT_FLAG.SRC_RHS_IS_FILE
  }
  return flags | DICT_FLAG.LOCK
}

async function openOurs(spec: string, flags: number, config: MainConfig, lines: string[]): Promise<Table> {
  const colon = spec.indexOf(':')
  const type = TYPES[spec.slice(0, colon)]
  const options: OpenOptions = {
    mode: 'read', dictFlags: flags, config, log: collectingLog(lines),
    openNested: () => { throw new Error('unused') },
  }
  return type.open(spec.slice(colon + 1), options)
}

function queryError(table: Table, err: unknown): string {
  if (!(err instanceof TableError)) throw err
  // postmap: DICT_ERR_CONFIG -> "query error", anything else -> "query error: %m"
  return `fatal: table ${table.type}:${table.name}: query error${err.kind === 'config' ? '' : ': %m'}`
}

/** Open as postmap does; a table that fails to open is fatal (dict_allow_surrogate = 0). */
async function openOrFatal(spec: string, flags: number, config: MainConfig, lines: string[]): Promise<Table | undefined> {
  try {
    return await openOurs(spec, flags, config, lines)
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    lines.push(`fatal: ${err.message}`)
    return undefined
  }
}

/** Our side of `postmap [options] -q KEY SPEC` (postmap_query()). */
async function ourQuery(spec: string, key: string, options: readonly string[], cfg: typeof configs[0]): Promise<Outcome> {
  const lines: string[] = []
  const flags = postmapFlags(options)
  const done = (stdout: string, status: number): Outcome =>
    ({stdout, stderr: lines.map((l) => printable(l, cfg.utf8)), status})
  const table = await openOrFatal(spec, flags, cfg.config, lines)
  if (!table) return done('', 1)
  let value: string | undefined
  try {
    value = await table.lookup(key)
  } catch (err) {
    lines.push(queryError(table, err))
    return done('', 1)
  }
  if (value === undefined) return done('', 1)
  if (value === '') {
    lines.push(`warning: table ${spec}: key ${key}: empty string result is not allowed`)
    lines.push(`warning: table ${spec} should return NO RESULT in case of NOT FOUND`)
  }
  if (flags & DICT_FLAG.SRC_RHS_IS_FILE) value = Buffer.from(value, 'base64').toString('latin1')
  return done(`${value}\n`, 0)
}

/** Our side of `postmap [options] -s SPEC` (postmap_seq()), stdout lines and stderr sorted. */
async function ourSequence(spec: string, options: readonly string[], cfg: typeof configs[0]): Promise<Outcome> {
  const lines: string[] = []
  const flags = postmapFlags(options)
  const table = await openOrFatal(spec, flags, cfg.config, lines)
  if (!table) return {stdout: '', stderr: lines.map((l) => printable(l, cfg.utf8)), status: 1}
  const out: string[] = []
  let status = 0
  if (!table.sequence) {
    lines.push(`fatal: table ${table.type}:${table.name}: sequence operation is not supported`)
    status = 1
  } else {
    const cursor = {}
    try {
      for (let entry = await table.sequence('first', cursor); entry; entry = await table.sequence('next', cursor)) {
        const [k, v] = entry
        if (k === '') {
          lines.push(`warning: table ${spec}: empty lookup key value is not allowed`)
        } else if (v === '') {
          lines.push(`warning: table ${spec}: key ${k}: empty string result is not allowed`)
          lines.push(`warning: table ${spec} should return NO RESULT in case of NOT FOUND`)
        }
        out.push(`${k}\t${flags & DICT_FLAG.SRC_RHS_IS_FILE ? Buffer.from(v, 'base64').toString('latin1') : v}\n`)
      }
    } catch (err) {
      if (!(err instanceof TableError)) throw err
      lines.push(`fatal: table ${table.type}:${table.name}: sequence error: %m`)
      status = 1
    }
  }
  return {stdout: sortedLines(out.join('')), stderr: lines.map((l) => printable(l, cfg.utf8)).sort(), status}
}

/** A sequence's output in an order-independent form (values may span lines with -F). */
function sortedLines(stdout: string): string {
  return stdout.split('\n').filter((l) => l.length > 0).map((l) => `${l}\n`).sort().join('')
}

// ----------------------------------------------------------------------- the real thing

/** printf %b argument that reproduces `bytes` exactly (argv cannot carry non-UTF-8 text). */
function shellBytes(bytes: string): string {
  let out = ''
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i)
    if (c === 0x5c) out += '\\\\'
    else if (c < 0x20 || c >= 0x7f) out += '\\0' + c.toString(8).padStart(3, '0')
    else out += bytes[i]
  }
  return out
}

// Many runs end in a fatal error, after which Postfix's msg_fatal() sleeps one second:
// run plenty in parallel, they mostly sleep.
const limit = concurrencyLimit(40)

/** Run postmap with byte-exact KEY and SPEC; returns its output as Outcome. */
function realPostmap(cfg: typeof configs[0], options: readonly string[], mode: '-q' | '-s', spec: string, key = ''): Promise<Outcome> {
  // Text that is valid UTF-8 survives argv as is; other bytes go through printf.
  const direct = isValidUtf8(key) && isValidUtf8(spec)
  const script = mode === '-q'
    ? 'k=$(printf %b "$1"); s=$(printf %b "$2"); shift 2; exec "$0" "$@" -q "$k" "$s"'
    : 's=$(printf %b "$2"); shift 2; exec "$0" "$@" -s "$s"'
  const text = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')
  const [file, args] = direct
    ? [POSTMAP, ['-c', cfg.dir, ...options, ...(mode === '-q' ? ['-q', text(key)] : ['-s']), text(spec)]]
    : ['/bin/sh', ['-c', script, POSTMAP, shellBytes(key), shellBytes(spec), '-c', cfg.dir, ...options]]
  return limit(() => new Promise((resolve, reject) => {
    execFile(file, args,
      {encoding: 'buffer', timeout: 60_000, maxBuffer: 256 << 20}, (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0
        if (status < 0) return reject(err)
        let lines = stderr.toString('latin1').split('\n').filter((l) => l.length > 0)
          .map((l) => l.replace(/^postmap: /, ''))
          .map((l) => l.replace(/^(fatal: table .*: (?:query|sequence) error): .*$/, '$1: %m'))
        let out = stdout.toString('latin1')
        if (mode === '-s') {
          out = sortedLines(out)
          lines = lines.sort()
        }
        resolve({stdout: out, stderr: lines, status})
      })
  }))
}

// ----------------------------------------------------------------------------- corpus

interface Case {
  type: string
  spec: string
  keys: string[]
  variants: string[][]
  sequence?: boolean
}

// postmap options: -f no FOLD_FIX, -r DUP_REPLACE, -w DUP_IGNORE, -u no UTF8_REQUEST.
const ALL_VARIANTS: string[][] = [[], ['-f'], ['-r'], ['-w'], ['-u']]
const FOLD_VARIANTS: string[][] = [[], ['-f'], ['-u']]
const PLAIN: string[][] = [[]]

/** Keys worth asking every table: absent, non-UTF-8, non-ASCII capital. */
const PROBE_KEYS = ['missing', '\xff', b('É')]

function buildCorpus(dir: string): Case[] {
  const f = (name: string, content: string): string => writeBinary(path.join(dir, name), content)
  const rhs1 = f('rhs1', 'first file\nline two\n')
  const rhs2 = f('rhs2', b('zwei \u00e9\n'))
  const cases: Case[] = []
  const texthash = (name: string, content: string, keys: string[], variants = PLAIN): void => {
    cases.push({type: 'texthash', spec: `texthash:${f(name, content)}`, keys: [...keys, ...PROBE_KEYS], variants, sequence: true})
  }

  texthash('basic', [
    '# a comment',
    'Key1\tValue One  ',
    'key2   value with   spaces\t',
    'UPPER LOWER upper',
    '',
    'cont first part',
    '  second part',
    '',
    '\tthird part after a blank line',
    '  # an indented comment does not end it',
    '  fourth part',
    'hash value # not a comment',
    'crlf value\r',
    'alias: looks like aliases',
    'lonely',
    '"quoted key" quoted value',
    'back\\ slash escaped space',
    'tab\there',
    'last no newline',
  ].join('\n'), ['Key1', 'key1', 'key2', 'upper', 'UPPER', 'cont', 'hash', 'crlf', 'alias:', 'lonely',
    '"quoted key"', '"QUOTED KEY"', '"quoted', 'back\\ slash', 'tab', 'last', 'second'], [[], ['-f']])
  texthash('dups', 'Dup first\ndup second\nDUP third\nsame 1\nsame 2\nother x\n',
    ['dup', 'Dup', 'DUP', 'same', 'other'], ALL_VARIANTS)
  texthash('utf8', b([
    'İx dotted capital I',
    'École school',
    'Straße street',
    'STRASSE shouty street',
    'Σίσυφος sisyphus',
    'ﬁn ligature',
    'ꭰ cherokee small',
    'ı dotless',
    'ẞ capital sharp s',
    'Ǆ dz digraph',
    'Ω ohm sign',
    'value ünïcödé välue',
  ].join('\n')) + '\nbad\xffkey latin1 key\nlatin1 caf\xe9 value\n\xc3\x28 broken\n',
  [b('i̇x'), b('İX'), 'ix', b('école'), b('STRASSE'), 'strasse', b('ΣΊΣΥΦΟΣ'), b('σίσυφοσ'), 'FIN', b('Ꭰ'),
    b('ı'), 'I', 'ss', b('ǅ'), b('ω'), 'value', 'bad\xffkey', 'latin1'], FOLD_VARIANTS)
  texthash('empty', '', [])
  texthash('comments-only', '# one\n\n   \n\t# two\n#three', ['#'])
  texthash('leading-ws', '  starts with space\n\tand continues\nk v\n', ['starts', 'k'])
  texthash('unbalanced', '"open quote value\nk v\n"a b"c d e\n', ['"open', 'k', '"a b"c'])
  texthash('nul', 'a\0b c\nd\0 e\nf g\0h\n', ['a', 'd', 'f'])
  texthash('no-value-only', 'lonely\n   \nalso-lonely   \n', ['lonely'])
  cases.push({type: 'texthash', spec: `texthash:${dir}/does-not-exist`, keys: ['a'], variants: PLAIN})
  cases.push({type: 'texthash', spec: `texthash:${dir}`, keys: ['a'], variants: PLAIN})
  cases.push({
    type: 'texthash', spec: `texthash:${f('rhs', `one ${rhs1}\ntwo ${rhs1},${rhs2}\nthree ${dir}/nope\nFour ${rhs2}\n`)}`,
    keys: ['one', 'two', 'three', 'four'], variants: [['-F']], sequence: true,
  })

  // Specs that fail to open need one key; the others get the probes too.
  const inline = (spec: string, keys: string[] = [], variants = PLAIN): void => {
    cases.push({type: 'inline', spec: `inline:${spec}`, keys: keys.length ? [...keys, ...PROBE_KEYS] : ['a'], variants, sequence: true})
  }
  inline('{a=b}', ['a', 'A'], FOLD_VARIANTS)
  inline('{ a = b }')
  inline('{a=b, c=d}', ['a', 'c'])
  inline('{a=b c=d,,e=f}', ['c', 'e'])
  inline('{ {a = b c}, d=e }', ['a', 'd'])
  inline('{ {a=b}x }')
  inline('{}')
  inline('{ }')
  inline('{ , }')
  inline('{a=b')
  inline('{a=b}}')
  inline('x{a=b}')
  inline('{A=upper, a=lower}', ['a', 'A'], FOLD_VARIANTS)
  inline('{a=lower, A=upper}', ['a', 'A'], FOLD_VARIANTS)
  inline('{"a b"=c}')
  inline('{ {"a b" = c} }', ['"a b"', '"A B"'])
  inline('{a==b, key=x=y}', ['a', 'key'])
  inline('{=b}', ['', 'b'])
  inline('{a=}', ['a'])
  inline('{ {a=b} }', ['a'])
  inline('{{a=b}}', ['a'])
  inline('{ {} }')
  inline('{ {a=b} {c=d} }', ['c'])
  inline('{a\\=b=c}', ['a\\=b', 'a\\'])
  inline(b('{é=1, İ=2, Straße=3, ß=4}'), [b('i̇'), b('STRASSE'), b('straße'), 'ss'], FOLD_VARIANTS)
  inline('{\xff=latin1, a=b}', ['a'])
  inline('{a=caf\xe9}', ['a'])
  inline('{ { a = b } , { c = d } }', ['c'])
  cases.push({type: 'inline', spec: `inline:{k1=${rhs1}, k2=${rhs1},${rhs2}}`, keys: ['k1', 'k2'], variants: [['-F']], sequence: true})
  cases.push({type: 'inline', spec: `inline:{ {k1=${rhs1} ${rhs2}} }`, keys: ['k1'], variants: [['-F']], sequence: true})
  cases.push({type: 'inline', spec: `inline:{k1=${dir}/nope}`, keys: ['k1'], variants: [['-F']]})

  const stat = (spec: string, variants = PLAIN, sequence = false): void => {
    cases.push({type: 'static', spec: `static:${spec}`, keys: ['anything', ...PROBE_KEYS], variants, sequence})
  }
  stat('foo', FOLD_VARIANTS)
  stat('Foo Bar')
  stat('{ text with spaces }')
  stat('{}')
  stat('{ }', PLAIN, true)
  stat('{ a } b')
  stat('{ a')
  stat('a}')
  stat('a { b }')
  stat('{{a}}')
  stat('{ {a} {b} }')
  stat('x,y = z')
  stat(b('{ Ünïcödé }'))
  stat('caf\xe9', FOLD_VARIANTS)
  cases.push({type: 'static', spec: `static:${rhs1}`, keys: ['k'], variants: [['-F']]})
  cases.push({type: 'static', spec: `static:{ ${rhs1}, ${rhs2} }`, keys: ['k'], variants: [['-F']]})
  cases.push({type: 'static', spec: `static:${dir}/nope`, keys: ['k'], variants: [['-F']]})

  const fail = (spec: string): void => {
    cases.push({type: 'fail', spec: `fail:${spec}`, keys: ['a', b('é'), '\xff', 'x\xc3'], variants: [[], ['-u']], sequence: true})
  }
  fail('foo')
  fail('{ x }')
  fail(b('dé'))
  return cases
}

// ------------------------------------------------------------------------------ tests

before(() => {
  requirePostfix() // real Postfix is required: missing means FAIL, not skip
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'pmx-simple-'))
  for (const c of makeConfigDirs(root, writeBinary))
    configs.push({name: c.name, dir: c.dir, config: c.config, utf8: !('smtputf8_enable' in c.params)})
})

after(() => {
  if (root) fs.rmSync(root, {recursive: true, force: true})
})

function describe(cfg: typeof configs[0], options: readonly string[], what: string): string {
  return `[${cfg.name}${options.length ? ' ' + options.join(' ') : ''}] ${what}`
}

test('lookups and sequences match postmap -q / -s', async () => {
  const corpus = buildCorpus(fs.mkdtempSync(path.join(root, 'corpus-')))
  const counts: Record<string, number> = {}
  const failures: string[] = []
  const jobs: Promise<void>[] = []
  const compare = (type: string, label: string, ours: Outcome, real: Outcome): void => {
    counts[type] = (counts[type] ?? 0) + 1
    try {
      assert.deepEqual(ours, real)
    } catch {
      failures.push(`${label}\n  ours: ${JSON.stringify(ours)}\n  real: ${JSON.stringify(real)}`)
    }
  }
  for (const cfg of configs) {
    for (const c of corpus) {
      for (const options of c.variants) {
        for (const key of new Set(c.keys)) {
          jobs.push((async () => {
            const [ours, real] = await Promise.all([ourQuery(c.spec, key, options, cfg), realPostmap(cfg, options, '-q', c.spec, key)])
            compare(c.type, describe(cfg, options, `-q ${JSON.stringify(key)} ${JSON.stringify(c.spec)}`), ours, real)
          })())
        }
        if (c.sequence) {
          jobs.push((async () => {
            const [ours, real] = await Promise.all([ourSequence(c.spec, options, cfg), realPostmap(cfg, options, '-s', c.spec)])
            compare(c.type, describe(cfg, options, `-s ${JSON.stringify(c.spec)}`), ours, real)
          })())
        }
      }
    }
  }
  await Promise.all(jobs)
  for (const [type, n] of Object.entries(counts)) console.log(`${type}: ${n} cases compared with postmap`)
  assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.slice(0, 30).join('\n')}`)
  for (const type of Object.keys(TYPES)) assert.ok((counts[type] ?? 0) >= 24, `too few ${type} cases`)
})

test('UTF-8 case folding matches Postfix (ICU) for every code point', async () => {
  // One texthash line per code point U+0080..U+10FFFF (surrogates have no UTF-8 form), made
  // unique with a suffix; `postmap -s` prints the keys as Postfix's casefold() stored them.
  // Our load must store the same keys.
  const lines: string[] = []
  for (let cp = 0x80; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue
    lines.push(`${String.fromCodePoint(cp)}_${cp.toString(16)} ${cp.toString(16)}`)
  }
  const file = writeBinary(path.join(root, 'all-code-points'), b(lines.join('\n') + '\n'))
  const cfg = configs[0]
  const real = await realPostmap(cfg, [], '-s', `texthash:${file}`)
  assert.equal(real.status, 0)
  assert.deepEqual(real.stderr, [])
  const ours = await ourSequence(`texthash:${file}`, [], cfg)
  assert.equal(ours.stdout.length, real.stdout.length)
  assert.ok(ours.stdout === real.stdout, 'folded keys differ from Postfix')
  console.log(`fold: ${lines.length} code points compared with postmap -s`)
})

test('fold helpers', () => {
  assert.equal(foldKey('MiXeD.Example', false), 'mixed.example')
  assert.equal(foldKey(b('ÉCOLE'), false), b('École')) // lowercase(): ASCII only
  assert.equal(foldKey(b('ÉCOLE'), true), b('école'))
  assert.equal(casefoldUtf8(b('Straße')), 'strasse')
  assert.equal(casefoldUtf8('A\xffB'), 'a\xffb') // malformed bytes pass unchanged
  assert.equal(isValidUtf8('\xed\xa0\x80'), false) // surrogate
  assert.equal(isValidUtf8('\xc0\xaf'), false) // over-long
  assert.equal(isValidUtf8(b('\u{10ffff}')), true)
})

test('proxymap-style open (flags 0): duplicates make texthash unavailable, keys stay unfolded', async () => {
  // Not differential: postmap cannot open without DUP_* flags. The message is the one
  // postmap prints as a warning with DUP_WARN (compared above); Postfix source:
  // dict_thash.c returns dict_surrogate() with that text when no DUP_* flag is set.
  const dir = fs.mkdtempSync(path.join(root, 'proxy-'))
  const dups = writeBinary(path.join(dir, 'dups'), 'Key a\nkey b\n')
  const lines: string[] = []
  const cfg = configs[0]
  // Without FOLD_FIX "Key" and "key" are different keys: no duplicate.
  const t = await openOurs(`texthash:${dups}`, 0, cfg.config, lines)
  assert.equal(t.flags, DICT_FLAG.FIXED)
  // The server merges each request's flags in, as proxymap.c does. smtputf8 clients fold
  // the key themselves and send 524353; "Key" can then never be found.
  const merge = (request: number): void => {
    t.flags = (t.flags & ~DICT_FLAG_RQST_MASK) | (request & DICT_FLAG_RQST_MASK)
  }
  merge(524353)
  assert.equal(await t.lookup('key'), 'b')
  assert.equal(await t.lookup('Key'), 'a')
  // smtputf8_enable=no clients send 540737 (+FOLD_FIX) and the raw key: the table
  // lowercase()s it (ASCII only: the UTF-8 layer was not activated at open).
  merge(540737)
  assert.equal(await t.lookup('KEY'), 'b')
  assert.equal(await t.lookup('Key'), 'b')
  assert.equal(t.flags, DICT_FLAG.FIXED | 540737)

  const same = writeBinary(path.join(dir, 'same'), 'k a\nk b\n')
  await assert.rejects(openOurs(`texthash:${same}`, 0, cfg.config, lines),
    (err: unknown) => err instanceof TableError && err.message === `${same}, line 2: duplicate entry: "k"`)
  await assert.rejects(openOurs(`texthash:${dups}`, DICT_FLAG.FOLD_FIX, cfg.config, lines),
    (err: unknown) => err instanceof TableError && err.message === `${dups}, line 2: duplicate entry: "key"`)
  assert.deepEqual(lines, [])

  // proxywrite opens O_RDWR: texthash and inline refuse, static and fail accept.
  const write = {mode: 'write' as const, dictFlags: 0, config: cfg.config, log: collectingLog(lines),
    openNested: () => { throw new Error('unused') }}
  await assert.rejects(Promise.resolve().then(() => texthashType.open(dups, write)),
    (err: unknown) => err instanceof TableError && err.message === `texthash:${dups} map requires O_RDONLY access mode`)
  await assert.rejects(Promise.resolve().then(() => inlineType.open('{a=b}', write)),
    (err: unknown) => err instanceof TableError && err.message === 'inline:{a=b} map requires O_RDONLY access mode')
  const s = await staticType.open('x', write)
  assert.equal(s.update, undefined)
  assert.equal(s.flags, DICT_FLAG.FIXED)
  const fl = await failType.open('x', write)
  assert.equal(fl.flags, DICT_FLAG.PATTERN)
  assert.throws(() => fl.update?.('a', 'b'), (err: unknown) => err instanceof TableError && err.kind === 'retry')
  assert.equal((await failType.open('x', {...write, mode: 'read'})).update, undefined)
})

test('flags reported at open', async () => {
  const cfg = configs[0]
  const lines: string[] = []
  const file = writeBinary(path.join(root, 'flags'), 'a b\n')
  const req = DICT_FLAG.UTF8_REQUEST | DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN
  const expect = async (spec: string, flags: number, want: number, config = cfg.config): Promise<void> =>
    assert.equal((await openOurs(spec, flags, config, lines)).flags, want, spec)
  await expect(`texthash:${file}`, 0, DICT_FLAG.FIXED)
  await expect(`texthash:${file}`, req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect(`texthash:${file}`, req, req | DICT_FLAG.FIXED, configs[1].config) // smtputf8_enable = no
  await expect('inline:{a=b}', 0, DICT_FLAG.FIXED)
  await expect('inline:{a=b}', req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect('static:x', 0, DICT_FLAG.FIXED)
  await expect('static:x', req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect('fail:x', 0, DICT_FLAG.PATTERN)
  await expect('fail:x', req, req | DICT_FLAG.PATTERN | DICT_FLAG.UTF8_ACTIVE)
})

test('texthash changed() and sequence cursors', async () => {
  const cfg = configs[0]
  const lines: string[] = []
  const file = writeBinary(path.join(root, 'changing'), 'a 1\nb 2\nc 3\n')
  const t = await openOurs(`texthash:${file}`, 0, cfg.config, lines)
  assert.equal(t.changed?.(), false)
  const one = {}
  const two = {}
  assert.deepEqual(await t.sequence?.('next', one), undefined) // next before first ends
  assert.deepEqual(await t.sequence?.('first', one), ['a', '1'])
  assert.deepEqual(await t.sequence?.('first', two), ['a', '1'])
  assert.deepEqual(await t.sequence?.('next', one), ['b', '2'])
  assert.equal(await t.delete?.('c'), true)
  assert.equal(await t.delete?.('c'), false)
  assert.deepEqual(await t.sequence?.('next', one), undefined)
  assert.deepEqual(await t.sequence?.('next', two), ['b', '2'])
  writeBinary(file, 'a 1\nb 2\nc 4\n')
  assert.equal(t.changed?.(), true)
  fs.rmSync(file)
  assert.equal(t.changed?.(), true)
})
