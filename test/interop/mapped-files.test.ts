// A table file replaced, overwritten in place, truncated or filled with garbage while 8
// clients keep looking keys up through our proxymap: the server never dies (Postfix's own
// proxymap dies of SIGBUS when a mapped lmdb file shrinks under it), and never answers
// wrongly. Every key is in both the old and the new table, with different values, so each
// answer must be the old value, the new value or RETRY; "not found" or any other value is
// wrong. Afterwards the new content is answered.
//
// lmdb maps its file; libdb would map a small read-only btree file (the addon turns that
// off); hash is here because it reads the same way.

import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import {promisify} from 'node:util'
import {after, before, test} from 'node:test'
import {ServiceConnection} from '../../src/lib/client/connection.js'
import {DICT_FLAG, PROXY_STAT} from '../../src/lib/protocol/index.js'
import {PostfixInstance, createPostfixInstance, requirePostfix, sleep} from '../helpers/postfix.js'

const run = promisify(execFile)

const READERS = 8
const CASE_MS = 2500
/**
 * The readers go on this long with the new file in place: more than the second after which
 * a table that failed to open is tried again.
 */
const SETTLE_MS = 1500
const KEYS = 200
/** Extra entries in the new table, so that old and new files differ in size. */
const NEW_EXTRA = 3000
/** How long the broken state of each step stays in place before the next one. */
const STEP_PAUSE_MS = 15
/** What postmap -q sends (DICT_FLAG_LOCK | DUP_WARN | UTF8_REQUEST). */
const LOOKUP_FLAGS = DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN | DICT_FLAG.UTF8_REQUEST

const TYPES = ['lmdb', 'btree', 'hash'] as const
type Type = (typeof TYPES)[number]
const SUFFIX: Record<Type, string> = {lmdb: '.lmdb', btree: '.db', hash: '.db'}

const oldValue = (i: number): string => `old-${i}`
const newValue = (i: number): string => `new-${i}`
const oldSource = Array.from({length: KEYS}, (_, i) => `k${i} ${oldValue(i)}\n`).join('')
const newSource = Array.from({length: KEYS}, (_, i) => `k${i} ${newValue(i)}\n`).join('')
  + Array.from({length: NEW_EXTRA}, (_, i) => `extra${i} ${'p'.repeat(40)}\n`).join('')

interface Files {
  table: string
  live: string
  oldFile: string
  newFile: string
}

let pf: PostfixInstance
const files = new Map<Type, Files>()
/** An lmdb table that proxywrite writes while proxymap reads it. */
let written: string
/** An lmdb table that proxywrite has open read-write (no file check there: the fault guard alone). */
let writable: Files

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-mapped-'})
  for (const type of TYPES) {
    const table = await pf.createTable(type, `${pf.etc}/${type}-live`, oldSource)
    await pf.createTable(type, `${pf.etc}/${type}-old`, oldSource)
    await pf.createTable(type, `${pf.etc}/${type}-new`, newSource)
    files.set(type, {
      table,
      live: `${pf.etc}/${type}-live${SUFFIX[type]}`,
      oldFile: `${pf.etc}/${type}-old${SUFFIX[type]}`,
      newFile: `${pf.etc}/${type}-new${SUFFIX[type]}`,
    })
  }
  written = await pf.createTable('lmdb', `${pf.data}/written`, oldSource)
  const rwTable = await pf.createTable('lmdb', `${pf.data}/rw-live`, oldSource)
  await pf.createTable('lmdb', `${pf.data}/rw-new`, newSource)
  writable = {table: rwTable, live: `${pf.data}/rw-live.lmdb`, oldFile: '', newFile: `${pf.data}/rw-new.lmdb`}
  await pf.approve({read: [...TYPES.map(t => files.get(t)!.table), written, rwTable], write: [written, rwTable]})
  await pf.startOurs()
})

after(async () => {
  await pf?.stopOurs()
  await pf?.destroy()
})

const cp = (from: string, to: string): Promise<unknown> => run('cp', [from, to])
const truncate = (file: string, size: number): Promise<unknown> => run('truncate', ['-s', String(size), file])

/** Overwrite `file` in place (no truncation) with random bytes of its own size. */
async function garbageInPlace(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r+')
  try {
    const {size} = await handle.stat()
    await handle.write(randomBytes(Math.max(size, 4096)), 0, Math.max(size, 4096), 0)
  } finally {
    await handle.close()
  }
}

/** One step of each case: break or replace the live file with `source`'s content. */
const CASES: Record<string, (f: Files, source: string, step: number) => Promise<void>> = {
  'renamed over': async (f, source) => {
    await fsp.copyFile(source, `${f.live}.tmp`)
    await fsp.rename(`${f.live}.tmp`, f.live)
  },
  'overwritten in place (cp)': async (f, source) => {
    await cp(source, f.live)
  },
  'truncated to 0 bytes': async (f, source) => {
    await truncate(f.live, 0)
    await sleep(STEP_PAUSE_MS)
    await cp(source, f.live)
  },
  'truncated to half': async (f, source) => {
    const {size} = await fsp.stat(f.live)
    await truncate(f.live, Math.floor(size / 2))
    await sleep(STEP_PAUSE_MS)
    await cp(source, f.live)
  },
  'overwritten with garbage': async (f, source, step) => {
    if (step % 2 === 0) {
      await garbageInPlace(f.live)
    } else {
      // garbage of another size, through cp
      await fsp.writeFile(`${f.live}.garbage`, randomBytes(8192 + (step % 7) * 4096))
      await cp(`${f.live}.garbage`, f.live)
    }
    await sleep(STEP_PAUSE_MS)
    await cp(source, f.live)
  },
}

interface Tally {
  answers: number
  retries: number
  wrong: string[]
  failures: string[]
}

/** One client looking keys up until `until`, on one connection (another one after a failure). */
async function reader(table: string, until: number, tally: Tally): Promise<void> {
  let connection: ServiceConnection | undefined
  for (let n = 0; Date.now() < until; n++) {
    try {
      connection ??= await ServiceConnection.connect(pf.socketPath('proxymap'), {timeoutMs: 10_000})
      const i = (n * 7919 + Math.floor(Math.random() * KEYS)) % KEYS
      const r = await connection.request({request: 'lookup', dialect: 'legacy', table, instanceFlags: 0, requestFlags: LOOKUP_FLAGS, key: `k${i}`})
      if (r.status === PROXY_STAT.RETRY) tally.retries++
      else if (r.status === PROXY_STAT.OK && (r.value === oldValue(i) || r.value === newValue(i))) tally.answers++
      else if (tally.wrong.length < 10) tally.wrong.push(`k${i}: status ${r.status} value ${JSON.stringify(r.value)}`)
      else tally.wrong.push('')
    } catch (err) {
      tally.failures.push((err as Error).message)
      connection?.close()
      connection = undefined
      if (tally.failures.length > 20) return
      await sleep(20)
    }
  }
  connection?.close()
}

async function lookup(table: string, key: string, service: 'proxymap' | 'proxywrite' = 'proxymap'): Promise<{status: number; value?: string}> {
  const c = await ServiceConnection.connect(pf.socketPath(service), {timeoutMs: 10_000})
  try {
    return await c.request({request: 'lookup', dialect: 'legacy', table, instanceFlags: 0, requestFlags: LOOKUP_FLAGS, key})
  } finally {
    c.close()
  }
}

for (const type of TYPES) {
  for (const [name, mutate] of Object.entries(CASES)) {
    test(`${type}: file ${name} under ${READERS} concurrent readers: no death, no wrong answer, then the new content`, async (t) => {
      const f = files.get(type)!
      await cp(f.oldFile, f.live)
      // Each case on a server of its own, when an earlier case killed one.
      if (pf.ourPid() === undefined) await pf.stopOurs().then(() => pf.startOurs())
      const pid = pf.ourPid()
      assert.ok(pid, 'our server runs')
      const tally: Tally = {answers: 0, retries: 0, wrong: [], failures: []}
      const until = Date.now() + CASE_MS
      const readers = Array.from({length: READERS}, () => reader(f.table, until + SETTLE_MS, tally))
      let steps = 0
      while (Date.now() < until) {
        await mutate(f, steps % 2 === 0 ? f.newFile : f.oldFile, steps)
        steps++
        await sleep(STEP_PAUSE_MS)
      }
      await cp(f.newFile, f.live)
      await Promise.all(readers)

      const deadline = Date.now() + 5000
      let last: {status: number; value?: string} = {status: -1}
      while (Date.now() < deadline) {
        last = await lookup(f.table, 'k7')
        if (last.status === PROXY_STAT.OK && last.value === newValue(7)) break
        await sleep(50)
      }
      t.diagnostic(`${steps} steps, ${tally.answers} answers, ${tally.retries} retries`)
      const context = `${steps} steps, ${tally.answers} answers, ${tally.retries} retries; stderr: ${pf.ourStderr().slice(-1500)}`
      assert.equal(pf.ourExit(), undefined, `our server is still running: ${context}`)
      assert.equal(pf.ourPid(), pid, `same server process: ${context}`)
      assert.deepEqual(tally.failures, [], `no request failed: ${context}`)
      assert.deepEqual(tally.wrong.filter(Boolean), [], `no wrong answer (${tally.wrong.length} in all): ${context}`)
      assert.ok(tally.answers > 0, `the readers got answers: ${context}`)
      assert.ok(steps > 5, `the file was changed many times: ${context}`)
      assert.deepEqual([last.status, last.value], [PROXY_STAT.OK, newValue(7)], `the new content is answered: ${context}`)
    })
  }
}

test('lmdb: proxywrite commits while proxymap readers read the same file: every lookup is answered, none retried', async () => {
  const writer = await ServiceConnection.connect(pf.socketPath('proxywrite'), {timeoutMs: 10_000})
  const tally: Tally = {answers: 0, retries: 0, wrong: [], failures: []}
  const until = Date.now() + 1500
  const readers = Array.from({length: READERS}, () => reader(written, until, tally))
  let writes = 0
  try {
    for (; Date.now() < until; writes++) {
      const i = writes % KEYS
      const value = writes % 2 === 0 ? newValue(i) : oldValue(i)
      const r = await writer.request({request: 'update', dialect: 'legacy', table: written, instanceFlags: 0,
        requestFlags: DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE, key: `k${i}`, value})
      assert.equal(r.status, PROXY_STAT.OK)
    }
  } finally {
    writer.close()
  }
  await Promise.all(readers)
  const context = `${writes} writes, ${tally.answers} answers, ${tally.retries} retries`
  assert.ok(writes > 10 && tally.answers > 100, context)
  assert.deepEqual([tally.retries, tally.failures, tally.wrong], [0, [], []], context)
})

test('lmdb: a file truncated under proxywrite\'s read-write table: retry (a caught SIGBUS), then the new content, same server', async () => {
  if (pf.ourPid() === undefined) await pf.stopOurs().then(() => pf.startOurs())
  const pid = pf.ourPid()
  assert.deepEqual(await lookup(writable.table, 'k1', 'proxywrite').then(r => [r.status, r.value]), [PROXY_STAT.OK, oldValue(1)])
  await truncate(writable.live, 0)
  const broken = await lookup(writable.table, 'k1', 'proxywrite')
  assert.equal(broken.status, PROXY_STAT.RETRY, `a lookup in the truncated file: ${JSON.stringify(broken)}`)
  await cp(writable.newFile, writable.live)
  let last: {status: number; value?: string} = {status: -1}
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
    last = await lookup(writable.table, 'k1', 'proxywrite')
    if (last.status === PROXY_STAT.OK) break
  }
  assert.deepEqual([last.status, last.value], [PROXY_STAT.OK, newValue(1)], 'the new content, from a reopened table')
  assert.equal(pf.ourPid(), pid, `same server process: ${pf.ourStderr().slice(-1500)}`)
  assert.match(pf.ourStderr(), /warning: error reading lmdb:\S*rw-live: Bus error while reading the file/)
})

test('the server logged no defect', (t) => {
  const faults = pf.ourStderr().match(/(Bus error|Segmentation fault) while reading/g) ?? []
  t.diagnostic(`faults caught: ${faults.length}; stale handles: ${pf.ourStderr().match(/was changed while it was open/g)?.length ?? 0}; truncated files refused: ${pf.ourStderr().match(/the file is truncated/g)?.length ?? 0}`)
  assert.doesNotMatch(pf.ourStderr(), /TypeError|RangeError|Uncaught|unhandled|at .*\.js:\d+|lookup error:/)
})
