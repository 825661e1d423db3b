// Throughput of updates through our proxywrite (each one in the table file before its reply) on a
// 10,000-entry table made by real postmap, with 1 and with 8 concurrent clients, for each
// table type. hash/btree updates are group commits to a shadow copy swapped in by one rename
// (see src/lib/tables/berkeley-db.ts); cdb updates rebuild the file.
//   npx tsc -p . && node --import tsx bench/write.ts
// WRITE_ENTRIES (table size), WRITE_SECONDS (per measurement), WRITE_TYPES (lmdb,hash,...),
// WRITE_POSTFIX=0 to skip real Postfix's proxywrite (measured in the same run by default).

import {pathToFileURL} from 'node:url'
import {ServiceConnection} from '../src/lib/client/connection.js'
import {DICT_FLAG, PROXY_STAT} from '../src/lib/protocol/index.js'
import {createPostfixInstance} from '../test/helpers/postfix.js'

const ENTRIES = Number(process.env.WRITE_ENTRIES ?? 10_000)
const SECONDS = Number(process.env.WRITE_SECONDS ?? 5)
const TYPES = (process.env.WRITE_TYPES ?? 'lmdb,hash,btree,cdb').split(',')
const FLAGS = DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE | DICT_FLAG.FOLD_FIX

/** Updates per second through the proxywrite socket, `clients` connections for `seconds`. */
export async function run(socket: string, table: string, clients: number, seconds = SECONDS, entries = ENTRIES): Promise<number> {
  const deadline = performance.now() + seconds * 1000
  let done = 0
  const started = performance.now()
  await Promise.all(Array.from({length: clients}, async (_, id) => {
    const c = await ServiceConnection.connect(socket, {timeoutMs: 60_000})
    try {
      for (let n = 0; performance.now() < deadline; n++) {
        const key = `key${(id * 7919 + n * 104729) % entries}@example.com`
        const reply = await c.request({request: 'update', dialect: 'legacy', table, instanceFlags: 0, requestFlags: FLAGS, key, value: `new-${id}-${n}`})
        if (reply.status !== PROXY_STAT.OK) throw new Error(`${table}: update status ${reply.status}`)
        done++
      }
    } finally {
      c.close()
    }
  }))
  return done / ((performance.now() - started) / 1000)
}

/** What FLAGS updates go to: ENTRIES entries made by real postmap. */
export const writeSource = (entries: number): string =>
  Array.from({length: entries}, (_, i) => `key${i}@example.com value-${i}-${'x'.repeat(20)}\n`).join('')

async function main(): Promise<void> {
  const pf = await createPostfixInstance({prefix: 'pm-bench-write-'})
  try {
    const content = writeSource(ENTRIES)
    const tables: string[] = []
    for (const type of TYPES) tables.push(await pf.createTable(type, `${pf.data}/bench-${type}`, content))
    await pf.approve({read: tables, write: tables})
    const ours = new Map<string, number>()
    await pf.startOurs()
    for (const table of tables)
      for (const clients of [1, 8]) ours.set(`${table} ${clients}`, await run(pf.socketPath('proxywrite'), table, clients))
    await pf.stopOurs()
    // The same through real Postfix 3.7's proxywrite (in place: DB->sync() or an LMDB commit
    // per update, no crash safety for hash/btree); it cannot update cdb tables at all.
    const theirs = new Map<string, number>()
    if (process.env.WRITE_POSTFIX !== '0') {
      await pf.startPostfix()
      for (const table of tables.filter(t => !t.startsWith('cdb:')))
        for (const clients of [1, 8]) theirs.set(`${table} ${clients}`, await run(pf.socketPath('proxywrite'), table, clients))
      await pf.stopPostfix()
    }
    console.log(`updates/s through proxywrite, ${ENTRIES}-entry tables, ${SECONDS} s per cell`)
    console.log('| type | clients | Postfix 3.7 | ours | ratio |')
    console.log('|---|---|---|---|---|')
    for (const table of tables) {
      for (const clients of [1, 8]) {
        const o = ours.get(`${table} ${clients}`)!
        const t = theirs.get(`${table} ${clients}`)
        console.log(`| ${table.split(':')[0]} | ${clients} | ${t === undefined ? '-' : Math.round(t)} | ${Math.round(o)} | ${t === undefined ? '-' : `${(o / t).toFixed(2)}x`} |`)
      }
    }
  } finally {
    await pf.destroy()
  }
}

// Run as a script (npm run bench:write), not when bench/all.mts imports run().
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
