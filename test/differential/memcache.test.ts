// Differential test of memcache: tables against real Postfix 3.7 (memcache support is in
// Postfix's core): a private memcached (TCP on 127.0.0.1 and one on a UNIX socket), a set of
// .cf files, and for every (cf, key) our lookup (postmap -q flags) compared with
// `postmap -c DIR -q KEY memcache:FILE.cf` (stdout and exit status). Updates and deletes are
// cross-checked: what we store real postmap reads, what real `postmap -d` deletes we no longer
// find, and the other way round; with a backup table both are updated. Through proxy:, real
// `postmap -q -` answered by Postfix's own proxymap and by our server prints the same.
//
// A missing memcached or postmap FAILS the test (apt-get install memcached postfix).
//
// Run: node --import tsx --test test/differential/memcache.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type {ChildProcess} from 'node:child_process'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import {memcacheType} from '../../src/lib/tables/memcache.js'
import {OpenOptions, Table, TableError} from '../../src/lib/tables/table.js'
import {createPostfixInstance, POSTMAP, requirePostfix, runCommand, sleep, spawnTracked} from '../helpers/postfix.js'
import {theirsThenOurs} from '../helpers/compare.js'
import {freeLoopbackPort} from '../helpers/ports.js'
import {makeConfig, toBinary, writeTable} from './pattern-helpers.js'
import {lookupOutcome} from './table-helpers.js'

const MEMCACHED = '/usr/bin/memcached'
let dir: string
let config: MainConfig
let port: number
let sock: string
const servers: ChildProcess[] = []
const registry = new TableRegistry()
registry.register(memcacheType)

const memcachedUser = (): string => (/^memcache:/m.test(fs.readFileSync('/etc/passwd', 'utf8')) ? 'memcache' : 'nobody')

function startMemcached(args: string[], ready: net.NetConnectOpts): Promise<void> {
  const child = spawnTracked(MEMCACHED, [...args, '-U', '0', '-u', memcachedUser()], {stdio: 'ignore'})
  servers.push(child)
  return (async () => {
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const c = net.connect(ready)
        c.once('connect', () => { c.destroy(); resolve(true) })
        c.once('error', () => resolve(false))
      })
      if (ok) return
      await sleep(50)
    }
    throw new Error(`memcached ${args.join(' ')} did not start`)
  })()
}

/** One raw text-protocol exchange with the TCP memcached (fixtures and checks). */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({host: '127.0.0.1', port})
    let buf = ''
    c.setEncoding('latin1')
    c.on('data', (d: string) => {
      buf += d
      if (/(^|\r\n)(END|STORED|DELETED|NOT_FOUND|ERROR[^\r]*|CLIENT_ERROR[^\r]*)\r\n$/.test(buf)) {
        c.destroy()
        resolve(buf)
      }
    })
    c.on('error', reject)
    c.write(request, 'latin1')
  })
}

async function set(key: string, value: string): Promise<void> {
  const v = toBinary(value)
  assert.equal(await raw(`set ${toBinary(key)} 0 0 ${v.length}\r\n${v}\r\n`), 'STORED\r\n')
}

const VALUES: Record<string, string> = {
  alice: 'alice-value',
  'bob@example.com': 'bob-value',
  'carol@sub.example.org': 'carol-value',
  'pfx-alice': 'prefixed-alice',
  'pfx-bob@example.com': 'prefixed-bob',
  'bob.example.com': 'user-dot-domain',
  'carol.sub.example.org': 'carol-dot',
  'école': 'école-valué',
  big: 'x'.repeat(100),
  empty: '',
  'dave@example.com': 'dave-from-memcache',
}

const KEYS = ['alice', 'ALICE', 'Alice', 'bob@example.com', 'BOB@Example.COM', 'carol@sub.example.org', 'nothere',
  'with space', 'tab\there', 'école', 'ÉCOLE', 'big', 'empty', 'bob@', '@example.com', 'dave@example.com',
  'frank@example.com', 'erin@example.com', 'x@other.org']

function cfs(): string[] {
  const tcp = `memcache = inet:127.0.0.1:${port}\n`
  const texthash = writeTable(path.join(dir, 'backup.txt'), 'erin@example.com erin-from-backup\nalice backup-alice\nfrank@example.com frank-from-backup\n')
  const variants: Record<string, string> = {
    basic: tcp,
    unix: `memcache = unix:${sock}\n`,
    prefix: `${tcp}key_format = pfx-%s\n`,
    userdomain: `${tcp}key_format = %u.%d\n`,
    parts: `${tcp}key_format = %1-%2\n`,
    domain: `${tcp}domain = example.com\n`,
    limit: `${tcp}data_size_limit = 20\nmax_try = 1\n`,
    line: `${tcp}line_size_limit = 12\nmax_try = 1\n`,
    dead: 'memcache = inet:127.0.0.1:1\n',
    backup: `${tcp}backup = texthash:${texthash}\n`,
    deadbackup: `memcache = inet:127.0.0.1:1\nbackup = texthash:${texthash}\n`,
  }
  return Object.entries(variants).map(([name, body]) => writeTable(path.join(dir, `mc-${name}.cf`), body))
}

function openOptions(mode: 'read' | 'write', flags = postmapQueryFlags(true)): OpenOptions {
  return {
    mode, dictFlags: flags, config,
    log: {warning: () => {}, error: () => {}, info: () => {}},
    openNested: (spec, o) => registry.open(spec, o),
  }
}

interface Outcome {stdout: string; status: number}

async function ours(file: string, key: string): Promise<Outcome> {
  const table = await registry.open(`memcache:${toBinary(file)}`, openOptions('read'))
  return lookupOutcome(table, key)
}

async function real(args: string[]): Promise<Outcome> {
  const r = await runCommand(POSTMAP, ['-c', dir, ...args], {timeoutMs: 30_000})
  return {stdout: r.stdout, status: r.code}
}

before(async () => {
  requirePostfix()
  if (!fs.existsSync(MEMCACHED)) throw new Error('memcached is required for this test: apt-get install memcached')
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-mc-')))
  fs.chmodSync(dir, 0o755)
  config = makeConfig(dir, {compatibility_level: '3.6'})
  port = await freeLoopbackPort()
  // memcached drops privileges before it creates its socket: give it a directory of its own
  const sockDir = path.join(dir, 'mcsock')
  fs.mkdirSync(sockDir, {mode: 0o755})
  const user = memcachedUser()
  const [uid, gid] = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`))!.split(':').slice(2, 4).map(Number)
  fs.chownSync(sockDir, uid, gid)
  sock = path.join(sockDir, 'memcached.sock')
  await Promise.all([
    startMemcached(['-l', '127.0.0.1', '-p', String(port)], {host: '127.0.0.1', port}),
    startMemcached(['-s', sock, '-a', '0666'], {path: sock}),
  ])
  for (const [k, v] of Object.entries(VALUES)) await set(k, v)
})

after(async () => {
  for (const s of servers) if (s.exitCode === null && s.signalCode === null) s.kill('SIGTERM')
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

test('memcache lookups answer as postmap -q does', async () => {
  const files = cfs()
  const cases = files.flatMap((f) => KEYS.map((k) => ({f, k})))
  const failures: string[] = []
  let found = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const {f, k} = cases[next++]
      const [o, r] = await Promise.all([ours(f, k), real(['-q', k, `memcache:${f}`])])
      if (r.status === 0) found++
      if (JSON.stringify(o) !== JSON.stringify(r))
        failures.push(`-q ${JSON.stringify(k)} memcache:${f}\n  ours: ${JSON.stringify(o)}\n  real: ${JSON.stringify(r)}`)
    }
  }
  await Promise.all(Array.from({length: 8}, worker))
  console.log(`# memcache: ${cases.length} cases compared with postmap (${found} found a value)`)
  assert.ok(found >= cases.length / 5, `too few cases found a value: ${found}`)
  assert.deepEqual(failures, [], failures.slice(0, 20).join('\n'))
  // a backup hit was copied into memcache
  assert.match(await raw('get frank@example.com\r\n'), /^VALUE frank@example.com 0 17\r\nfrank-from-backup\r\nEND\r\n$/)
})

test('memcache updates and deletes agree with postmap', async () => {
  const file = path.join(dir, 'mc-rw.cf')
  writeTable(file, `memcache = inet:127.0.0.1:${port}\nkey_format = rw-%s\nttl = 600\n`)
  const table: Table = await registry.open(`memcache:${file}`, openOptions('write'))
  let checks = 0
  try {
    assert.equal(await table.update!('NewKey', 'new value'), true)
    assert.deepEqual(await real(['-q', 'newkey', `memcache:${file}`]), {stdout: 'new value\n', status: 0})
    assert.match(await raw('get rw-newkey\r\n'), /^VALUE rw-newkey 0 9\r\nnew value\r\nEND\r\n$/)
    assert.deepEqual(await real(['-d', 'newkey', `memcache:${file}`]), {stdout: '', status: 0})
    assert.equal(await table.lookup('newkey'), undefined)
    assert.equal(await table.delete!('newkey'), false)
    assert.deepEqual(await real(['-d', 'newkey', `memcache:${file}`]), {stdout: '', status: 1})
    assert.equal(await table.update!('other', 'v2'), true)
    assert.equal(await table.delete!('other'), true)
    assert.deepEqual(await real(['-q', 'other', `memcache:${file}`]), {stdout: '', status: 1})
    // skipped keys: not stored, not deleted
    assert.equal(await table.update!('has space', 'v'), false)
    assert.equal(await table.delete!(''), false)
    // too long for data_size_limit: not stored, no error
    assert.equal(await table.update!('long', 'y'.repeat(20_000)), false)
    checks += 11
  } finally {
    await table.close?.()
  }

  // with a writable backup table: updates and deletes go to both
  const db = path.join(dir, 'backup-db')
  assert.equal((await runCommand(POSTMAP, ['-c', dir, '-i', 'btree:' + db], {input: 'seed seed-value\n'})).code, 0)
  const fileB = writeTable(path.join(dir, 'mc-rwb.cf'), `memcache = inet:127.0.0.1:${port}\nkey_format = rwb-%s\nbackup = btree:${db}\n`)
  const tb: Table = await registry.open(`memcache:${fileB}`, openOptions('write'))
  try {
    assert.equal(await tb.update!('both', 'both-value'), true)
    await tb.close?.()
    assert.deepEqual(await real(['-q', 'both', `btree:${db}`]), {stdout: 'both-value\n', status: 0})
    assert.match(await raw('get rwb-both\r\n'), /both-value/)
    assert.deepEqual(await real(['-d', 'both', `memcache:${fileB}`]), {stdout: '', status: 0})
    assert.deepEqual(await real(['-q', 'both', `btree:${db}`]), {stdout: '', status: 1})
    assert.equal(await raw('get rwb-both\r\n'), 'END\r\n')
    // the backup's seed entry is found through memcache and then cached
    assert.deepEqual(await ours(fileB, 'seed'), {stdout: 'seed-value\n', status: 0})
    assert.match(await raw('get rwb-seed\r\n'), /seed-value/)
    checks += 7
  } finally {
    await tb.close?.()
  }
  console.log(`# memcache: ${checks} update/delete checks against postmap`)
})

test('an unreachable memcache is a RETRY at once, without max_try pauses', async () => {
  const file = writeTable(path.join(dir, 'mc-dead2.cf'), 'memcache = inet:127.0.0.1:1\nmax_try = 5\n')
  const table = await registry.open(`memcache:${file}`, openOptions('read'))
  const t0 = Date.now()
  await assert.rejects(async () => table.lookup('k'), (err: unknown) => err instanceof TableError && err.kind === 'retry')
  assert.ok(Date.now() - t0 < 900, `took ${Date.now() - t0} ms`)
  await table.close?.()
})

test('memcache through proxy: answers as through Postfix\'s proxymap', async () => {
  const files = cfs()
  const pf = await createPostfixInstance({prefix: 'pm-mc-proxy-'})
  try {
    await pf.approve({read: files.map((f) => `memcache:${f}`), write: []})
    const input = KEYS.join('\n') + '\n'
    const runAll = async (): Promise<Map<string, {stdout: string; stderr: string; code: number}>> => {
      const out = new Map<string, {stdout: string; stderr: string; code: number}>()
      await Promise.all(files.map(async (f) => {
        const r = await pf.postmap(['-q', '-', `proxy:memcache:${f}`], {input, timeoutMs: 60_000})
        out.set(f, {stdout: r.stdout, stderr: r.stderr, code: r.code})
      }))
      return out
    }
    const {theirs, ours: mine} = await theirsThenOurs(pf, runAll)
    let hits = 0
    let failed = 0
    for (const f of files) {
      const t = theirs.get(f)!
      hits += t.stdout.split('\n').length - 1
      if (t.stderr.includes('fatal:')) failed++
      assert.deepEqual(mine.get(f), t, `proxy:memcache:${f}`)
    }
    console.log(`# memcache through proxy:: ${files.length} cf files x ${KEYS.length} keys, ${hits} hits, ${failed} runs failing in both, same output as Postfix's proxymap`)
    assert.ok(hits >= 30, `too few hits through proxy: ${hits}`)
    assert.ok(failed >= 1, 'an unreachable memcache fails through proxy: too')
  } finally {
    await pf.destroy()
  }
})
