// proxymap update / delete / dump against real Postfix 3.7: through Postfix's own
// proxywrite and proxymap, through ours, and directly on lmdb files; every resulting file
// is checked with real `postmap -s`. Real postmap -d / postalias -d go through our
// proxywrite. (Stock Postfix 3.7 clients cannot update or sequence through proxy: at all.)

import assert from 'node:assert/strict'
import {promises as fsp} from 'node:fs'
import {after, before, test} from 'node:test'
import {ServiceConnection} from '../../src/lib/client/connection.js'
import {DICT_FLAG} from '../../src/lib/protocol/index.js'
import {
  POSTMAP, PROJECT_BIN, PostfixInstance, RunResult, createPostfixInstance, postfixIds, requirePostfix, runCommand,
} from '../helpers/postfix.js'

let pf: PostfixInstance
/** Through real Postfix's proxywrite/proxymap. */
let viaPostfix: string
/** Through our server. */
let viaOurs: string
/** Real postmap -d / postalias -d through our proxywrite. */
let realDelete: string
let realAliases: string
/** Two clients sequencing at once. */
let shared: string
/** Failing batches through our server. */
let failing: string
const noDelete = 'inline:{one=1}'
/** Opened directly, never through a server. */
let direct: string

// Over LMDB's key limit (511 bytes, as Postfix's): the write fails.
const LONG_KEY = 'k'.repeat(3000)

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-maintain-'})
  viaPostfix = await pf.createTable('lmdb', `${pf.data}/via-postfix`, 'alpha 1\nbeta 2\n')
  viaOurs = await pf.createTable('lmdb', `${pf.data}/via-ours`, 'alpha 1\nbeta 2\n')
  realDelete = await pf.createTable('lmdb', `${pf.data}/real-delete`, 'a 1\nb 2\nc 3\nd 4\n')
  realAliases = await pf.createTable('lmdb', `${pf.data}/aliases`, 'root: admin\npostmaster: root\nfoo: bar\n', {command: 'postalias'})
  shared = await pf.createTable('lmdb', `${pf.data}/shared`,
    Array.from({length: 25}, (_, i) => `key${String(i).padStart(2, '0')} value${i}\n`).join(''))
  failing = await pf.createTable('lmdb', `${pf.data}/failing`, 'existing yes\n')
  direct = await pf.createTable('lmdb', `${pf.etc}/direct`, 'alpha 1\nbeta 2\n')
  const all = [viaPostfix, viaOurs, realDelete, realAliases, shared, failing, noDelete]
  await pf.approve({read: all, write: all})
})

after(async () => {
  await pf?.destroy()
})

/** Our CLI, as root, against the instance's configuration. */
function cli(args: string[], input?: string): Promise<RunResult> {
  return runCommand(process.execPath, [PROJECT_BIN, ...args.slice(0, 1), '-c', pf.etc, ...args.slice(1)], {input, timeoutMs: 60_000})
}

/** Real `postmap -s` on the file: the ground truth. */
async function postmapDump(table: string): Promise<string> {
  const r = await runCommand(POSTMAP, ['-c', pf.etc, '-s', table], {timeoutMs: 20_000})
  assert.equal(r.code, 0, `postmap -s ${table}: ${r.stderr}`)
  return r.stdout
}

/** Lines in order, without postalias's YP_LAST_MODIFIED / YP_MASTER_NAME entries (they vary). */
const sorted = (text: string): string => text.split('\n').filter(l => l !== '' && !l.startsWith('YP_')).sort().map(l => `${l}\n`).join('')

function ok(r: RunResult, what: string): void {
  assert.equal(r.code, 0, `${what} exited ${r.code}: stdout=${r.stdout} stderr=${r.stderr}`)
}

/** The same update/delete/dump session through whichever server runs. */
async function exerciseThroughService(table: string): Promise<void> {
  const proxy = `proxy:${table}`
  let r = await cli(['update', proxy, 'gamma', '3'])
  ok(r, 'update')
  assert.equal(r.stdout, `${proxy}: 1 updated\n`)

  // Postmap input on stdin: comments, blank lines, a continued line, a folded key that
  // replaces an existing one (proxywrite always replaces).
  r = await cli(['update', proxy, '-'], '# new entries\ndelta 4\n\nAlpha 10\nepsilon five\n  and more\n')
  ok(r, 'update -')
  assert.equal(r.stdout, `${proxy}: 3 updated\n`)

  r = await cli(['delete', proxy, 'beta'])
  ok(r, 'delete')
  assert.equal(r.stdout, `${proxy}: 1 deleted, 0 not found\n`)

  r = await cli(['delete', proxy, 'no-such-key'])
  assert.equal(r.code, 1, 'deleting a missing key exits 1, as postmap -d')
  assert.match(r.stderr, /no-such-key: not found/)

  r = await cli(['delete', '--json', proxy, '-'], 'gamma\nnot-there\n')
  ok(r, 'delete --json -')
  assert.deepEqual(JSON.parse(r.stdout), {table: proxy, deleted: 1, missing: 1, missingKeys: ['not-there']})

  const expected = 'alpha\t10\ndelta\t4\nepsilon\tfive  and more\n'
  assert.equal(await postmapDump(table), expected, 'postmap -s on the file')

  r = await cli(['dump', proxy])
  ok(r, 'dump')
  assert.equal(r.stdout, expected, 'dump through the proxymap service lists what postmap -s lists')
  assert.equal(r.stderr, '', 'no progress output in a pipe')

  r = await cli(['dump', '--json', proxy])
  ok(r, 'dump --json')
  assert.deepEqual(JSON.parse(r.stdout), {
    table: proxy, count: 3,
    entries: [{key: 'alpha', value: '10'}, {key: 'delta', value: '4'}, {key: 'epsilon', value: 'five  and more'}],
  })
}

test('update, delete and dump through real Postfix 3.7 proxywrite/proxymap; postmap -s agrees', async () => {
  await pf.startPostfix()
  try {
    await exerciseThroughService(viaPostfix)
  } finally {
    await pf.stopPostfix()
  }
})

test('update, delete and dump through our server; postmap -s agrees', async () => {
  await pf.startOurs()
  try {
    await exerciseThroughService(viaOurs)
  } finally {
    await pf.stopOurs()
  }
})

test('real postmap -d, postmap -d - and postalias -d through our proxywrite', async () => {
  await pf.startOurs()
  try {
    let r = await pf.postmap(['-d', 'a', `proxy:${realDelete}`])
    assert.equal(r.code, 0, r.stderr)
    r = await pf.postmap(['-d', '-', `proxy:${realDelete}`], {input: 'c\nnot-there\n'})
    assert.equal(r.code, 0, r.stderr)
    r = await pf.postmap(['-d', 'not-there', `proxy:${realDelete}`])
    assert.equal(r.code, 1, 'a missing key: exit 1')
    assert.equal(await postmapDump(realDelete), 'b\t2\nd\t4\n')

    r = await pf.postalias(['-d', 'foo', `proxy:${realAliases}`])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(sorted(await postmapDump(realAliases)), sorted('@\t@\npostmaster\troot\nroot\tadmin\n'))
    // ... and our dump through the service sees the same.
    const ours = await cli(['dump', `proxy:${realAliases}`])
    ok(ours, 'dump aliases')
    assert.equal(sorted(ours.stdout), sorted('@\t@\npostmaster\troot\nroot\tadmin\n'))
  } finally {
    await pf.stopOurs()
  }
})

test('two clients sequencing one table at once through our server each see every key once', async () => {
  await pf.startOurs()
  const connections: ServiceConnection[] = []
  try {
    for (let i = 0; i < 2; i++) connections.push(await ServiceConnection.connect(pf.socketPath('proxymap'), {timeoutMs: 10_000}))
    const flags = DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN | DICT_FLAG.UTF8_REQUEST
    const seen: string[][] = [[], []]
    const done = [false, false]
    for (let round = 0; !done[0] || !done[1]; round++) {
      assert.ok(round < 100, 'the iterations end')
      for (const i of [0, 1]) {
        if (done[i]) continue
        const reply = await connections[i].request({
          request: 'sequence', dialect: 'legacy', table: shared, instanceFlags: 0, requestFlags: flags, func: round === 0 ? 0 : 1,
        })
        if (reply.status === 1) done[i] = true
        else {
          assert.equal(reply.status, 0)
          seen[i].push(`${reply.key}\t${reply.value}\n`)
        }
      }
    }
    const everything = await postmapDump(shared)
    assert.equal(seen[0].length, 25)
    assert.equal(seen[0].join(''), everything)
    assert.equal(seen[1].join(''), everything)
  } finally {
    for (const c of connections) c.close()
    await pf.stopOurs()
  }
})

test('a failing batch stops at the failing key and reports how many were applied (our server)', async () => {
  await pf.startOurs()
  try {
    const proxy = `proxy:${failing}`
    let r = await cli(['update', proxy, '-'], `one 1\ntwo 2\n${LONG_KEY} 3\nfour 4\n`)
    assert.equal(r.code, 4, `RETRY exit code; stderr=${r.stderr}`)
    assert.match(r.stderr, new RegExp(`update of ${proxy} stopped at key "${LONG_KEY}" \\(stdin line 3\\) after 2 updated`))
    assert.equal(await postmapDump(failing), 'existing\tyes\none\t1\ntwo\t2\n', 'nothing after the failing key')

    r = await cli(['update', '--json', proxy, '-'], `five 5\n${LONG_KEY} 6\n`)
    assert.equal(r.code, 4)
    const report = JSON.parse(r.stdout)
    assert.equal(report.updated, 1)
    assert.equal(report.failed.key, LONG_KEY)
    assert.equal(report.failed.line, 2)
    assert.equal(report.failed.exitCode, 4)

    assert.equal(await postmapDump(failing), 'existing\tyes\nfive\t5\none\t1\ntwo\t2\n')

    // A table type that cannot delete (our server answers RETRY: inline cannot be opened
    // for writing): the batch stops at the first key.
    r = await cli(['delete', `proxy:${noDelete}`, '-'], 'one\ntwo\n')
    assert.ok(r.code === 4 || r.code === 5, `exit ${r.code}: ${r.stderr}`)
    assert.match(r.stderr, /delete of proxy:inline:\{one=1\} stopped at key "one" \(stdin line 1\) after 0 deleted/)
  } finally {
    await pf.stopOurs()
  }
})

test('a table not in proxy_write_maps: DENY, exit 3', async () => {
  await pf.startOurs()
  try {
    const r = await cli(['update', `proxy:lmdb:${pf.data}/unlisted`, 'a', 'b'])
    assert.equal(r.code, 3, r.stderr)
    assert.match(r.stderr, /proxywrite service is not configured for table/)
  } finally {
    await pf.stopOurs()
  }
})

test('direct update, delete and dump on an lmdb file; postmap -s agrees', async () => {
  let r = await cli(['update', direct, 'Gamma', '3'])
  ok(r, 'update')
  r = await cli(['update', direct, '-'], 'alpha 10\ndelta 4\n')
  ok(r, 'update -')
  assert.equal(r.stdout, `${direct}: 2 updated\n`)
  r = await cli(['delete', direct, 'beta', 'missing'])
  ok(r, 'delete')
  assert.equal(r.stdout, `${direct}: 1 deleted, 1 not found\n`)
  r = await cli(['delete', direct, 'missing'])
  assert.equal(r.code, 1)

  const expected = 'alpha\t10\ndelta\t4\ngamma\t3\n'
  assert.equal(await postmapDump(direct), expected)
  r = await cli(['dump', direct])
  ok(r, 'dump')
  assert.equal(r.stdout, expected)
  r = await cli(['dump', '--json', direct])
  ok(r, 'dump --json')
  assert.equal(JSON.parse(r.stdout).count, 3)
  r = await cli(['dump', '--output', 'table', '--max-rows', '2', direct])
  ok(r, 'dump --output table')
  assert.match(r.stdout, /│ alpha +│ 10 +│/)
  assert.doesNotMatch(r.stdout, /gamma/)
  assert.match(r.stdout, /1 more not shown \(3 entries/)
  assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colour in a pipe')

  // Real postmap -i on the file (as root) sees our entries and vice versa.
  const pm = await runCommand(POSTMAP, ['-c', pf.etc, '-i', direct], {input: 'zeta 6\n'})
  assert.equal(pm.code, 0, pm.stderr)
  r = await cli(['dump', direct])
  assert.equal(r.stdout, `${expected}zeta\t6\n`)
})

test('direct: a failing batch (key too long, malformed line) stops and reports the count', async () => {
  let r = await cli(['update', direct, '-'], `eta 7\n${LONG_KEY} 8\ntheta 9\n`)
  assert.equal(r.code, 4, r.stderr)
  assert.match(r.stderr, /after 1 updated/)
  r = await cli(['update', '--json', direct, '-'], 'iota 9\nkappa\nlambda 11\n')
  assert.equal(r.code, 2)
  const report = JSON.parse(r.stdout)
  assert.equal(report.updated, 1)
  assert.equal(report.failed.line, 2)
  assert.match(report.failed.message, /expected format: key whitespace value/)
  const after = await postmapDump(direct)
  assert.match(after, /^eta\t7$/m)
  assert.match(after, /^iota\t9$/m)
  assert.doesNotMatch(after, /theta|lambda/)
})

test('postscreen-style cache cleanup through our proxywrite: sequence with deletes in between, hash and btree', async () => {
  const names: string[] = []
  for (const type of ['hash', 'btree', 'lmdb']) {
    names.push(await pf.createTable(type, `${pf.data}/cleanup-${type}`,
      Array.from({length: 300}, (_, i) => `key${String(i).padStart(3, '0')} value${i}\n`).join('')))
  }
  const all = [viaPostfix, viaOurs, realDelete, realAliases, shared, failing, noDelete]
  await pf.approve({read: [...all, ...names], write: [...all, ...names]})
  await pf.startOurs()
  const connection = await ServiceConnection.connect(pf.socketPath('proxywrite'), {timeoutMs: 10_000})
  try {
    // What postscreen's dict_cache sends through a 3.7 proxy: its open flags DUP_REPLACE,
    // OPEN_LOCK and UTF8_REQUEST (never LOCK with OPEN_LOCK: Postfix panics on both);
    // updates and deletes get SYNC_UPDATE from the server.
    const flags = DICT_FLAG.DUP_REPLACE | DICT_FLAG.OPEN_LOCK | DICT_FLAG.UTF8_REQUEST
    for (const table of names) {
      const seen: string[] = []
      for (let func = 0; ; func = 1) {
        const reply = await connection.request({request: 'sequence', dialect: 'legacy', table, instanceFlags: 0, requestFlags: flags, func})
        if (reply.status === 1) break
        assert.equal(reply.status, 0, `${table}: sequence status ${reply.status}`)
        seen.push(reply.key!)
        // Every key whose number is odd "expires": deleted while the iteration goes on,
        // each delete a commit that (hash, btree) replaces the file under the cursor.
        if (Number(reply.key!.slice(3)) % 2 === 1) {
          const removed = await connection.request({request: 'delete', dialect: 'legacy', table, instanceFlags: 0, requestFlags: flags, key: reply.key!})
          assert.equal(removed.status, 0, `${table}: delete ${reply.key}`)
        }
      }
      assert.equal(seen.length, 300, `${table}: every key seen once`)
      assert.equal(new Set(seen).size, 300)
      const left = (await postmapDump(table)).split('\n').filter(l => l !== '')
      assert.equal(left.length, 150, `${table}: postmap -s lists the keys left`)
      assert.ok(left.every(l => Number(l.slice(3, 6)) % 2 === 0))
    }
  } finally {
    connection.close()
    await pf.stopOurs()
  }
})

test('a hash table that postfix may write in a directory it may not: our proxywrite updates in place, with a warning', async () => {
  const table = await pf.createTable('hash', `${pf.etc}/in-place`, 'alpha 1\nbeta 2\n')
  const {uid, gid} = postfixIds()
  await fsp.chown(`${table.slice('hash:'.length)}.db`, uid, gid)
  const all = [viaPostfix, viaOurs, realDelete, realAliases, shared, failing, noDelete]
  await pf.approve({read: [...all, table], write: [...all, table]})
  await pf.startOurs()
  try {
    let r = await cli(['update', `proxy:${table}`, 'gamma', '3'])
    ok(r, 'update')
    r = await cli(['delete', `proxy:${table}`, 'alpha'])
    ok(r, 'delete')
    await pf.waitForOurStderr(/in-place\.db: cannot create .*in-place\.db\.proxymap-tmp: .*; updating in place/)
  } finally {
    await pf.stopOurs()
  }
  assert.equal(await postmapDump(table), 'beta\t2\ngamma\t3\n')
})
