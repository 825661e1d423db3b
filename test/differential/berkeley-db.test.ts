// Differential test of the hash and btree table types (Berkeley DB 5.3 through our own
// addon) against real Postfix 3.7: tables made by `postmap hash:FILE` / `postmap
// btree:FILE` are read by us, and every lookup is compared with `postmap -c DIR [-f] -q
// KEY TYPE:FILE` (stdout and exit status), sequences with `postmap -s` (sorted). Files we
// update, delete from, or create from scratch must be read back by real postmap. Two
// configurations: smtputf8 on (UTF-8 layer) and off (ASCII folding). Locking: a flock()
// held on the .db file holds back both real postmap and our table.
//
// Run: node --import tsx --test test/differential/berkeley-db.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {btreeType, hashType} from '../../src/lib/tables/berkeley-db.js'
import {defaultRegistry} from '../../src/lib/tables/registry.js'
import {fcntlLock, flock, loadNative} from '../../src/lib/native/index.js'
import {POSTMAP, runCommand, sleep, spawnTracked} from '../helpers/postfix.js'
import {b, ENTRIES, openFileTable, pool, postmapIn, queryKeys, queryOutcome, sequenceLines, sortedLines, useConfigRoot, warningLog, writeSource, type Cfg, type Outcome} from './table-helpers.js'

const TYPES: Record<string, TableType> = {hash: hashType, btree: btreeType}
const TYPE_NAMES = ['hash', 'btree'] as const

let root: string
const configs: Cfg[] = []

const warnings: string[] = []
const log = warningLog(warnings)

const openOurs = (spec: string, cfg: Cfg, dictFlags: number, mode: 'read' | 'write' = 'read'): Promise<Table> =>
  openFileTable(TYPES, spec, cfg, dictFlags, log, mode)
const postmap = postmapIn

// -------------------------------------------------------------------------------- setup

// real Postfix is required (missing means FAIL, not skip), and so is our addon: a missing
// build fails with the instructions
useConfigRoot('pmx-bdb-', configs, (dir) => { root = dir }, () => loadNative())

const makeSource = (cfg: Cfg, name: string, entries = ENTRIES): Promise<string> => writeSource(cfg.dir, name, entries)

async function makeTable(cfg: Cfg, type: string, name: string): Promise<string> {
  const source = await makeSource(cfg, name)
  const made = await postmap(cfg, [`${type}:${source}`])
  assert.equal(made.code, 0, `postmap ${type}:${source}: ${made.stderr}`)
  return `${type}:${source}`
}

async function ourQuery(spec: string, cfg: Cfg, key: string, fold: boolean): Promise<Outcome> {
  return queryOutcome(await openOurs(spec, cfg, postmapQueryFlags(fold)), key)
}

async function ourSequence(spec: string, cfg: Cfg): Promise<string[]> {
  return sequenceLines(await openOurs(spec, cfg, postmapQueryFlags(true)))
}

/** Compare our lookups of `keys` in `spec` with real postmap -q, folded and not. */
async function compareLookups(spec: string, cfg: Cfg, keys: string[], failures: string[], folds = [true, false]): Promise<number> {
  let cases = 0
  const jobs: (() => Promise<void>)[] = []
  for (const key of keys) {
    for (const fold of folds) {
      jobs.push(async () => {
        const real = await postmap(cfg, [...(fold ? [] : ['-f']), '-q', key, spec])
        const ours = await ourQuery(spec, cfg, key, fold)
        cases++
        if (real.stdout !== ours.stdout || real.code !== ours.code)
          failures.push(`${cfg.name} ${spec} ${fold ? '' : '-f '}-q ${JSON.stringify(key)}: ours ${JSON.stringify(ours)} real ${JSON.stringify({stdout: real.stdout, code: real.code, stderr: real.stderr})}`)
      })
    }
  }
  await pool(jobs)
  return cases
}

const counts: Record<string, number> = {hash: 0, btree: 0}

// -------------------------------------------------------------------------------- tests

test('lookups and sequences of postmap-made hash and btree tables match postmap -q / -s', async () => {
  const failures: string[] = []
  for (const cfg of configs) {
    for (const type of TYPE_NAMES) {
      const spec = await makeTable(cfg, type, `src-${type}`)
      counts[type] += await compareLookups(spec, cfg, queryKeys(), failures)
      const realSeq = await postmap(cfg, ['-s', spec])
      assert.equal(realSeq.code, 0, realSeq.stderr)
      assert.deepEqual(await ourSequence(spec, cfg), sortedLines(realSeq.stdout), `${cfg.name} ${type} sequence`)
      counts[type]++
    }
  }
  assert.deepEqual(failures, [], `${failures.length} mismatches:\n${failures.slice(0, 20).join('\n')}`)
})

test('the registry opens hash: and btree: tables', async () => {
  const cfg = configs[0]
  for (const type of TYPE_NAMES) {
    const spec = await makeTable(cfg, type, `reg-${type}`)
    const table = await defaultRegistry.openStrict(spec, {mode: 'read', dictFlags: postmapQueryFlags(true), config: cfg.config, log})
    assert.equal(table.type, type)
    assert.equal(table.name, `${spec.slice(type.length + 1)}.db`, 'Postfix names the table by its .db file')
    assert.ok(table.flags & DICT_FLAG.FIXED)
    assert.equal(await table.lookup('alice@example.com'), 'OK')
    // the NUL convention found first is kept: Postfix-made files have NULs
    assert.equal(table.flags & (DICT_FLAG.TRY0NULL | DICT_FLAG.TRY1NULL), DICT_FLAG.TRY1NULL)
    await table.close?.()
  }
})

/** The write-mode flags of proxywrite: DUP_REPLACE and SYNC_UPDATE forced, locking on. */
const PROXYWRITE_FLAGS = DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX | DICT_FLAG.UTF8_REQUEST | DICT_FLAG.DUP_REPLACE | DICT_FLAG.SYNC_UPDATE

test('hash and btree updates and deletes are seen by postmap -q / -s', async () => {
  for (const cfg of configs) {
    for (const type of TYPE_NAMES) {
      const spec = await makeTable(cfg, type, `upd-${type}`)
      const table = await openOurs(spec, cfg, PROXYWRITE_FLAGS, 'write')
      // the model starts from what real postmap stored (its key folding), then follows our writes
      const model = new Map(sortedLines((await postmap(cfg, ['-s', spec])).stdout).map((l) => l.split('\t') as [string, string]))
      for (let i = 0; i < 20; i++) {
        const key = `New${i}@Added.Example`
        assert.equal(await table.update!(b(key), b(`new value ${i} é`)), true)
        model.set(key.toLowerCase(), `new value ${i} é`)
      }
      assert.equal(await table.update!(b('ALICE@example.com'), b('REPLACED with spaces')), true)
      model.set('alice@example.com', 'REPLACED with spaces')
      for (const key of ['root', 'CAROL', 'Key3@Domain3.Example', 'New5@added.example']) {
        assert.equal(await table.delete!(b(key)), true, `delete ${key}`)
        model.delete(key.toLowerCase())
      }
      assert.equal(await table.delete!(b('never-there')), false)
      // SYNC_UPDATE: postmap sees our writes while our table is still open
      const whileOpen = await postmap(cfg, ['-q', 'new7@added.example', spec])
      assert.deepEqual({stdout: whileOpen.stdout, code: whileOpen.code}, {stdout: 'new value 7 é\n', code: 0})
      // our own writes do not make our table "changed"
      assert.equal(table.changed!(), false)

      // without DUP_REPLACE an existing key is kept: DUP_WARN warns, DUP_IGNORE is silent,
      // neither is an error; with no DUP_* flag a duplicate is an error
      const base = DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX | DICT_FLAG.UTF8_REQUEST
      const warn = await openOurs(spec, cfg, base | DICT_FLAG.DUP_WARN, 'write')
      warnings.length = 0
      assert.equal(await warn.update!(b('A'), b('ignored')), false)
      assert.deepEqual(warnings, [`warning: ${spec.slice(type.length + 1)}.db: duplicate entry: "a"`])
      await warn.close?.()
      const ignore = await openOurs(spec, cfg, base | DICT_FLAG.DUP_IGNORE, 'write')
      warnings.length = 0
      assert.equal(await ignore.update!(b('a'), b('ignored')), false)
      assert.deepEqual(warnings, [])
      await ignore.close?.()
      const strict = await openOurs(spec, cfg, base, 'write')
      await assert.rejects(async () => strict.update!(b('a'), b('ignored')), (err) => err instanceof TableError && /duplicate entry: "a"/.test(err.message))
      assert.equal(await strict.update!(b('Brand-New'), b('stored')), true)
      model.set('brand-new', 'stored')
      await strict.close?.()
      await table.close?.()

      const real = await postmap(cfg, ['-s', spec])
      assert.equal(real.code, 0, real.stderr)
      const want = [...model].map(([k, v]) => `${k}\t${v}`).sort()
      assert.deepEqual(sortedLines(real.stdout), want)
      assert.deepEqual(await ourSequence(spec, cfg), want)
      counts[type] += 2
      const failures: string[] = []
      const keys = [...model.keys(), 'root', 'carol', 'new5@added.example', 'NEW1@ADDED.EXAMPLE']
      counts[type] += await compareLookups(spec, cfg, keys, failures, [true])
      assert.deepEqual(failures, [], failures.slice(0, 20).join('\n'))
    }
  }
})

test('a table created from scratch by us is read by postmap', async () => {
  const cfg = configs[0]
  for (const type of TYPE_NAMES) {
    const base = path.join(cfg.dir, `scratch-${type}`)
    assert.ok(!fs.existsSync(`${base}.db`))
    const table = await openOurs(`${type}:${base}`, cfg, PROXYWRITE_FLAGS, 'write')
    for (const [k, v] of ENTRIES) assert.equal(await table.update!(b(k), b(v)), true, k)
    await table.close?.()
    assert.ok(fs.existsSync(`${base}.db`))
    const real = await postmap(cfg, ['-s', `${type}:${base}`])
    assert.equal(real.code, 0, real.stderr)
    // keys were ASCII-lowercased by FOLD_FIX, then casefolded by the UTF-8 layer
    const realLines = sortedLines(real.stdout)
    assert.equal(realLines.length, ENTRIES.length)
    assert.deepEqual(await ourSequence(`${type}:${base}`, cfg), realLines)
    counts[type] += 2
    const failures: string[] = []
    counts[type] += await compareLookups(`${type}:${base}`, cfg, queryKeys(), failures, [true])
    assert.deepEqual(failures, [], failures.slice(0, 20).join('\n'))
    // a key stored by us is found by real postmap under its folded form
    const r = await postmap(cfg, ['-q', 'Bob@Example.COM', `${type}:${base}`])
    assert.deepEqual({stdout: r.stdout, code: r.code}, {stdout: 'REJECT go away\n', code: 0})
    // and postmap's type check agrees: the other type cannot open it
    const other = type === 'hash' ? 'btree' : 'hash'
    fs.copyFileSync(`${base}.db`, `${base}-copy.db`)
    const wrong = await postmap(cfg, ['-q', 'a', `${other}:${base}-copy`])
    assert.equal(wrong.code, 1)
    await assert.rejects(openOurs(`${other}:${base}-copy`, cfg, postmapQueryFlags(true)), (err: Error) => {
      assert.ok(wrong.stderr.includes(err.message), `real: ${wrong.stderr} ours: ${err.message}`)
      return true
    })
  }
})

test('a table written without NULs (TRY0NULL) is read by postmap, which tries both conventions', async () => {
  const cfg = configs[1]
  for (const type of TYPE_NAMES) {
    const base = path.join(cfg.dir, `nonul-${type}`)
    const table = await openOurs(`${type}:${base}`, cfg, DICT_FLAG.LOCK | DICT_FLAG.TRY0NULL | DICT_FLAG.DUP_REPLACE | DICT_FLAG.SYNC_UPDATE, 'write')
    for (const [k, v] of ENTRIES.slice(0, 12)) assert.equal(await table.update!(b(k), b(v)), true)
    assert.equal(await table.delete!(b('a')), false, 'not stored: only the first 12 entries were')
    assert.equal(await table.delete!(b('CAROL')), true)
    await table.close?.()
    const raw = await runCommand('/usr/bin/db5.3_dump', ['-p', `${base}.db`])
    assert.match(raw.stdout, /^ alice@example.com$/m, 'keys are stored without a trailing NUL')
    const failures: string[] = []
    counts[type] += await compareLookups(`${type}:${base}`, cfg, ENTRIES.slice(0, 14).map(([k]) => k), failures)
    assert.deepEqual(failures, [], failures.slice(0, 20).join('\n'))
    const real = await postmap(cfg, ['-s', `${type}:${base}`])
    assert.equal(real.code, 0, real.stderr)
    assert.equal(sortedLines(real.stdout).length, 11)
    assert.deepEqual(await ourSequence(`${type}:${base}`, cfg), sortedLines(real.stdout))
    counts[type]++
  }
})

test('a missing hash or btree file fails to open as in Postfix, and read mode creates nothing', async () => {
  const cfg = configs[0]
  for (const type of TYPE_NAMES) {
    const file = path.join(cfg.dir, `absent-${type}`)
    const real = await postmap(cfg, ['-q', 'x', `${type}:${file}`])
    assert.equal(real.code, 1)
    await assert.rejects(openOurs(`${type}:${file}`, cfg, postmapQueryFlags(true)), (err: Error) => {
      assert.ok(err instanceof TableError)
      assert.ok(real.stderr.includes(err.message), `real: ${real.stderr} ours: ${err.message}`)
      return true
    })
    assert.ok(!fs.existsSync(`${file}.db`), 'opening for reading creates nothing')
  }
})

test('changed() notices a rebuild by postmap', async () => {
  const cfg = configs[0]
  for (const type of TYPE_NAMES) {
    const spec = await makeTable(cfg, type, `chg-${type}`)
    const table = await openOurs(spec, cfg, postmapQueryFlags(true))
    assert.equal(table.changed!(), false)
    await sleep(20)
    assert.equal((await postmap(cfg, [spec])).code, 0)
    assert.equal(table.changed!(), true)
    await table.close?.()
  }
})

test('locking: an exclusive flock() on the .db file holds back real postmap -q and our lookups', async () => {
  const cfg = configs[0]
  for (const type of TYPE_NAMES) {
    const spec = await makeTable(cfg, type, `lock-${type}`)
    const dbFile = `${spec.slice(type.length + 1)}.db`
    const table = await openOurs(spec, cfg, postmapQueryFlags(true))
    const holder = fs.openSync(dbFile, 'r')
    try {
      assert.equal(flock(holder, 'exclusive'), true)
      // real postmap waits for the lock ...
      const child = spawnTracked(POSTMAP, ['-c', cfg.dir, '-q', 'alice@example.com', spec], {stdio: ['ignore', 'pipe', 'pipe']})
      let out = ''
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      // ... and so does our table, without blocking the event loop
      const ours = table.lookup('alice@example.com')
      assert.ok(ours instanceof Promise, 'a contended lookup is answered asynchronously')
      let oursDone = false
      void (ours as Promise<unknown>).then(() => (oursDone = true))
      await sleep(400)
      assert.equal(child.exitCode, null, 'postmap -q is still waiting for the lock')
      assert.equal(oursDone, false, 'our lookup is still waiting for the lock')
      // a shared lock is refused while the exclusive one is held, and granted after
      const other = fs.openSync(dbFile, 'r')
      assert.equal(flock(other, 'shared', false), false)
      assert.equal(flock(holder, 'none'), true)
      assert.equal(flock(other, 'shared', false), true)
      assert.equal(flock(other, 'none'), true)
      fs.closeSync(other)
      assert.equal(await ours, 'OK')
      assert.equal(await exited, 0)
      assert.equal(out, 'OK\n')
      counts[type] += 2
    } finally {
      fs.closeSync(holder)
      await table.close?.()
    }
    // when free, a lookup is answered synchronously
    const again = await openOurs(spec, cfg, postmapQueryFlags(true))
    assert.equal(again.lookup('alice@example.com'), 'OK')
    await again.close?.()
  }
})

test('fcntlLock: whole-file record locks conflict across processes', async () => {
  const file = path.join(root, 'fcntl-lock')
  fs.writeFileSync(file, 'x')
  const fd = fs.openSync(file, 'r+')
  try {
    assert.equal(fcntlLock(fd, 'exclusive', false), true)
    // another process cannot take a conflicting lock while we hold ours (F_SETLK fails)
    const probe = `
      const fs = require('node:fs')
      const n = require(${JSON.stringify(path.resolve('build/Release/postfix_native.node'))})
      const fd = fs.openSync(${JSON.stringify(file)}, 'r')
      process.stdout.write(String(n.fcntlLock(fd, n.constants.F_RDLCK, false)))`
    const held = await runCommand(process.execPath, ['-e', probe])
    assert.equal(held.stdout, 'false', held.stderr)
    assert.equal(fcntlLock(fd, 'none'), true)
    const free = await runCommand(process.execPath, ['-e', probe])
    assert.equal(free.stdout, 'true', free.stderr)
  } finally {
    fs.closeSync(fd)
  }
})

test('setsid and chroot helpers (in a child process)', async () => {
  const addon = JSON.stringify(path.resolve('build/Release/postfix_native.node'))
  const r = await runCommand(process.execPath, ['-e', `
    const n = require(${addon})
    const sid = n.setsid()
    let chrootError
    try { n.chroot(Buffer.from('/nonexistent-dir')) } catch (e) { chrootError = e.code + ' ' + e.errno }
    process.stdout.write(JSON.stringify({same: sid === process.pid, chrootError}))`])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), {same: true, chrootError: 'ENOENT 2'})
})

test('case counts', () => {
  for (const type of TYPE_NAMES) console.log(`${type}: ${counts[type]} cases compared with postmap`)
  assert.ok(counts.hash > 100 && counts.btree > 100)
})
