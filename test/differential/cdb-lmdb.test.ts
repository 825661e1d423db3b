// Differential test of the cdb and lmdb table types against real Postfix 3.7: tables made
// by `postmap cdb:FILE` / `postmap lmdb:FILE` are read by us, and every lookup is compared
// with `postmap -c DIR [-f] -q KEY TYPE:FILE` (stdout and exit status); lmdb sequences with
// `postmap -s` (sorted). Files we write (writeCdb, lmdb update/delete) must be read back by
// real postmap. Two configurations: smtputf8 on (UTF-8 layer) and off (ASCII folding).
//
// Run: node --import tsx --test test/differential/cdb-lmdb.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'
import {spawn} from 'node:child_process'

import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {Table, TableType} from '../../src/lib/tables/table.js'
import {cdbType, writeCdb} from '../../src/lib/tables/cdb.js'
import {lmdbType} from '../../src/lib/tables/lmdb.js'
import {backdate, PROJECT_ROOT, runCommand} from '../helpers/postfix.js'
import {b, ENTRIES, makeConfig, openFileTable, pool, postmapIn, queryKeys, queryOutcome, sequenceLines, sortedLines, useConfigRoot, warningLog, writeSource, type Cfg, type Outcome} from './table-helpers.js'

const TYPES: Record<string, TableType> = {cdb: cdbType, lmdb: lmdbType}

let root: string
const configs: Cfg[] = []

const warnings: string[] = []
const log = warningLog(warnings)

const openOurs = (spec: string, cfg: Cfg, dictFlags: number, mode: 'read' | 'write' = 'read'): Promise<Table> =>
  openFileTable(TYPES, spec, cfg, dictFlags, log, mode)
const postmap = postmapIn

// -------------------------------------------------------------------------------- setup

useConfigRoot('pmx-cdb-lmdb-', configs, (dir) => { root = dir })

const makeSource = (cfg: Cfg, name: string): Promise<string> => writeSource(cfg.dir, name)

async function ourQuery(spec: string, cfg: Cfg, key: string, fold: boolean): Promise<Outcome> {
  return queryOutcome(await openOurs(spec, cfg, postmapQueryFlags(fold)), key)
}

async function ourSequence(spec: string, cfg: Cfg): Promise<string[]> {
  return sequenceLines(await openOurs(spec, cfg, postmapQueryFlags(true)))
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
        // Postfix 3.7's cdb has no sequence; 3.10's and ours do (compared with 3.11's
        // postmap -s in test/interop/postfix-311-server.test.ts).
        assert.equal(realSeq.code, 1)
        assert.match(realSeq.stderr, /sequence operation is not supported/)
        assert.equal(typeof (await openOurs(spec, cfg, postmapQueryFlags(true))).sequence, 'function')
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

test('a postmap-made lmdb table in a root-owned directory is read by user postfix without a lock file', async () => {
  const cfg = configs[0]
  // a directory user postfix can traverse but not write, like /etc/postfix
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pmx-lmdb-rootdir-'))
  try {
    fs.chmodSync(dir, 0o755)
    const source = path.join(dir, 'ro')
    fs.writeFileSync(source, ENTRIES.map(([k, v]) => `${k}\t${v}\n`).join(''))
    await backdate(source)
    assert.equal((await postmap(cfg, [`lmdb:${source}`])).code, 0)
    fs.chmodSync(`${source}.lmdb`, 0o644)
    const script = path.join(dir, 'read.mts')
    fs.writeFileSync(script, [
      `import {lmdbType} from ${JSON.stringify(pathToFileURL(path.join(PROJECT_ROOT, 'src/lib/tables/lmdb.ts')).href)}`,
      `const config = {configDir: ${JSON.stringify(cfg.dir)}, get: () => '', raw: () => undefined, isSet: () => false}`,
      `const log = {warning: (m) => console.error(m), error: (m) => console.error(m), info: () => {}}`,
      `const table = await lmdbType.open(${JSON.stringify(source)}, {mode: 'read', dictFlags: ${DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX}, config, log, openNested: () => { throw new Error('unused') }})`,
      `const out = [await table.lookup('alice@example.com'), await table.lookup('root'), await table.lookup('missing')]`,
      `let n = 0; const cursor = {}`,
      `for (let e = await table.sequence('first', cursor); e; e = await table.sequence('next', cursor)) n++`,
      `await table.close()`,
      `console.log(JSON.stringify({out, n, uid: process.getuid()}))`,
    ].join('\n'))
    fs.chmodSync(script, 0o644)
    const before = fs.readdirSync(dir).sort()
    const r = await runCommand(process.execPath, ['--import', 'tsx', script], {asPostfix: true, cwd: PROJECT_ROOT, timeoutMs: 60_000})
    assert.equal(r.code, 0, `child as postfix: ${r.stderr}`)
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as {out: (string | null)[]; n: number; uid: number}
    assert.notEqual(got.uid, 0)
    assert.deepEqual(got.out, ['OK', 'postmaster@example.com', null])
    assert.equal(got.n, ENTRIES.length)
    const after = fs.readdirSync(dir).sort()
    assert.deepEqual(after, before, 'nothing created next to the table')
    assert.ok(!after.some((f) => f.endsWith('-lock')))
    assert.equal(fs.statSync(dir).uid, 0)
  } finally {
    fs.rmSync(dir, {recursive: true, force: true})
  }
})

test('lmdb key size limits and map growth are those of Postfix', async () => {
  const cfg = configs[0]
  const source = await makeSource(cfg, 'limits')
  assert.equal((await postmap(cfg, [`lmdb:${source}`])).code, 0)
  const spec = `lmdb:${source}`
  const table = await openOurs(spec, cfg, DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE, 'write')
  // 510 bytes plus the NUL fit (LMDB 0.9: 511), one more does not
  const fits = 'k'.repeat(510)
  assert.equal(await table.update!(fits, 'fits'), true)
  const real = await postmap(cfg, ['-q', fits, spec])
  assert.deepEqual({stdout: real.stdout, code: real.code}, {stdout: 'fits\n', code: 0})
  await assert.rejects(async () => table.update!('k'.repeat(511), 'too long'), /error updating lmdb:.*MDB_BAD_VALSIZE/)
  // a lookup of an over-long key is simply not found, as with postmap -q
  const long = 'q'.repeat(600)
  assert.equal((await postmap(cfg, ['-q', long, spec])).code, 1)
  assert.equal(await table.lookup(long), undefined)
  await table.close?.()

  // a small lmdb_map_size grows on MDB_MAP_FULL (slmdb doubles it and retries)
  const small: Cfg = {...cfg, config: makeConfig(cfg.dir, {compatibility_level: '3.6', lmdb_map_size: '65536'})}
  const grow = path.join(cfg.dir, 'grow')
  const writer = await openOurs(`lmdb:${grow}`, small, DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE, 'write')
  for (let i = 0; i < 3000; i++) assert.equal(await writer.update!(`grow-key-${i}`, `value ${i} ${'x'.repeat(100)}`), true)
  await writer.close?.()
  assert.ok(fs.statSync(`${grow}.lmdb`).size > 65536)
  const seq = await postmap(cfg, ['-s', `lmdb:${grow}`])
  assert.equal(seq.code, 0, seq.stderr)
  assert.equal(sortedLines(seq.stdout).length, 3000)
  assert.deepEqual(await postmap(cfg, ['-q', 'grow-key-2999', `lmdb:${grow}`]).then((r) => r.stdout), `value 2999 ${'x'.repeat(100)}\n`)
})

test('lmdb reads wait for a write lock held by another process', async () => {
  const cfg = configs[0]
  const source = await makeSource(cfg, 'locked')
  assert.equal((await postmap(cfg, [`lmdb:${source}`])).code, 0)
  const table = await openOurs(`lmdb:${source}`, cfg, postmapQueryFlags(true))
  // another process holds a whole-file fcntl() write lock for ~600 ms, as a Postfix writer would
  const holder = spawn('python3', ['-c',
    'import fcntl,sys,time; f=open(sys.argv[1],"r+"); fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(0.6)',
    `${source}.lmdb`], {stdio: ['ignore', 'pipe', 'inherit']})
  const exited = new Promise<number | null>((resolve) => holder.once('exit', resolve))
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('locked')) resolve() })
    holder.once('exit', () => reject(new Error('the lock holder exited early')))
  })
  const started = Date.now()
  const value = await table.lookup('alice@example.com')
  const waited = Date.now() - started
  assert.equal(await exited, 0)
  assert.equal(value, 'OK')
  assert.ok(waited >= 150, `the lookup waited for the lock (${waited} ms)`)
  await table.close?.()
})
