// Differential test of unix:, environ:, unionmap:, pipemap: and randmap: against real
// Postfix 3.7: for every (table, key, postmap option) we open the table ourselves with the
// flags `postmap -q` uses (postmapQueryFlags, adjusted for -f/-u/-F), emulate postmap's
// printing around the lookup, and compare stdout, the warning/fatal lines on stderr and the
// exit status with a real `postmap -c DIR [option] -q KEY TYPE:NAME`.
//
// Nested tables are opened as postmap opens them: a nested table that fails to open is
// fatal (no surrogates), so our openNested throws the nested reason and the top level
// prints it as `fatal:`. randmap answers at random: results are compared as membership of
// the value list (both sides), everything else exactly.
//
// environ: postmap sees its caller's environment plus import_environment's name=value
// settings (update_env(); no clean_env()) and MAIL_CONFIG from -c. We give postmap our own
// process.env, after adding test variables to it.
//
// Run: node --import tsx --test test/differential/composite-tables.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import type {MainConfig} from '../../src/lib/config/index.js'
import {OpenOptions, Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import {SurrogateTable} from '../../src/lib/tables/surrogate.js'
import {texthashType} from '../../src/lib/tables/texthash.js'
import {inlineType} from '../../src/lib/tables/inline.js'
import {staticType} from '../../src/lib/tables/static.js'
import {failType} from '../../src/lib/tables/fail.js'
import {regexpType} from '../../src/lib/tables/regexp.js'
import {cidrType} from '../../src/lib/tables/cidr.js'
import {unixType} from '../../src/lib/tables/unix.js'
import {environType} from '../../src/lib/tables/environ.js'
import {unionmapType} from '../../src/lib/tables/unionmap.js'
import {pipemapType} from '../../src/lib/tables/pipemap.js'
import {randmapType} from '../../src/lib/tables/randmap.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {backdate, POSTMAP, requirePostfix, runCommand} from '../helpers/postfix.js'
import {collectingLog, concurrencyLimit, printable} from './table-helpers.js'

const TYPES: Record<string, TableType> = {
  texthash: texthashType, inline: inlineType, static: staticType, fail: failType, regexp: regexpType,
  cidr: cidrType, unix: unixType, environ: environType, unionmap: unionmapType, pipemap: pipemapType,
  randmap: randmapType,
}
const UNDER_TEST = ['unix', 'environ', 'unionmap', 'pipemap', 'randmap']

// ------------------------------------------------------------------------------ fixtures

/** Text (UTF-8) to a Postfix byte string and back. */
const bin = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')
const txt = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')

interface Cfg {
  name: string
  dir: string
  config: MainConfig
  utf8: boolean
}

let root: string
const configs: Cfg[] = []

function makeConfig(dir: string, params: Record<string, string>): MainConfig {
  return {
    configDir: dir,
    get: (name) => params[name] ?? '',
    raw: (name) => params[name],
    isSet: (name) => name in params,
  }
}

async function writeFile(file: string, content: string): Promise<string> {
  fs.writeFileSync(file, content)
  await backdate(file) // Postfix re-reads files modified in the last ~2 s
  return file
}

/** Variables added to our environment, which postmap inherits. */
const TEST_ENV: Record<string, string> = {
  PMX_UPPER: 'Upper Value',
  pmx_lower: 'lower value',
  pmx_empty: '',
  pmx_mixed_Case: 'mixed',
  'pmx_é': 'accented name',
  pmx_utf8: 'Ünïcödé välue',
  pmx_commas: 'a, b ,c',
  LANG: 'en_US.UTF-8', // postmap's import_environment default sets LANG=C
}

// -------------------------------------------------------------------------- the emulation

interface Outcome {
  stdout: string
  stderr: string[]
  status: number
}

/** postmap's -f/-u/-F options applied to the -q flags (postmap.c main()). */
function postmapFlags(options: readonly string[]): number {
  let flags = postmapQueryFlags(!options.includes('-f'))
  if (options.includes('-u')) flags &= ~DICT_FLAG.UTF8_REQUEST
  if (options.includes('-F')) flags |= DICT_FLAG.SRC_RHS_IS_FILE
  return flags
}

/** Open as postmap's dict_open() does, nested tables included: failures throw. */
async function openOurs(spec: string, flags: number, config: MainConfig, lines: string[]): Promise<Table> {
  const colon = spec.indexOf(':')
  if (colon <= 0 || colon === spec.length - 1)
    throw new TableError('config', `open dictionary: expecting "type:name" form instead of "${spec}"`)
  const type = TYPES[spec.slice(0, colon)]
  if (!type) throw new TableError('config', `unsupported dictionary type: ${spec.slice(0, colon)}`)
  const options: OpenOptions = {
    mode: 'read', dictFlags: flags, config, log: collectingLog(lines),
    openNested: (nested, o) => openOurs(nested, o.dictFlags, o.config, lines),
  }
  return type.open(spec.slice(colon + 1), options)
}

/** Our side of `postmap [options] -q KEY SPEC` (postmap_query()); KEY and SPEC are text. */
async function ourQuery(spec: string, key: string, options: readonly string[], cfg: Cfg): Promise<Outcome> {
  const lines: string[] = []
  const flags = postmapFlags(options)
  const done = (stdout: string, status: number): Outcome =>
    ({stdout: txt(stdout), stderr: lines.map((l) => txt(printable(l, cfg.utf8))), status})
  let table: Table
  try {
    table = await openOurs(bin(spec), flags, cfg.config, lines)
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    lines.push(`fatal: ${err.message}`)
    return done('', 1)
  }
  let value: string | undefined
  try {
    value = await table.lookup(bin(key))
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    // postmap: DICT_ERR_CONFIG -> "query error", anything else -> "query error: %m"
    lines.push(`fatal: table ${table.type}:${table.name}: query error${err.kind === 'config' ? '' : ': %m'}`)
    return done('', 1)
  }
  if (value === undefined) return done('', 1)
  if (value === '') {
    lines.push(`warning: table ${bin(spec)}: key ${bin(key)}: empty string result is not allowed`)
    lines.push(`warning: table ${bin(spec)} should return NO RESULT in case of NOT FOUND`)
  }
  if (flags & DICT_FLAG.SRC_RHS_IS_FILE) value = Buffer.from(value, 'base64').toString('latin1')
  return done(`${value}\n`, 0)
}

// ----------------------------------------------------------------------- the real thing

const limit = concurrencyLimit(40)

async function realQuery(spec: string, key: string, options: readonly string[], cfg: Cfg): Promise<Outcome> {
  const r = await limit(() => runCommand(POSTMAP, ['-c', cfg.dir, ...options, '-q', key, spec],
    {env: process.env, timeoutMs: 60_000}))
  if (r.timedOut) throw new Error(`postmap -q ${key} ${spec} timed out`)
  const stderr = r.stderr.split('\n').filter((l) => l.length > 0)
    .map((l) => l.replace(/^postmap: /, ''))
    .map((l) => l.replace(/^(fatal: table .*: query error): .*$/, '$1: %m'))
  return {stdout: r.stdout, stderr, status: r.code}
}

// ----------------------------------------------------------------------------- corpus

interface Case {
  type: string
  spec: string
  keys: string[]
  variants: string[][]
  /** randmap: the values a lookup may answer. */
  oneOf?: string[]
  /** Only under these configurations (default: all but 'import-env'). */
  configs?: string[]
}

const PLAIN: string[][] = [[]]
const FOLD_VARIANTS: string[][] = [[], ['-f'], ['-u']]

async function buildCorpus(dir: string): Promise<Case[]> {
  const f = (name: string, content: string): Promise<string> => writeFile(path.join(dir, name), content)
  const t1 = await f('t1', 'alpha one\nBeta two\nshared t1-shared\nempty-next\nchain beta\nmixed Alpha\n')
  const t2 = await f('t2', 'alpha uno\nshared t2-shared\ngamma tres\nbeta dos\ntwo zwei\n')
  const re = await f('re', '/^(.*)@example\\.com$/ user-$1\n/^beta$/ re-beta\n/^ALP/ re-alp\n/^one$/ re-one\n/^dos$/ re-dos\n')
  const cidr = await f('cidr', '192.168.0.0/16 private\n10.0.0.0/8 ten\n')
  const rhs1 = await f('rhs1', 'first file\nline two\n')
  const rhs2 = await f('rhs2', 'zwei \u00e9\n')
  const cases: Case[] = []
  const add = (type: string, spec: string, keys: string[], variants = PLAIN, extra: Partial<Case> = {}): void => {
    cases.push({type, spec, keys, variants, ...extra})
  }

  // unix:
  const users = ['root', 'ROOT', 'Root', 'nobody', 'daemon', 'postfix', 'mail', 'www-data', 'no-such-user-x',
    '', '0', '65534', ' root', 'root ', 'root:x', '-x', '--', 'É', 'é', 'r*']
  add('unix', 'unix:passwd.byname', users, FOLD_VARIANTS)
  const groups = ['root', 'ROOT', 'ssl-cert', 'nogroup', 'postfix', 'postdrop', 'mail', 'adm', 'tty', 'users',
    'no-such-group-x', '', '0', '65534', '-x', 'É']
  add('unix', 'unix:group.byname', groups, FOLD_VARIANTS)
  for (const bad of ['passwd', 'passwd.byuid', 'PASSWD.BYNAME', 'group.bygid', 'passwd.byname ', '{passwd.byname}'])
    add('unix', `unix:${bad}`, ['root'])

  // environ:
  const envKeys = ['PMX_UPPER', 'pmx_upper', 'pmx_lower', 'PMX_LOWER', 'pmx_empty', 'pmx_mixed_Case',
    'pmx_mixed_case', 'pmx_é', 'PMX_É', 'pmx_utf8', 'pmx_commas', 'LANG', 'lang', 'MAIL_CONFIG', 'mail_config',
    'HOME', 'PATH', 'no_such_variable', '', 'A=B', 'PMX_UPPER=x', 'PMX_SET', 'PMX_SPACE', 'TZ']
  add('environ', 'environ:anything', envKeys, FOLD_VARIANTS, {configs: ['smtputf8', 'no-smtputf8', 'import-env']})
  add('environ', 'environ:{ odd name }', ['PMX_UPPER', 'pmx_lower'], [['-f']])

  // unionmap:
  const probe = ['missing', 'É', 'é']
  add('unionmap', `unionmap:{texthash:${t1}, texthash:${t2}}`,
    ['alpha', 'ALPHA', 'beta', 'Beta', 'shared', 'gamma', 'empty-next', 'chain', ...probe], FOLD_VARIANTS)
  add('unionmap', 'unionmap:{inline:{a=1, b=2}, inline:{a=3, c=4}, static:S}', ['a', 'A', 'b', 'c', 'd', ...probe], FOLD_VARIANTS)
  add('unionmap', `unionmap:{ inline:{a=1}  regexp:${re} }`, ['a', 'A', 'beta', 'x@example.com', 'X@EXAMPLE.COM', 'alp', ...probe], FOLD_VARIANTS)
  add('unionmap', `unionmap:{regexp:${re}, inline:{Alp=inline-alp}}`, ['alp', 'ALP', 'Alp', 'beta', ...probe], FOLD_VARIANTS)
  add('unionmap', 'unionmap:{inline:{a=}, inline:{a=x}}', ['a', 'b'])
  add('unionmap', 'unionmap:{inline:{a=x}, inline:{a=}}', ['a', 'b'])
  add('unionmap', 'unionmap:{inline:{a=x}, static:{}, inline:{a=y}}', ['a', 'b'])
  add('unionmap', 'unionmap:{inline:{a=}}', ['a'])
  add('unionmap', 'unionmap:{static:{}, static:{}}', ['a'])
  add('unionmap', 'unionmap:{inline:{a=1}, fail:down}', ['a', 'b'])
  add('unionmap', 'unionmap:{fail:down, inline:{a=1}}', ['a'])
  add('unionmap', 'unionmap:{inline:{a=1}, inline:{a=1}}', ['a'])
  add('unionmap', 'unionmap:{inline:{a=é}, static:{ü x}}', ['a', 'b'], [[], ['-u']])
  add('unionmap', `unionmap:{cidr:${cidr}, static:any}`, ['192.168.1.1', '10.1.2.3', '1.2.3.4', 'x'])
  add('unionmap', 'unionmap:{pipemap:{inline:{a=b}, inline:{b=c}}, unionmap:{static:s1, static:s2}}', ['a', 'b'])
  add('unionmap', 'unionmap:{unix:passwd.byname, unix:group.byname}', ['root', 'nobody', 'ssl-cert', 'none'])
  add('unionmap', 'unionmap:{randmap:{only}, environ:x}', ['pmx_lower', 'PMX_UPPER', 'x'], [[], ['-f']])
  add('unionmap', 'unionmap:{ { inline:{a=1} }, static:x }', ['a'])
  add('unionmap', `unionmap:{inline:{a=1}, texthash:${dir}/does-not-exist}`, ['a'])
  add('unionmap', 'unionmap:{inline:{a=1}, bogus:x}', ['a'])
  add('unionmap', 'unionmap:{inline:{a=1}, inline:{}}', ['a'])
  add('unionmap', 'unionmap:{inline:{a=1}, unix:nope}', ['a'])
  for (const bad of ['x', '{}', '{ }', '{ , }', '{inline:{a=b}, nocolon}', 'nocolon', '{nocolon, inline:{a=b}}',
    '{inline:{a=b}}x', 'x{inline:{a=b}}', '{inline:{a=b}, :x}', '{static:}', '{inline:{a=b}', '{inline:{a=b}}}',
    '{{a}}', '{ , static:x }'])
    add('unionmap', `unionmap:${bad}`, ['a'])

  // pipemap:
  add('pipemap', 'pipemap:{inline:{a=b}, inline:{b=c}}', ['a', 'A', 'b', 'c', ...probe], FOLD_VARIANTS)
  add('pipemap', `pipemap:{texthash:${t1}, texthash:${t2}}`, ['chain', 'Chain', 'alpha', 'shared', 'mixed', 'gamma', ...probe], FOLD_VARIANTS)
  add('pipemap', `pipemap:{texthash:${t1}, regexp:${re}}`, ['chain', 'mixed', 'alpha', 'x', ...probe], FOLD_VARIANTS)
  add('pipemap', `pipemap:{regexp:${re}, inline:{user-joe=joe-found, re-beta=beta-found}}`,
    ['joe@example.com', 'JOE@example.com', 'beta', 'x', ...probe], FOLD_VARIANTS)
  add('pipemap', 'pipemap:{inline:{a=B}, inline:{b=c}}', ['a'], FOLD_VARIANTS)
  add('pipemap', 'pipemap:{inline:{a=b}, fail:down}', ['a', 'x'])
  add('pipemap', 'pipemap:{fail:down, inline:{a=b}}', ['a'])
  add('pipemap', 'pipemap:{inline:{a=}, static:{}}', ['a', 'b'])
  add('pipemap', 'pipemap:{inline:{a=}, inline:{b=c}}', ['a'])
  add('pipemap', 'pipemap:{static:x, inline:{x=y}}', ['anything', 'x'])
  add('pipemap', 'pipemap:{static:{two words}, inline:{ {two words = found} }}', ['k'])
  add('pipemap', 'pipemap:{inline:{a=b}}', ['a', 'b'])
  add('pipemap', `pipemap:{inline:{a=one, b=two}, unionmap:{texthash:${t2}, regexp:${re}}}`, ['a', 'b', 'c'])
  add('pipemap', 'pipemap:{inline:{a=é}, inline:{é=É-value}}', ['a'], [[], ['-u']])
  add('pipemap', 'pipemap:{inline:{a=root}, unix:passwd.byname}', ['a', 'b'])
  add('pipemap', 'pipemap:{inline:{a=pmx_lower, b=PMX_UPPER}, environ:x}', ['a', 'b'], [[], ['-f']])
  add('pipemap', 'pipemap:{inline:{a=1}, bogus:x}', ['a'])
  add('pipemap', `pipemap:{texthash:${dir}/does-not-exist, inline:{a=1}}`, ['a'])
  for (const bad of ['x', '{}', '{ }', '{,}', '{inline:{a=b}, nocolon}', '{inline:{a=b}}x', '{ :x }', '{x:}',
    '{inline:{a=b}', '{pipemap:{}}', '{unionmap:x}'])
    add('pipemap', `pipemap:${bad}`, ['a'])

  // randmap:
  const anyKeys = ['a', 'B', '', 'É']
  add('randmap', 'randmap:{only}', anyKeys, FOLD_VARIANTS)
  add('randmap', 'randmap:{a, b, c}', anyKeys, FOLD_VARIANTS, {oneOf: ['a', 'b', 'c']})
  add('randmap', 'randmap:{ one   two,three }', anyKeys, PLAIN, {oneOf: ['one', 'two', 'three']})
  add('randmap', 'randmap:{ {a b}, c }', anyKeys, PLAIN, {oneOf: ['{a b}', 'c']})
  add('randmap', 'randmap:{ {a b} }', anyKeys)
  add('randmap', 'randmap:{ä, ö}', anyKeys, [[], ['-u']], {oneOf: ['ä', 'ö']})
  add('randmap', 'randmap:{smtp:[mx1], smtp:[mx2]}', ['k'], PLAIN, {oneOf: ['smtp:[mx1]', 'smtp:[mx2]']})
  add('randmap', `randmap:{${rhs1}}`, ['k'], [['-F']])
  add('randmap', `randmap:{${rhs1}, ${rhs2}}`, ['k'], [['-F']], {oneOf: ['first file\nline two\n', 'zwei \u00e9\n']})
  add('randmap', `randmap:{${rhs1}, ${dir}/nope}`, ['k'], [['-F']])
  for (const bad of ['x', '{}', '{ }', '{ , }', '{a}b', 'x{a}', '{a', '{a}}', '{{}}'])
    add('randmap', `randmap:${bad}`, ['a'])
  add('randmap', 'randmap:{{}}', ['a'], PLAIN) // one value: "{}"
  return cases
}

// ------------------------------------------------------------------------------ tests

const savedEnv = new Map<string, string | undefined>()

before(async () => {
  requirePostfix() // real Postfix is required: missing means FAIL, not skip
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'pmx-composite-')))
  for (const [name, params] of [
    ['smtputf8', {compatibility_level: '3.6'}],
    ['no-smtputf8', {compatibility_level: '3.6', smtputf8_enable: 'no'}],
    ['import-env', {compatibility_level: '3.6', import_environment: 'MAIL_CONFIG LANG=C PMX_SET=from-main.cf {PMX_SPACE = a  b }, TZ=Europe/Berlin'}],
  ] as const) {
    const dir = path.join(root, name)
    fs.mkdirSync(dir)
    await writeFile(path.join(dir, 'main.cf'), Object.entries(params).map(([k, v]) => `${k} = ${v}\n`).join(''))
    configs.push({name, dir, config: makeConfig(dir, params), utf8: !('smtputf8_enable' in params)})
  }
  for (const [k, v] of Object.entries(TEST_ENV)) {
    savedEnv.set(k, process.env[k])
    process.env[k] = v
  }
})

after(() => {
  for (const [k, v] of savedEnv) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  if (root) fs.rmSync(root, {recursive: true, force: true})
})

/** randmap: a stdout that is one of the allowed values is as good as any other. */
function normalizeRandom(o: Outcome, oneOf: readonly string[] | undefined): Outcome {
  if (!oneOf || o.status !== 0) return o
  return oneOf.some((v) => o.stdout === `${v}\n`) ? {...o, stdout: '<one of the values>\n'} : o
}

test('lookups match postmap -q', async () => {
  const corpus = await buildCorpus(fs.mkdtempSync(path.join(root, 'corpus-')))
  const counts: Record<string, number> = {}
  const failures: string[] = []
  const jobs: Promise<void>[] = []
  for (const cfg of configs) {
    for (const c of corpus) {
      if (!(c.configs ?? ['smtputf8', 'no-smtputf8']).includes(cfg.name)) continue
      for (const options of c.variants) {
        for (const key of new Set(c.keys)) {
          jobs.push((async () => {
            // randmap picks at random: ask both sides a few times.
            for (let round = 0; round < (c.oneOf ? 3 : 1); round++) {
              const [ours, real] = await Promise.all([ourQuery(c.spec, key, options, cfg), realQuery(c.spec, key, options, cfg)])
              counts[c.type] = (counts[c.type] ?? 0) + 1
              const label = `[${cfg.name}${options.length ? ' ' + options.join(' ') : ''}] -q ${JSON.stringify(key)} ${JSON.stringify(c.spec)}`
              try {
                assert.deepEqual(normalizeRandom(ours, c.oneOf), normalizeRandom(real, c.oneOf))
                if (c.oneOf) assert.equal(ours.stdout === '' || ours.stdout.endsWith('\n'), true)
              } catch {
                failures.push(`${label}\n  ours: ${JSON.stringify(ours)}\n  real: ${JSON.stringify(real)}`)
              }
            }
          })())
        }
      }
    }
  }
  await Promise.all(jobs)
  for (const type of UNDER_TEST) console.log(`${type}: ${counts[type] ?? 0} cases compared with postmap`)
  assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.slice(0, 40).join('\n')}`)
  for (const type of UNDER_TEST) assert.ok((counts[type] ?? 0) >= 24, `too few ${type} cases`)
})

test('randmap answers every value, at random', async () => {
  const cfg = configs[0]
  const lines: string[] = []
  const t = await openOurs('randmap:{a, b, c}', postmapFlags([]), cfg.config, lines)
  const seen = new Set<string | undefined>()
  for (let i = 0; i < 300; i++) seen.add(await t.lookup('k'))
  assert.deepEqual([...seen].sort(), ['a', 'b', 'c'])
  // Real postmap, too, answers each of them (100 runs: missing one has odds ~ 3 * (2/3)^100).
  const real = new Set<string>()
  await Promise.all(Array.from({length: 100}, async () => {
    const r = await realQuery('randmap:{a, b, c}', 'k', [], cfg)
    assert.equal(r.status, 0)
    real.add(r.stdout)
  }))
  assert.deepEqual([...real].sort(), ['a\n', 'b\n', 'c\n'])
  assert.deepEqual(lines, [])
})

test('flags reported at open', async () => {
  const cfg = configs[0]
  const lines: string[] = []
  const req = DICT_FLAG.UTF8_REQUEST | DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN
  const file = await writeFile(path.join(root, 'flags-re'), '/a/ b\n')
  const expect = async (spec: string, flags: number, want: number, config = cfg.config): Promise<void> =>
    assert.equal((await openOurs(spec, flags, config, lines)).flags, want, spec)
  await expect('unix:passwd.byname', 0, DICT_FLAG.FIXED)
  await expect('unix:group.byname', req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect('unix:group.byname', req, req | DICT_FLAG.FIXED, configs[1].config)
  await expect('environ:x', 0, DICT_FLAG.FIXED)
  await expect('environ:x', req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect('randmap:{a}', 0, DICT_FLAG.PATTERN)
  await expect('randmap:{a}', req, req | DICT_FLAG.PATTERN | DICT_FLAG.UTF8_ACTIVE)
  // The first nested table decides FIXED or PATTERN.
  await expect('unionmap:{inline:{a=b}, regexp:' + file + '}', 0, DICT_FLAG.FIXED)
  await expect('unionmap:{regexp:' + file + ', inline:{a=b}}', 0, DICT_FLAG.PATTERN)
  await expect('pipemap:{static:x, regexp:' + file + '}', req, req | DICT_FLAG.FIXED | DICT_FLAG.UTF8_ACTIVE)
  await expect('pipemap:{fail:x, static:y}', 0, DICT_FLAG.PATTERN)
  assert.deepEqual(lines, [])
})

test('through the registry (proxymap): nested open failures are surrogates, write mode refused', async () => {
  const registry = new TableRegistry()
  for (const type of UNDER_TEST) assert.ok(registry.has(type), `${type} is registered`)
  const cfg = configs[0]
  const lines: string[] = []
  const read = {mode: 'read' as const, dictFlags: 0, config: cfg.config, log: collectingLog(lines)}

  // A nested table that fails to open is logged as an error and answers RETRY; the union
  // itself opens, and takes PATTERN from the surrogate when that is first.
  const u = await registry.open('unionmap:{inline:{a=1}, bogus:x}', read)
  assert.ok(!(u instanceof SurrogateTable))
  assert.deepEqual(lines, ['error: unsupported dictionary type: bogus'])
  await assert.rejects(Promise.resolve(u.lookup('a')),
    (err: unknown) => err instanceof TableError && err.kind === 'retry' &&
      err.message === 'bogus:x is unavailable. unsupported dictionary type: bogus')
  assert.equal(lines[1], 'warning: bogus:x is unavailable. unsupported dictionary type: bogus')
  lines.length = 0
  const p = await registry.open('pipemap:{bogus:x, inline:{a=1}}', read)
  assert.equal(p.flags, DICT_FLAG.PATTERN)
  lines.length = 0

  // Syntax errors make the composite itself the surrogate.
  const bad = await registry.open('unionmap:{nocolon}', read)
  assert.ok(bad instanceof SurrogateTable)
  assert.equal(bad.reason, 'bad syntax: "unionmap:{nocolon}"; need "unionmap:{type:name...}"')
  lines.length = 0

  // proxywrite (O_RDWR): refused by all but environ, which can be updated.
  const write = {...read, mode: 'write' as const}
  for (const spec of ['unix:passwd.byname', 'unionmap:{static:x}', 'pipemap:{static:x}', 'randmap:{x}']) {
    const t = await registry.open(spec, write)
    assert.ok(t instanceof SurrogateTable, spec)
    assert.equal(t.reason, `${spec} map requires O_RDONLY access mode`)
  }
  const env = await registry.open('environ:x', write)
  assert.ok(!(env instanceof SurrogateTable))
  assert.equal(await env.update?.('pmx_written', 'written value'), true)
  assert.equal(await env.lookup('pmx_written'), 'written value')
  assert.equal(process.env.pmx_written, 'written value')
  delete process.env.pmx_written
  assert.equal(await (await registry.open('environ:other', read)).lookup('pmx_written'), 'written value')
  await assert.rejects(Promise.resolve().then(() => env.update?.('a=b', 'c')), TableError)
})

test('through the registry (postmap): a nested table that cannot be opened fails the open, as postmap stops', async () => {
  const registry = new TableRegistry()
  const cfg = configs[0]
  const lines: string[] = []
  const read = {mode: 'read' as const, dictFlags: 0, config: cfg.config, log: collectingLog(lines)}
  const missing = path.join(cfg.dir, 'no-such-table')
  for (const [spec, reason] of [
    [`unionmap:{inline:{a=1}, texthash:${missing}}`, `open database ${missing}: No such file or directory`],
    ['pipemap:{inline:{a=1}, bogus:x}', 'unsupported dictionary type: bogus'],
    [`unionmap:{pipemap:{texthash:${missing}, inline:{a=1}}}`, `open database ${missing}: No such file or directory`],
  ]) {
    const postmap = await runCommand(POSTMAP, ['-c', cfg.dir, '-q', 'a', spec])
    assert.equal(postmap.code, 1, spec)
    assert.equal(postmap.stderr.trim(), `postmap: fatal: ${reason}`, spec)
    await assert.rejects(registry.openStrict(spec, read),
      (err: unknown) => err instanceof TableError && err.kind === 'retry' && err.message === reason, spec)
  }
  assert.deepEqual(lines, [])
})

test('unix: the sequence, update and delete operations do not exist', async () => {
  const lines: string[] = []
  const t = await openOurs('unix:passwd.byname', 0, configs[0].config, lines)
  assert.equal(t.sequence, undefined)
  assert.equal(t.update, undefined)
  assert.equal(t.delete, undefined)
  // Without FOLD_FIX the key is used as is; with it, ASCII is lowercased by the table.
  assert.equal(await t.lookup('ROOT'), undefined)
  t.flags |= DICT_FLAG.FOLD_FIX
  assert.match((await t.lookup('ROOT')) ?? '', /^root:[^:]*:0:0:/)
})
