// Crash safety of our proxywrite: our `proxymap serve` receives a stream of updates and
// deletes on lmdb, hash, btree and cdb tables from several connections at once, and is
// killed with SIGKILL at random moments, again and again (restarted each time, the
// clients carrying on). After every kill, real `postmap -s TYPE:FILE` (for cdb, which
// Postfix cannot sequence: postmap -q - and tinycdb's cdb -l) must open each table and
// show every update that was acknowledged (an OK reply, or NOKEY for a delete of a
// missing key) with its last acknowledged value; only a request still waiting for its
// reply when the server died may have gone either way.

import assert from 'node:assert/strict'
import {promises as fsp} from 'node:fs'
import {after, before, test} from 'node:test'
import {ServiceConnection} from '../../src/lib/client/connection.js'
import {DICT_FLAG, PROXY_STAT} from '../../src/lib/protocol/index.js'
import {PROJECT_BIN, PostfixInstance, createPostfixInstance, requirePostfix, runCommand, sleep, waitFor} from '../helpers/postfix.js'

const ALL_TYPES = ['lmdb', 'hash', 'btree', 'cdb'] as const
type TableKind = typeof ALL_TYPES[number]
/** CRASH_TYPES=hash,btree narrows the run (when hunting a failure). */
const TYPES: readonly TableKind[] = process.env.CRASH_TYPES ? process.env.CRASH_TYPES.split(',') as TableKind[] : ALL_TYPES
const KILLS = Number(process.env.CRASH_KILLS ?? 30)
const CLIENTS_PER_TABLE = 3
const KEYS_PER_CLIENT = 300
const INITIAL_ENTRIES = 1500
/** The flags of postscreen's and verify's cache updates (the server adds SYNC_UPDATE). */
const UPDATE_FLAGS = DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE | DICT_FLAG.FOLD_FIX

/** What a key must hold: its last acknowledged value (undefined: absent), and maybe one unanswered request. */
interface Expectation {
  acked: string | undefined
  inFlight?: {value: string | undefined}
}

let pf: PostfixInstance
const tables = new Map<TableKind, string>()
const model = new Map<TableKind, Map<string, Expectation>>()

// A reproducible run: CRASH_SEED picks another one.
let seed = Number(process.env.CRASH_SEED ?? 20261126)
function random(): number {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}
const pick = (n: number): number => Math.floor(random() * n)

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-crash-'})
  const initial = Array.from({length: INITIAL_ENTRIES}, (_, i) => `init-${i} start-${i}\n`).join('')
  for (const type of TYPES) {
    tables.set(type, await pf.createTable(type, `${pf.data}/crash-${type}`, initial))
    const expected = new Map<string, Expectation>()
    for (let i = 0; i < INITIAL_ENTRIES; i++) expected.set(`init-${i}`, {acked: `start-${i}`})
    model.set(type, expected)
  }
  await pf.approve({read: [...tables.values()], write: [...tables.values()]})
})

after(async () => {
  await pf?.destroy()
})

/** A value of varied length, so that pages split, overflow pages appear and hash tables grow. */
function valueFor(cycle: number, n: number): string {
  const size = random() < 0.05 ? 1500 + pick(3000) : pick(120)
  return `v${cycle}.${n}.${'x'.repeat(size)}`
}

interface Counters {
  updates: number
  deletes: number
  perType: Map<TableKind, number>
  /** Acknowledgements per type since the server last started. */
  thisCycle: Map<TableKind, number>
}

/**
 * One client: updates (and some deletes) of its own keys, one request at a time, until the
 * connection breaks. The expectation of a key changes only with an acknowledgement.
 */
async function client(type: TableKind, id: number, cycle: number, counters: Counters): Promise<void> {
  const table = tables.get(type)!
  const expected = model.get(type)!
  let connection: ServiceConnection
  try {
    connection = await ServiceConnection.connect(pf.socketPath('proxywrite'), {timeoutMs: 30_000})
  } catch {
    return // killed before we got in
  }
  try {
    for (let n = 0; ; n++) {
      // Mostly our own keys; now and then an initial key (shared by nobody else at a time).
      const key = random() < 0.1 ? `init-${id * INITIAL_ENTRIES / CLIENTS_PER_TABLE + pick(INITIAL_ENTRIES / CLIENTS_PER_TABLE)}`
        : `c${id}-k${pick(KEYS_PER_CLIENT)}`
      const entry = expected.get(key) ?? {acked: undefined}
      expected.set(key, entry)
      const remove = random() < 0.2
      const value = remove ? undefined : valueFor(cycle, n)
      entry.inFlight = {value}
      let status: number
      try {
        const reply = await connection.request(remove
          ? {request: 'delete', dialect: 'legacy', table, instanceFlags: 0, requestFlags: UPDATE_FLAGS, key}
          : {request: 'update', dialect: 'legacy', table, instanceFlags: 0, requestFlags: UPDATE_FLAGS, key, value})
        status = reply.status
      } catch {
        return // the server died: this request stays in flight
      }
      assert.ok(status === PROXY_STAT.OK || (remove && status === PROXY_STAT.NOKEY),
        `${type} ${remove ? 'delete' : 'update'} ${key}: status ${status}`)
      entry.acked = value
      entry.inFlight = undefined
      if (remove) counters.deletes++
      else counters.updates++
      counters.perType.set(type, (counters.perType.get(type) ?? 0) + 1)
      counters.thisCycle.set(type, (counters.thisCycle.get(type) ?? 0) + 1)
    }
  } finally {
    connection.close()
  }
}

/** `key<TAB>value` lines as a Map. */
function parseLines(text: string): Map<string, string> {
  const entries = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const tab = line.indexOf('\t')
    entries.set(line.slice(0, tab), line.slice(tab + 1))
  }
  return entries
}

/**
 * What real Postfix reads from the table: postmap -s; for cdb, which Postfix 3.7 cannot
 * sequence, postmap -q - with every key we know of, plus tinycdb's key list (`cdb -l`)
 * to catch keys that should not be there.
 */
async function readWithPostfix(type: TableKind): Promise<Map<string, string>> {
  const table = tables.get(type)!
  if (type !== 'cdb') {
    const r = await pf.postmap(['-s', table], {timeoutMs: 60_000})
    assert.equal(r.code, 0, `postmap -s ${table} after a kill: exit ${r.code}: ${r.stderr}`)
    return parseLines(r.stdout)
  }
  const keys = [...model.get(type)!.keys()]
  const r = await pf.postmap(['-q', '-', table], {input: keys.map(k => `${k}\n`).join(''), timeoutMs: 60_000})
  assert.ok(r.code === 0 || r.code === 1, `postmap -q - ${table} after a kill: exit ${r.code}: ${r.stderr}`)
  const found = parseLines(r.stdout)
  const listed = await runCommand('cdb', ['-l', `${table.slice('cdb:'.length)}.cdb`])
  assert.equal(listed.code, 0, `cdb -l: ${listed.stderr}`)
  for (const line of listed.stdout.split('\n')) {
    const key = line.slice(line.indexOf(':') + 1)
    if (line !== '' && !found.has(key)) found.set(key, '(not found by postmap -q)')
  }
  return found
}

/** What Postfix reads, checked against the expectations; settles requests in flight. */
async function checkWithPostmap(type: TableKind): Promise<number> {
  const actual = await readWithPostfix(type)
  let checked = 0
  const expected = model.get(type)!
  for (const [key, entry] of expected) {
    const found = actual.get(key)
    if (entry.inFlight) {
      assert.ok(found === entry.acked || found === entry.inFlight.value,
        `${type} ${key}: holds ${found?.slice(0, 40)}, neither the acknowledged ${entry.acked?.slice(0, 40)} nor the unanswered ${entry.inFlight.value?.slice(0, 40)}`)
      entry.acked = found
      entry.inFlight = undefined
    } else {
      assert.equal(found, entry.acked, `${type} ${key}: an acknowledged ${entry.acked === undefined ? 'delete' : 'update'} was lost`)
    }
    checked++
  }
  for (const key of actual.keys()) assert.ok(expected.has(key), `${type}: unexpected key ${key}`)
  return checked
}

test(`SIGKILL at random moments (${KILLS} times) loses no acknowledged update; postmap -s reads every table`, {timeout: 600_000}, async (t) => {
  const counters: Counters = {updates: 0, deletes: 0, perType: new Map(), thisCycle: new Map()}
  let checks = 0
  let keysChecked = 0
  for (let cycle = 0; cycle < KILLS; cycle++) {
    await pf.startOurs()
    const pid = pf.ourPid()!
    counters.thisCycle.clear()
    const clients: Promise<void>[] = []
    for (const type of TYPES) for (let id = 0; id < CLIENTS_PER_TABLE; id++) clients.push(client(type, id, cycle, counters))
    // Let the writes of every table get going (however loaded the machine), then kill at a
    // random moment.
    await waitFor(() => TYPES.every(type => (counters.thisCycle.get(type) ?? 0) >= 2), 120_000,
      () => `cycle ${cycle}: writes to every table acknowledged (${[...counters.thisCycle].join(' ')}); server stderr: ${pf.ourStderr()}`)
    await sleep(pick(500))
    process.kill(pid, 'SIGKILL')
    await Promise.all(clients)
    const stopped = await pf.stopOurs()
    assert.equal(stopped.signal, 'SIGKILL', 'the server died of our SIGKILL')
    for (const type of TYPES) {
      keysChecked += await checkWithPostmap(type)
      checks++
    }
  }
  t.diagnostic(`${KILLS} kills per table type (${TYPES.join(', ')}), ${counters.updates} updates and ${counters.deletes} deletes acknowledged, ` +
    `${checks} postmap -s checks covering ${keysChecked} keys; acknowledged per type: ${[...counters.perType].map(([k, n]) => `${k} ${n}`).join(', ')}`)
})

/** `cdb -d` records (tinycdb's dump), sorted: the same entries in the same encoding. */
async function cdbRecordsOf(file: string): Promise<string[]> {
  const r = await runCommand('cdb', ['-d', file])
  assert.equal(r.code, 0, `cdb -d ${file}: ${r.stderr}`)
  return r.stdout.split('\n').filter(l => l !== '').sort()
}

test('cdb update and delete, directly and through our proxywrite: what postmap would have built', async () => {
  const direct = await pf.createTable('cdb', `${pf.data}/cdb-direct`, 'alpha 1\nbeta 2\nGamma 3\n')
  const viaOurs = await pf.createTable('cdb', `${pf.data}/cdb-via-ours`, 'alpha 1\nbeta 2\nGamma 3\n')
  await pf.approve({read: [...tables.values(), viaOurs], write: [...tables.values(), viaOurs]})
  const cli = (args: string[], input?: string) =>
    runCommand(process.execPath, [PROJECT_BIN, args[0], '-c', pf.etc, ...args.slice(1)], {input, timeoutMs: 60_000})
  const expectedSource = 'alpha 10\ndelta 4\ngamma 3\nepsilon five\n'
  const reference = await pf.createTable('cdb', `${pf.data}/cdb-reference`, expectedSource)

  const exercise = async (table: string): Promise<void> => {
    let r = await cli(['update', table, 'Alpha', '10'])
    assert.equal(r.code, 0, r.stderr)
    r = await cli(['update', table, '-'], 'delta 4\nepsilon five\n')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /2 updated/)
    r = await cli(['delete', table, 'beta', 'missing'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /1 deleted, 1 not found/)
    r = await cli(['delete', table, 'missing'])
    assert.equal(r.code, 1, 'a missing key: exit 1')
  }
  await exercise(direct)
  await pf.startOurs()
  try {
    await exercise(`proxy:${viaOurs}`)
  } finally {
    await pf.stopOurs()
  }

  const keys = 'alpha\nbeta\ngamma\ndelta\nepsilon\nmissing\n'
  const want = await pf.postmap(['-q', '-', reference], {input: keys})
  for (const table of [direct, viaOurs]) {
    const got = await pf.postmap(['-q', '-', table], {input: keys})
    assert.equal(got.code, 0, got.stderr)
    assert.equal(got.stdout, want.stdout, `postmap -q - ${table}`)
    const file = `${table.slice('cdb:'.length)}.cdb`
    assert.deepEqual(await cdbRecordsOf(file), await cdbRecordsOf(`${reference.slice('cdb:'.length)}.cdb`), `cdb -d ${file}`)
    // Still the table's owner and mode: the postfix-owned file was replaced by root (direct) or our server.
    const [st, ref] = await Promise.all([fsp.stat(file), fsp.stat(`${reference.slice('cdb:'.length)}.cdb`)])
    assert.deepEqual([st.uid, st.gid, st.mode], [ref.uid, ref.gid, ref.mode], `owner and mode of ${file}`)
  }
})
