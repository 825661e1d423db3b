// Real Postfix writers on a table while our proxywrite writes it: the locking must
// interoperate. Four connections stream updates through our proxywrite while real
// `postmap -d` (which takes Postfix's lock for each delete) and, for hash and btree,
// `postmap -i` (which locks the whole file before it opens it) run against the same file.
// Afterwards real `postmap -s` opens the table, every acknowledged update is there and
// every key postmap deleted is gone.
//
// Not tested because Postfix itself cannot do it: `postmap -i` on an lmdb table writes
// without any lock (postmap adds DICT_FLAG_LOCK only for -q, -d and -s, and lmdb tables
// get no whole-file lock from mkmap), so it corrupts a table that any other process writes,
// Postfix's own proxywrite included; and `postmap -d` on hash/btree opens the file before
// it locks it, so a delete that waited for our rename goes to the replaced file.

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {ServiceConnection} from '../../src/lib/client/connection.js'
import {DICT_FLAG, PROXY_STAT} from '../../src/lib/protocol/index.js'
import {PostfixInstance, createPostfixInstance, requirePostfix} from '../helpers/postfix.js'

const POSTFIX_RUNS = 25
const WRITERS = 4
const INITIAL = 500

let pf: PostfixInstance

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-concurrent-'})
})

after(async () => {
  await pf?.destroy()
})

for (const [type, postfixWrites] of [['lmdb', ['-d']], ['hash', ['-i']], ['btree', ['-i']]] as const) {
  test(`${type}: real postmap ${postfixWrites.join(' and ')} while our proxywrite writes the same file`, async () => {
    const table = await pf.createTable(type, `${pf.data}/concurrent-${type}`, Array.from({length: INITIAL}, (_, i) => `init${i} v${i}\n`).join(''))
    await pf.approve({read: [table], write: [table]})
    await pf.startOurs()
    const acknowledged = new Map<string, string>()
    let stop = false
    try {
      const writers = Array.from({length: WRITERS}, async (_, id) => {
        const c = await ServiceConnection.connect(pf.socketPath('proxywrite'), {timeoutMs: 60_000})
        try {
          for (let n = 0; !stop; n++) {
            const key = `w${id}-${n % 200}`
            const value = `x${n}`
            const r = await c.request({request: 'update', dialect: 'legacy', table, instanceFlags: 0,
              requestFlags: DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE, key, value})
            assert.equal(r.status, PROXY_STAT.OK, `update ${key}`)
            acknowledged.set(key, value)
          }
        } finally {
          c.close()
        }
      })
      for (let i = 0; i < POSTFIX_RUNS; i++) {
        if (postfixWrites.includes('-i' as never)) {
          const r = await pf.postmap(['-i', table], {input: `pm${i} added\n`, asPostfix: true})
          assert.equal(r.code, 0, r.stderr)
        }
        if (postfixWrites.includes('-d' as never)) {
          const r = await pf.postmap(['-d', `init${i}`, table], {asPostfix: true})
          assert.equal(r.code, 0, r.stderr)
        }
      }
      stop = true
      await Promise.all(writers)
    } finally {
      stop = true
      await pf.stopOurs()
    }
    assert.equal(pf.ourExit()?.signal ?? null, null, `our server ended on its own: ${pf.ourStderr().slice(-2000)}`)
    const dump = await pf.postmap(['-s', table])
    assert.equal(dump.code, 0, dump.stderr)
    const entries = new Map(dump.stdout.split('\n').filter(Boolean).map(line => line.split('\t') as [string, string]))
    for (const [key, value] of acknowledged) assert.equal(entries.get(key), value, `acknowledged update of ${key}`)
    for (let i = 0; i < POSTFIX_RUNS; i++) {
      if (postfixWrites.includes('-i' as never)) assert.equal(entries.get(`pm${i}`), 'added', `postmap -i of pm${i}`)
      if (postfixWrites.includes('-d' as never)) assert.equal(entries.has(`init${i}`), false, `postmap -d of init${i}`)
    }
    assert.ok(acknowledged.size > 0)
    console.log(`# ${type}: ${POSTFIX_RUNS} postmap ${postfixWrites.join('/')} runs during proxywrite writes to ${acknowledged.size} keys; all kept`)
  })
}
