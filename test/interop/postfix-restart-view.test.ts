// When a table file changes, Postfix's proxymap exits before its next accept (pre_accept:
// dict_changed_name() sees another mtime second on a cdb/hash/btree/lmdb descriptor, or the
// file gone; lmdb, a MULTI_WRITER table, only the latter), and master's next process opens
// every table afresh: its open replies show an instance's flags as opened, not what earlier
// lookups taught it. Ours reopens changed tables in place and must show the same flags as
// Postfix's at each step: the real 3.7 postmap/postalias clients get the same bytes from
// both servers (one Postfix proxymap process for the whole session, as one serve).

import assert from 'node:assert/strict'
import fs from 'node:fs'
import {test} from 'node:test'
import {RunResult, instancesDestroyedAfterTests} from '../helpers/postfix.js'
import {startWireRecorder} from '../helpers/wire-recorder.js'

const instance = instancesDestroyedAfterTests()
const SOURCE = 'alice@example.com alice-box\nbob@example.com bob-box\n'
/** A fixed second (and 100 ms), so that "the same second" and "another second" are certain. */
const T0 = Date.UTC(2024, 0, 1) / 1000 + 0.1

test('after a table file changes, open replies show fresh or learned flags exactly where Postfix 3.7 shows them', async () => {
  const server = await instance('3.7', 'pm-restart-view-', {proxymapProcesses: 1, main: {max_use: '100000', max_idle: '3600'}})
  const client = await instance('3.7', 'pm-restart-view-client-')
  const hash = await server.createTable('hash', 'h', SOURCE)
  const lmdb = await server.createTable('lmdb', 'l', SOURCE)
  await server.approve({read: [hash, lmdb]})
  const fileOf = (table: string, suffix: string): string => `${table.slice(table.indexOf(':') + 1)}${suffix}`
  const stamp = (file: string, seconds: number): void => fs.utimesSync(file, seconds, seconds)
  const replace = (file: string): void => {
    fs.copyFileSync(file, `${file}.new`)
    fs.renameSync(`${file}.new`, file)
    stamp(file, T0)
  }
  const hashFile = fileOf(hash, '.db')
  const lmdbFile = fileOf(lmdb, '.lmdb')
  const reset = (): void => {
    for (const table of [hash, lmdb]) stamp(fileOf(table, ''), T0 - 10) // the sources are older than the tables
    for (const file of [hashFile, lmdbFile]) stamp(file, T0)
  }

  const q = (table: string): Promise<RunResult> => client.postmap(['-q', 'alice@example.com', `proxy:${table}`])
  const alias = (table: string): Promise<RunResult> => client.postalias(['-q', 'bob@example.com', `proxy:${table}`])
  const steps: {label: string; before?: () => void; run: () => Promise<RunResult>}[] = [
    {label: 'hash: first lookup', run: () => q(hash)},
    {label: 'hash: mtime changed within its second', before: () => stamp(hashFile, T0 + 0.5), run: () => alias(hash)},
    {label: 'hash: mtime in another second', before: () => stamp(hashFile, T0 + 2), run: () => alias(hash)},
    {label: 'hash: unchanged since', run: () => alias(hash)},
    {label: 'lmdb: first lookup', run: () => q(lmdb)},
    {label: 'lmdb: mtime in another second (MULTI_WRITER)', before: () => stamp(lmdbFile, T0 + 5), run: () => alias(lmdb)},
    {label: 'lmdb: file replaced', before: () => replace(lmdbFile), run: () => alias(lmdb)},
    {label: 'hash: after the lmdb change', run: () => alias(hash)},
  ]

  const recorder = await startWireRecorder((['proxymap', 'proxywrite'] as const).map(service =>
    ({service, listen: client.socketPath(service), forward: server.socketPath(service)})))
  const session = async (): Promise<{label: string; stdout: string; code: number; wire: string[]}[]> => {
    reset()
    const results = []
    for (const step of steps) {
      step.before?.()
      recorder.clear()
      const r = await step.run()
      results.push({label: step.label, stdout: r.stdout, code: r.code, wire: recorder.transcript()})
    }
    return results
  }
  try {
    await server.startPostfix()
    const theirs = await session()
    await server.stopPostfix()
    // What the steps are about: Postfix restarted exactly at the steps that say so.
    const restarts = server.maillog().split('\n').filter(l => /has changed -- restarting/.test(l))
    assert.equal(restarts.length, 2, `Postfix's proxymap restarted at the expected steps:\n${restarts.join('\n')}`)
    await server.startOurs()
    const ours = await session()
    for (let i = 0; i < steps.length; i++) assert.deepEqual(ours[i], theirs[i], steps[i]!.label)
    const openFlags = new Set(theirs.map(r => /status\\0\d+\\0flags\\0(\d+)/.exec(r.wire.join(' '))?.[1]))
    assert.ok(openFlags.size >= 2, `the open replies differ between steps: ${[...openFlags].join(', ')}`)
  } finally {
    await recorder.close()
    await server.stopOurs()
    await server.stopPostfix()
  }
})
