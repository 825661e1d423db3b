// Our CLI as a client of real Postfix 3.11 proxymap/proxywrite (the v2 dialect), next to
// 3.11's own postmap: through a wire recorder, each of our commands must send exactly the
// bytes 3.11's postmap sends for the same operation, get the same answers, and never make
// the real proxymap die (a 3.11 proxymap panics on an lmdb/hash/btree request whose flags
// lack TRY0NULL|TRY1NULL, and master then throttles the whole service for every daemon).
// Then, without --dialect: every command finds the dialect by itself against real 3.7,
// 3.10, 3.11 and our own server.

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {
  POSTFIX_VERSIONS, PROJECT_BIN, PostfixInstance, PostfixVersion, RunResult, createPostfixInstance, runCommand,
} from '../helpers/postfix.js'
import {WireRecorder, startWireRecorder} from '../helpers/wire-recorder.js'

const SOURCE = 'alice@example.com alice-box\nBob@Example.com bob box\ncarol carol@example.org\nécole école-box\n'
const KEYS = 'alice@example.com\nBOB@EXAMPLE.COM\nbob@example.com\nCarol\nx\n10.1.2.3\nÉcole\n'

let server: PostfixInstance
/** Only its configuration is used: its sockets are the recorder's, relaying to `server`. */
let client: PostfixInstance
let recorder: WireRecorder
const readTables = new Map<string, string>()
const writeTables = new Map<string, string>()

before(async () => {
  server = await createPostfixInstance({version: '3.11', prefix: 'pm-v2c-'})
  client = await createPostfixInstance({version: '3.11', prefix: 'pm-v2c-client-'})
  readTables.set('texthash', await server.createTable('texthash', 'th', SOURCE, {build: false}))
  for (const type of ['lmdb', 'cdb', 'hash', 'btree']) readTables.set(type, await server.createTable(type, `t-${type}`, SOURCE))
  readTables.set('pcre', await server.createTable('pcre', 'p.pcre', '/^bob@/ pcre-bob\n/^(?i)carol$/ pcre-carol\n', {build: false}))
  readTables.set('cidr', await server.createTable('cidr', 'c.cidr', '10.0.0.0/8 ten\n', {build: false}))
  readTables.set('inline', 'inline:{alice@example.com=inline-alice, École=inline-école}')
  for (const type of ['lmdb', 'hash', 'btree']) writeTables.set(type, await server.createTable(type, `${server.data}/w-${type}`, `${SOURCE}dave1 d1\ndave2 d2\n`))
  await server.approve({read: [...readTables.values(), ...writeTables.values()], write: [...writeTables.values()]})
  await server.startPostfix()
  recorder = await startWireRecorder((['proxymap', 'proxywrite'] as const).map(service =>
    ({service, listen: client.socketPath(service), forward: server.socketPath(service)})))
})

after(async () => {
  await recorder?.close()
  await client?.destroy()
  await server?.destroy()
})

/** Our CLI, as root; PROXYMAP_POSTFIX_VERSION=3.11 says what the configuration belongs to. */
function ours(args: string[], opts: {input?: string; config?: string; env?: Record<string, string>} = {}): Promise<RunResult> {
  const [command, ...rest] = args
  return runCommand(process.execPath, [PROJECT_BIN, command!, '-c', opts.config ?? client.etc, ...rest],
    {input: opts.input, timeoutMs: 60_000, env: {...process.env, PROXYMAP_POSTFIX_VERSION: '3.11', ...opts.env}})
}

/** What the recorder saw since the last call, as lines; sequence replies sorted when `sortable`. */
function conversation(sortable = false): string[] {
  const lines = recorder.transcript()
  recorder.clear()
  return sortable ? lines.map(l => l.split(' | ').sort().join(' | ')) : lines
}

/** The real proxymap processes must all still be alive: master logs every one that died. */
function assertNoProxymapDied(): void {
  const deaths = server.maillog().split('\n').filter(l => /panic|fatal|killed by signal|exit status|throttling/.test(l))
  assert.deepEqual(deaths, [], 'a real 3.11 proxymap died')
}

test('query and dump speak 3.11 postmap\'s bytes to a real 3.11 proxymap and get its answers', async () => {
  for (const [type, table] of readTables) {
    conversation()
    const real = await client.postmap(['-q', '-', `proxy:${table}`], {input: KEYS})
    const realWire = conversation()
    const mine = await ours(['query', `proxy:${table}`, '-'], {input: KEYS})
    const myWire = conversation()
    assert.equal(real.code, 0, `${type}: postmap -q -: ${real.stderr}`)
    assert.ok(real.stdout.length > 0, `${type}: the case finds something`)
    assert.equal(mine.stdout, real.stdout, `${type}: answers (stderr: ${mine.stderr})`)
    assert.equal(mine.code, real.code, `${type}: exit code`)
    assert.deepEqual(myWire, realWire, `${type}: query - speaks as postmap -q -`)
    // And each answer equals 3.11's postmap on the table itself, key by key.
    // (Through any proxymap, texthash keys of the file are not folded: skip it here.)
    for (const key of type === 'texthash' ? [] : KEYS.split('\n').filter(Boolean)) {
      const direct = await client.postmap(['-q', key, table])
      const one = await ours(['query', `proxy:${table}`, key])
      assert.equal(one.stdout, direct.stdout, `${type} ${key}: through the proxy as on the file`)
      assert.equal(one.code, direct.code === 0 ? 0 : 1, `${type} ${key}: exit code ${one.stderr}`)
    }
    conversation()
    // 3.11's proxymap dies on a sequence of a table type without one (pcre, cidr): skip those.
    if (type === 'pcre' || type === 'cidr') continue
    const realDump = await client.postmap(['-s', `proxy:${table}`])
    const realDumpWire = conversation(true)
    const myDump = await ours(['dump', `proxy:${table}`])
    const myDumpWire = conversation(true)
    assert.equal(realDump.code, 0, `${type}: postmap -s: ${realDump.stderr}`)
    assert.deepEqual(myDump.stdout.split('\n').sort(), realDump.stdout.split('\n').sort(), `${type}: dump`)
    assert.deepEqual(myDumpWire, realDumpWire, `${type}: dump speaks as postmap -s`)
  }
  assertNoProxymapDied()
})

test('update and delete speak 3.11 postmap -i -r / -d bytes to a real 3.11 proxywrite', async () => {
  for (const [type, table] of writeTables) {
    conversation()
    const realUpdate = await client.postmap(['-i', '-r', `proxy:${table}`], {input: 'New@Example.com new-value\n', asPostfix: true})
    const realUpdateWire = conversation()
    const myUpdate = await ours(['update', `proxy:${table}`, 'New@Example.com', 'new-value'])
    const myUpdateWire = conversation()
    assert.equal(realUpdate.code, 0, `${type}: postmap -i -r: ${realUpdate.stderr}`)
    assert.equal(myUpdate.code, 0, `${type}: update: ${myUpdate.stderr}`)
    assert.deepEqual(myUpdateWire, realUpdateWire, `${type}: update speaks as postmap -i -r`)
    assert.equal((await client.postmap(['-q', 'new@example.com', table])).stdout, 'new-value\n', `${type}: stored, folded`)

    // A 3.11 proxywrite keeps one instance per instance_flags: the -i and -d instances of a
    // Berkeley DB file do not see each other's changes, so each side deletes its own key
    // (of the same length), and the conversations differ only in that key.
    const realDelete = await client.postmap(['-d', 'Dave1', `proxy:${table}`], {asPostfix: true})
    const realDeleteWire = conversation()
    assert.equal(realDelete.code, 0, `${type}: postmap -d: ${realDelete.stderr}`)
    const myDelete = await ours(['delete', `proxy:${table}`, 'Dave2'])
    const myDeleteWire = conversation().map(line => line.replace(/Dave2/g, 'Dave1'))
    assert.equal(myDelete.code, 0, `${type}: delete: ${myDelete.stderr}`)
    assert.deepEqual(myDeleteWire, realDeleteWire, `${type}: delete speaks as postmap -d`)
    for (const key of ['dave1', 'dave2']) assert.equal((await client.postmap(['-q', key, table])).code, 1, `${type}: ${key} deleted`)
    const missing = await ours(['delete', `proxy:${table}`, 'never-there'])
    assert.match(missing.stdout, /0 deleted, 1 not found/, `${type}: deleting a missing key`)
  }
  assertNoProxymapDied()
  // The configuration said 3.11: no request was ever asked in the wrong dialect.
  assert.doesNotMatch(server.maillog(), /unexpected attribute/)
})

test('a fixed wrong --dialect says which one was tried and how to pick the other', async () => {
  const r = await ours(['query', '--dialect', 'legacy', `proxy:${readTables.get('lmdb')}`, 'alice@example.com'])
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /invalid in the legacy \(Postfix <= 3\.10\) dialect/)
  assert.match(r.stderr, /--dialect v2/)
  assertNoProxymapDied()
})

// ------------------------------------------------------------------ no --dialect, every server

const versionInstances = new Map<PostfixVersion | 'ours', PostfixInstance>()

after(async () => {
  for (const pf of versionInstances.values()) await pf.destroy()
})

for (const target of [...POSTFIX_VERSIONS, 'ours'] as const) {
  test(`without --dialect, query, update, delete and dump work against ${target === 'ours' ? 'proxymap serve' : `real Postfix ${target}`}`, async () => {
    const pf = await createPostfixInstance({version: target === 'ours' ? '3.7' : target, prefix: 'pm-auto-'})
    versionInstances.set(target, pf)
    const lookupTable = await pf.createTable('lmdb', 'ldb', SOURCE)
    const writable = await pf.createTable('lmdb', `${pf.data}/w`, SOURCE)
    await pf.approve({read: [lookupTable, writable], write: [writable]})
    if (target === 'ours') await pf.startOurs()
    else await pf.startPostfix()
    // No hint of the version: the client asks in the host's dialect and learns the rest.
    const env = {PROXYMAP_POSTFIX_VERSION: ''}
    const q = await ours(['query', `proxy:${lookupTable}`, 'BOB@example.com'], {config: pf.etc, env})
    assert.equal(q.code, 0, q.stderr)
    assert.equal(q.stdout, 'bob box\n')
    const u = await ours(['update', `proxy:${writable}`, 'Dave@Example.com', 'dave-box'], {config: pf.etc, env})
    assert.equal(u.code, 0, u.stderr)
    const d = await ours(['dump', `proxy:${writable}`], {config: pf.etc, env})
    assert.equal(d.code, 0, d.stderr)
    assert.match(d.stdout, /^dave@example\.com\tdave-box$/m)
    const del = await ours(['delete', `proxy:${writable}`, 'dave@example.com'], {config: pf.etc, env})
    assert.equal(del.code, 0, del.stderr)
    assert.equal((await pf.postmap(['-q', 'dave@example.com', writable])).code, 1, 'deleted')
    if (target === '3.11') {
      // The host's Postfix is 3.7, so each command asked in the legacy dialect first: one
      // warning line in 3.11's log per command, and nothing else.
      const asked = pf.maillog().split('\n').filter(l => /unexpected attribute flags from \S+ socket \(expecting: instance_flags\)/.test(l))
      assert.equal(asked.length, 4, pf.maillog())
    }
    if (target !== 'ours') {
      const deaths = pf.maillog().split('\n').filter(l => /panic|fatal|exit status|throttling/.test(l))
      assert.deepEqual(deaths, [], `no ${target} proxymap died`)
    }
    await pf.destroy()
    versionInstances.delete(target)
  })
}
