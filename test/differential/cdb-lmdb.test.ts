// Differential test of the cdb and lmdb table types against real Postfix 3.7: tables made
// by `postmap cdb:FILE` / `postmap lmdb:FILE` are read by us, and every lookup is compared
// with `postmap -c DIR [-f] -q KEY TYPE:FILE` (stdout and exit status); lmdb sequences with
// `postmap -s` (sorted). Files we write (writeCdb, lmdb update/delete) must be read back by
// real postmap. Two configurations: smtputf8 on (UTF-8 layer) and off (ASCII folding).
//
// Run: node --import tsx --test test/differential/cdb-lmdb.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {OpenOptions, Table, TableType} from '../../src/lib/tables/table.js'
import {cdbType, writeCdb} from '../../src/lib/tables/cdb.js'
import {lmdbType} from '../../src/lib/tables/lmdb.js'
import {backdate, POSTMAP, requirePostfix, runCommand} from '../helpers/postfix.js'

const TYPES: Record<string, TableType> = {cdb: cdbType, lmdb: lmdbType}

/** Byte string (latin1 "binary") of UTF-8 text, and back. */
const b = (utf8Text: string): string => Buffer.from(utf8Text, 'utf8').toString('latin1')
const t = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')

interface Cfg {name: string; dir: string; config: MainConfig}
let root: string
const configs: Cfg[] = []

function makeConfig(dir: string, params: Record<string, string>): MainConfig {
  return {configDir: dir, get: (n) => params[n] ?? '', raw: (n) => params[n], isSet: (n) => n in params}
}

const warnings: string[] = []
const log: OpenOptions['log'] = {
  warning: (m) => warnings.push(`warning: ${m}`),
  error: (m) => warnings.push(`error: ${m}`),
  info: () => {},
}

async function openOurs(spec: string, cfg: Cfg, dictFlags: number, mode: 'read' | 'write' = 'read'): Promise<Table> {
  const colon = spec.indexOf(':')
  return TYPES[spec.slice(0, colon)].open(spec.slice(colon + 1), {
    mode, dictFlags, config: cfg.config, log, openNested: () => { throw new Error('unused') },
  })
}

const postmap = (cfg: Cfg, args: string[]) => runCommand(POSTMAP, ['-c', cfg.dir, ...args])

/** Run `jobs` with at most `width` at a time. */
async function pool<T>(jobs: (() => Promise<T>)[], width = 8): Promise<T[]> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  await Promise.all(Array.from({length: width}, async () => {
    while (next < jobs.length) {
      const i = next++
      results[i] = await jobs[i]()
    }
  }))
  return results
}

// ---------------------------------------------------------------------------- the corpus

const ENTRIES: [string, string][] = [
  ['alice@example.com', 'OK'],
  ['Bob@Example.COM', 'REJECT go away'],
  ['CAROL', 'value with   several spaces'],
  ['dave.smith@mixed.Case.org', 'smtp:[relay.example.net]:587'],
  ['ÜBER@bücher.de', 'DISCARD ünïcödé value'],
  ['Straße@example.de', 'REDIRECT strasse@example.de'],
  ['ΑΘΗΝΑ', 'Greek capitals'],
  ['日本@例え.jp', '日本語の値'],
  ['example.net', 'relay:[10.0.0.1]'],
  ['.example.net', 'subdomains'],
  ['user+tag@example.com', 'tagged'],
  ['192.168.1.1', 'REJECT ip'],
  ['2001:db8::1', 'ipv6'],
  ['root', 'postmaster@example.com'],
  ['MAILER-DAEMON', 'postmaster'],
  ['key_with_underscore', 'x'],
  ['a', 'single letter'],
  ['ZZZ', 'last in order'],
]
for (let i = 0; i < 30; i++) ENTRIES.push([`Key${i}@Domain${i % 7}.Example`, `value ${i} with spaces and ${'#'.repeat(i % 5)}`])

function queryKeys(): string[] {
  const keys = new Set<string>()
  for (const [k] of ENTRIES) {
    keys.add(k)
    keys.add(k.toLowerCase())
    keys.add(k.toUpperCase())
  }
  for (const k of ['missing', 'nobody@example.com', 'über@bücher.de', 'strasse@example.de', 'αθηνα', 'Key99@x', 'a b']) keys.add(k)
  return [...keys]
}

// -------------------------------------------------------------------------------- setup

before(() => {
  requirePostfix() // real Postfix is required: missing means FAIL, not skip
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'pmx-cdb-lmdb-')))
  for (const [name, params] of [
    ['smtputf8', {compatibility_level: '3.6'}],
    ['no-smtputf8', {compatibility_level: '3.6', smtputf8_enable: 'no'}],
  ] as const) {
    const dir = path.join(root, name)
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, 'main.cf'), Object.entries(params).map(([k, v]) => `${k} = ${v}\n`).join(''))
    configs.push({name, dir, config: makeConfig(dir, params)})
  }
})

after(() => {
  if (root) fs.rmSync(root, {recursive: true, force: true})
})

async function makeSource(cfg: Cfg, name: string): Promise<string> {
  const file = path.join(cfg.dir, name)
  fs.writeFileSync(file, ENTRIES.map(([k, v]) => `${k}\t${v}\n`).join(''))
  await backdate(file)
  return file
}

function sortedLines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0).sort()
}

interface Outcome {stdout: string; code: number}

async function ourQuery(spec: string, cfg: Cfg, key: string, fold: boolean): Promise<Outcome> {
  const table = await openOurs(spec, cfg, postmapQueryFlags(fold))
  try {
    const value = await table.lookup(b(key))
    return value === undefined ? {stdout: '', code: 1} : {stdout: `${t(value)}\n`, code: 0}
  } finally {
    await table.close?.()
  }
}

async function ourSequence(spec: string, cfg: Cfg): Promise<string[]> {
  const table = await openOurs(spec, cfg, postmapQueryFlags(true))
  const lines: string[] = []
  const cursor = {}
  try {
    for (let e = await table.sequence!('first', cursor); e; e = await table.sequence!('next', cursor))
      lines.push(`${t(e[0])}\t${t(e[1])}`)
  } finally {
    await table.close?.()
  }
  return lines.sort()
}

// -------------------------------------------------------------------------------- tests

test('lookups and sequences of postmap-made cdb and lmdb tables match postmap -q / -s', async () => {
  const counts: Record<string, number> = {}
  const failures: string[] = []
  for (const cfg of configs) {
    for (const type of ['cdb', 'lmdb']) {
      const source = await makeSource(cfg, `src-${type}`)
      const made = await postmap(cfg, [`${type}:${source}`])
      assert.equal(made.code, 0, `postmap ${type}:${source}: ${made.stderr}`)
      const spec = `${type}:${source}`
      const jobs: (() => Promise<void>)[] = []
      for (const key of queryKeys()) {
        for (const fold of [true, false]) {
          jobs.push(async () => {
            const real = await postmap(cfg, [...(fold ? [] : ['-f']), '-q', key, spec])
            const ours = await ourQuery(spec, cfg, key, fold)
            const label = `${cfg.name} ${type} ${fold ? '' : '-f '}-q ${JSON.stringify(key)}`
            counts[`${type} lookup`] = (counts[`${type} lookup`] ?? 0) + 1
            try {
              assert.deepEqual(ours, {stdout: real.stdout, code: real.code})
            } catch {
              failures.push(`${label}: ours ${JSON.stringify(ours)} real ${JSON.stringify({stdout: real.stdout, code: real.code, stderr: real.stderr})}`)
            }
          })
        }
      }
      await pool(jobs)
      const realSeq = await postmap(cfg, ['-s', spec])
      counts[`${type} sequence`] = (counts[`${type} sequence`] ?? 0) + 1
      if (type === 'cdb') {
        // Postfix 3.7's cdb has no sequence; neither do we.
        assert.equal(realSeq.code, 1)
        assert.match(realSeq.stderr, /sequence operation is not supported/)
        assert.equal((await openOurs(spec, cfg, postmapQueryFlags(true))).sequence, undefined)
      } else {
        assert.equal(realSeq.code, 0, realSeq.stderr)
        assert.deepEqual(await ourSequence(spec, cfg), sortedLines(realSeq.stdout), `${cfg.name} ${type} sequence`)
      }
    }
  }
  console.log('case counts:', JSON.stringify(counts))
  assert.deepEqual(failures, [], `${failures.length} mismatches:\n${failures.slice(0, 20).join('\n')}`)
})

test('cdb files from writeCdb are read by postmap -q', async () => {
  let cases = 0
  const cfg = configs[0]
  for (const [label, dictFlags] of [
    ['no NUL, folded', DICT_FLAG.FOLD_FIX],
    ['with NUL, unfolded', DICT_FLAG.TRY1NULL],
  ] as const) {
    const base = path.join(cfg.dir, `ours-${label.replace(/\W+/g, '-')}`)
    await writeCdb(base, ENTRIES.map(([k, v]) => [b(k), b(v)] as const), {dictFlags, log})
    assert.ok(!fs.existsSync(`${base}.cdb.tmp`), 'the .tmp file is renamed away')
    const jobs = queryKeys().map((key) => async () => {
      const fold = (dictFlags & DICT_FLAG.FOLD_FIX) !== 0
      const real = await postmap(cfg, [...(fold ? [] : ['-f']), '-q', key, `cdb:${base}`])
      const ours = await ourQuery(`cdb:${base}`, cfg, key, fold)
      cases++
      assert.deepEqual({stdout: real.stdout, code: real.code}, ours, `${label} -q ${key}: ${real.stderr}`)
      // an exact key must always be found by real postmap
      if (ENTRIES.some(([k]) => k === key) && (!fold || /^[\x00-\x7f]*$/.test(key))) assert.equal(real.code, 0, `${label} -q ${key}`)
    })
    await pool(jobs)
  }
  console.log(`case counts: writeCdb read by postmap -q: ${cases}`)
})

test('lmdb updates and deletes are seen by postmap -q / -s', async () => {
  const cfg = configs[0]
  const source = await makeSource(cfg, 'upd')
  assert.equal((await postmap(cfg, [`lmdb:${source}`])).code, 0)
  const spec = `lmdb:${source}`
  const writeFlags = DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX | DICT_FLAG.UTF8_REQUEST
  const table = await openOurs(spec, cfg, writeFlags | DICT_FLAG.DUP_REPLACE, 'write')
  // the model starts from what real postmap stored (its key folding), then follows our writes
  const before = sortedLines((await postmap(cfg, ['-s', spec])).stdout)
  const model = new Map(before.map((l) => l.split('\t') as [string, string]))
  let cases = 0
  for (let i = 0; i < 20; i++) {
    const key = `New${i}@Added.Example`
    assert.equal(await table.update!(b(key), b(`new value ${i} é`)), true)
    model.set(key.toLowerCase(), `new value ${i} é`)
  }
  assert.equal(await table.update!(b('ALICE@example.com'), b('REPLACED')), true)
  model.set('alice@example.com', 'REPLACED')
  for (const key of ['root', 'CAROL', 'Key3@Domain3.Example', 'New5@added.example']) {
    assert.equal(await table.delete!(b(key)), true, `delete ${key}`)
    model.delete(key.toLowerCase())
  }
  assert.equal(await table.delete!(b('never-there')), false)
  // without DUP_REPLACE an existing key is kept (DUP_WARN: a warning)
  const noReplace = await openOurs(spec, cfg, writeFlags | DICT_FLAG.DUP_WARN, 'write')
  assert.equal(await noReplace.update!(b('a'), b('ignored')), false)
  await noReplace.close?.()
  await table.close?.()

  const real = await postmap(cfg, ['-s', spec])
  assert.equal(real.code, 0, real.stderr)
  const want = [...model].map(([k, v]) => `${k}\t${v}`).sort()
  assert.deepEqual(sortedLines(real.stdout), want)
  cases++
  assert.deepEqual(await ourSequence(spec, cfg), want)
  cases++
  const jobs = [...model.keys(), 'root', 'carol', 'new5@added.example'].map((key) => async () => {
    const r = await postmap(cfg, ['-q', key, spec])
    cases++
    assert.deepEqual({stdout: r.stdout, code: r.code}, model.has(key) ? {stdout: `${model.get(key)}\n`, code: 0} : {stdout: '', code: 1}, key)
    assert.deepEqual(await ourQuery(spec, cfg, key, true), {stdout: r.stdout, code: r.code})
  })
  await pool(jobs)
  console.log(`case counts: lmdb update/delete checked by postmap: ${cases}`)
})

test('a missing cdb or lmdb file fails to open as in Postfix', async () => {
  const cfg = configs[0]
  for (const type of ['cdb', 'lmdb']) {
    const file = path.join(cfg.dir, `absent-${type}`)
    const real = await postmap(cfg, ['-q', 'x', `${type}:${file}`])
    assert.equal(real.code, 1)
    await assert.rejects(openOurs(`${type}:${file}`, cfg, postmapQueryFlags(true)), (err: Error) => {
      assert.ok(real.stderr.includes(err.message), `real: ${real.stderr} ours: ${err.message}`)
      return true
    })
    assert.ok(!fs.existsSync(`${file}.${type}`), 'opening for reading creates nothing')
  }
})
