// `proxymap dump` of an lmdb table reads it in batches (LmdbTable.sequenceBatch over the
// addon's seekBatch): many entries per lock, transaction and native call. The batches must
// list exactly what postmap -s lists, in its order, across batch boundaries (by count and
// by size), and a file truncated under a listing must be an error, not a SIGBUS. A single
// sequence() step reads a few entries ahead (the proxymap service's sequence requests):
// a change to the table between steps must still be seen at the next step.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import {after, before, test} from 'node:test'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {lmdbType} from '../../src/lib/tables/lmdb.js'
import {SequenceCursor, Table, TableError} from '../../src/lib/tables/table.js'
import {makeConfig, warningLog} from '../differential/table-helpers.js'
import {PROJECT_BIN, PostfixInstance, createPostfixInstance, requirePostfix, runCommand} from '../helpers/postfix.js'

/** More than two batches of DUMP_BATCH (1024) entries. */
const ENTRIES = 2600
/** Every 500th value is this big: a few of them fill a batch's 256 KB before 1024 entries. */
const BIG_VALUE = 70_000

const value = (i: number): string => (i % 500 === 7 ? `big-${i}-${'v'.repeat(BIG_VALUE)}` : `value-${i}`)
const source = Array.from({length: ENTRIES}, (_, i) => `key${i}@example.com ${value(i)}\n`).join('')

let pf: PostfixInstance
let table: string
const warnings: string[] = []

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-dump-batches-'})
  table = await pf.createTable('lmdb', `${pf.data}/batches`, source)
})

after(async () => {
  await pf?.destroy()
})

async function openTable(name: string, mode: 'read' | 'write' = 'read'): Promise<Table> {
  return lmdbType.open(name.slice('lmdb:'.length), {
    mode, dictFlags: postmapQueryFlags(true), config: makeConfig(pf.etc, {}), log: warningLog(warnings),
    openNested: () => { throw new Error('unused') },
  })
}

/** The whole listing through sequence(), one entry per call, as Postfix steps. */
async function oneByOne(t: Table): Promise<string[]> {
  const cursor: SequenceCursor = {}
  const lines: string[] = []
  for (let e = await t.sequence!('first', cursor); e; e = await t.sequence!('next', cursor)) lines.push(`${e[0]}\t${e[1]}`)
  return lines
}

test('sequenceBatch lists what sequence() lists, in batches cut by count and by size', async () => {
  const t = await openTable(table)
  try {
    const expected = await oneByOne(t)
    assert.equal(expected.length, ENTRIES)
    const cursor: SequenceCursor = {}
    const sizes: number[] = []
    const lines: string[] = []
    for (let batch = await t.sequenceBatch!('first', cursor, 100); batch.length > 0; batch = await t.sequenceBatch!('next', cursor, 100)) {
      sizes.push(batch.length)
      for (const [k, v] of batch) lines.push(`${k}\t${v}`)
    }
    assert.deepEqual(lines, expected)
    assert.equal(sizes[0], 100)
    assert.equal(sizes.reduce((a, n) => a + n, 0), ENTRIES)
    // Unbounded by count: a batch ends once about 256 KB of keys and values are packed.
    const big = await t.sequenceBatch!('first', {}, 100_000)
    assert.ok(big.length > 1 && big.length < ENTRIES, `one batch held ${big.length} entries`)
    assert.ok(big.some(([, v]) => v.length > BIG_VALUE))
    // After the end: nothing, and a cursor that never began has nothing next.
    assert.deepEqual(await t.sequenceBatch!('next', cursor, 100), [])
    assert.deepEqual(await t.sequenceBatch!('next', {}, 100), [])
  } finally {
    await t.close?.()
  }
})

test('proxymap dump prints exactly what postmap -s prints, directly and through our proxymap', async () => {
  const real = await pf.postmap(['-s', table])
  assert.equal(real.code, 0, real.stderr)
  const direct = await runCommand(process.execPath, [PROJECT_BIN, 'dump', '-c', pf.etc, table], {timeoutMs: 60_000})
  assert.equal(direct.code, 0, direct.stderr)
  assert.equal(direct.stdout, real.stdout)
  await pf.approve({read: [table]})
  await pf.startOurs()
  try {
    const proxied = await runCommand(process.execPath, [PROJECT_BIN, 'dump', '-c', pf.etc, `proxy:${table}`], {timeoutMs: 60_000})
    assert.equal(proxied.code, 0, proxied.stderr)
    assert.equal(proxied.stdout, real.stdout)
  } finally {
    await pf.stopOurs()
  }
})

// Read-only: the file's size and mtime are checked around each read. Read-write (as
// proxywrite opens tables): no such check, the read of a page past the new end faults, and
// the fault guard turns the SIGBUS into the error.
for (const mode of ['read', 'write'] as const) {
  test(`a file truncated under a listing (${mode} mode): the next batch is a retry error, the process lives on`, async () => {
    const copy = `${pf.data}/truncated-${mode}`
    fs.copyFileSync(`${table.slice('lmdb:'.length)}.lmdb`, `${copy}.lmdb`)
    const t = await openTable(`lmdb:${copy}`, mode)
    try {
      const cursor: SequenceCursor = {}
      const first = await t.sequenceBatch!('first', cursor, 10)
      assert.equal(first.length, 10)
      fs.truncateSync(`${copy}.lmdb`, 8192)
      await assert.rejects(async () => t.sequenceBatch!('next', cursor, 10_000), (err: unknown) => {
        assert.ok(err instanceof TableError, String(err))
        assert.equal(err.kind, 'retry')
        assert.match(err.message, mode === 'read' ? /^error seeking lmdb:.*: the file was changed while it was open$/
          : /^error seeking lmdb:.*: Bus error while reading the file/)
        return true
      })
    } finally {
      await t.close?.()
    }
  })
}

test('sequence() reads ahead, yet a step after a change sees it: a delete by real postmap -d, an update through the same instance', async () => {
  const copy = `${pf.data}/changing`
  fs.copyFileSync(`${table.slice('lmdb:'.length)}.lmdb`, `${copy}.lmdb`)
  fs.chownSync(`${copy}.lmdb`, fs.statSync(pf.data).uid, fs.statSync(pf.data).gid)
  const reader = await openTable(`lmdb:${copy}`)
  const writer = await openTable(`lmdb:${copy}`, 'write')
  try {
    const all = await oneByOne(reader)
    const keyAt = (i: number): string => all[i]!.split('\t')[0]!
    const cursor: SequenceCursor = {}
    const seen: string[] = []
    const step = async (fn: 'first' | 'next'): Promise<void> => {
      const e = await reader.sequence!(fn, cursor)
      assert.ok(e)
      seen.push(e[0])
    }
    await step('first')
    await step('next')
    // Both a few steps ahead of the cursor: within what the first step read.
    const deleted = keyAt(5)
    const r = await pf.postmap(['-d', deleted, `lmdb:${copy}`])
    assert.equal(r.code, 0, r.stderr)
    for (let i = 2; i < 8; i++) await step('next')
    assert.ok(!seen.includes(deleted), `${deleted} was answered after real postmap -d removed it`)
    assert.deepEqual(seen, all.slice(0, 9).map(l => l.split('\t')[0]).filter(k => k !== deleted))
    // An update through the proxywrite-style instance of this process (its own writes do
    // not make the file "changed" for it): a reader in the same instance sees it.
    const wcursor: SequenceCursor = {}
    const first = await writer.sequence!('first', wcursor)
    assert.ok(first)
    const inserted = `${first[0]}-inserted`
    assert.equal(await writer.update!(inserted, 'new value'), true)
    const next = await writer.sequence!('next', wcursor)
    assert.deepEqual(next, [inserted, 'new value'])
  } finally {
    await reader.close?.()
    await writer.close?.()
  }
})
