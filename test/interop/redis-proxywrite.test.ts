// redis: tables through our serve, with real Postfix clients, as several MX hosts would use
// them (a shared postscreen_cache_map / address_verify_map through proxywrite):
// (a) our `update`/`delete`/`dump` through proxywrite/proxymap; real `postmap -q` and
//     `postmap -d` through proxy: see and change the same entries; the ttl is set;
// (b) the cache cleanup of postscreen and verify (dict_cache.c): first/next over the
//     proxywrite service while deleting the expired entries, each delete sent after the
//     next sequence request ("delete behind", as dict_cache does); every entry is visited
//     and exactly the fresh ones remain;
// (c) outage: a private redis-server is killed: lookups and updates answer RETRY; it is
//     started again and the same serve process answers again (no restart); a first/next
//     walk that outlives a restart starts again and sees every key of the new server;
// (d) replica promotion: hosts = master replica; the master is killed, reads go on from
//     the replica, writes are RETRY until the replica is promoted, then go to it;
// (e) Sentinel: a private Sentinel fails the master over to its replica; writes come back;
// (g) TLS: a private TLS-only redis-server that wants client certificates: the table with
//     tls_CAfile, tls_cert_file and tls_key_file works; without the CA (certificate
//     unverified), without a client certificate, or without tls, every request is RETRY;
// (i) authentication: `password` alone (the default user) and `user` + `password` (an ACL
//     user) work; a wrong password is RETRY, logged without the password;
// (h) tables with the same server setting share one connection (CLIENT LIST on a private
//     server during concurrent real clients); another dbnum is another connection;
// (f) two serve processes (two "MX hosts", two Postfix instances) sharing one Redis see
//     each other's writes and deletes.
//
// Uses the machine's Redis on 127.0.0.1:6379 (keys under a per-process prefix, removed
// afterwards) and private redis-server processes on free loopback ports (stopped by pid).
// Needs `npm run build` (startOurs and the CLI run the built code).
//
// Run: node --import tsx --test test/interop/redis-proxywrite.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, test} from 'node:test'
import {Redis} from 'ioredis'

import {ServiceConnection} from '../../src/lib/client/connection.js'
import {DICT_FLAG, PROXY_STAT} from '../../src/lib/protocol/index.js'
import {createPostfixInstance, PostfixInstance, PROJECT_BIN, requirePostfix, runCommand, waitFor} from '../helpers/postfix.js'
import {freeLoopbackPort} from '../helpers/ports.js'
import {makeTlsFiles, PrivateRedis, redisCli, requireRedisServer, writeSentinelConfig} from '../helpers/redis.js'

const PREFIX = `pmpw${process.pid}:`
const SENTINEL_MASTER = `pm${process.pid}`
let pf: PostfixInstance
let shared: Redis
const privateServers: PrivateRedis[] = []
const cf: Record<string, string> = {}
let outage: PrivateRedis
let master: PrivateRedis
let replica: PrivateRedis
let sentinelMaster: PrivateRedis
let sentinelReplica: PrivateRedis
let sentinel: PrivateRedis
let tlsServer: PrivateRedis
let poolServer: PrivateRedis
let walkServer: PrivateRedis
let authServer: PrivateRedis

async function cli(instance: PostfixInstance, args: string[], input?: string): Promise<{code: number; stdout: string; stderr: string}> {
  const r = await runCommand(process.execPath, [PROJECT_BIN, args[0], '-c', instance.etc, ...args.slice(1)], {input, timeoutMs: 60_000})
  return {code: r.code, stdout: r.stdout, stderr: r.stderr}
}

async function privateRedis(extraArgs: string[] = []): Promise<PrivateRedis> {
  const server = new PrivateRedis(await freeLoopbackPort(), extraArgs)
  privateServers.push(server)
  await server.start()
  return server
}

const proxy = (name: string): string => `proxy:redis:${cf[name]}`

async function query(instance: PostfixInstance, name: string, key: string): Promise<{code: number; stdout: string; stderr: string}> {
  const r = await instance.postmap(['-q', key, proxy(name)])
  return {code: r.code, stdout: r.stdout, stderr: r.stderr}
}

before(async () => {
  requirePostfix()
  requireRedisServer()
  shared = new Redis({host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1})
  await shared.connect()
  outage = await privateRedis()
  poolServer = await privateRedis()
  walkServer = await privateRedis()
  authServer = await privateRedis(['--requirepass', 'default-pw'])
  await redisCli(authServer.port, '--no-auth-warning', '-a', 'default-pw', 'acl', 'setuser', 'pmuser', 'on', '>user-pw', '~*', '+@all')
  master = await privateRedis()
  replica = await privateRedis(['--replicaof', '127.0.0.1', String(master.port)])
  sentinelMaster = await privateRedis()
  sentinelReplica = await privateRedis(['--replicaof', '127.0.0.1', String(sentinelMaster.port)])
  pf = await createPostfixInstance({prefix: 'pm-redis-pw-'})
  const sentinelPort = await freeLoopbackPort()
  sentinel = new PrivateRedis(sentinelPort, [], writeSentinelConfig(pf.dir, SENTINEL_MASTER, sentinelMaster.port))
  privateServers.push(sentinel)
  await sentinel.start()
  const tls = await makeTlsFiles(pf.dir)
  tlsServer = new PrivateRedis(await freeLoopbackPort(), [], undefined, tls)
  privateServers.push(tlsServer)
  await tlsServer.start()
  const tlsHost = `hosts = 127.0.0.1:${tlsServer.port}\ntimeout = 1\n`
  const clientCert = `tls_cert_file = ${tls.client.cert}\ntls_key_file = ${tls.client.key}\n`
  const files: Record<string, string> = {
    psc: `hosts = 127.0.0.1:6379\nkey_format = ${PREFIX}psc:%s\nttl = 3600\n`,
    verify: `hosts = inet:127.0.0.1:6379\nkey_format = ${PREFIX}verify:%s\nscan_count = 7\n`,
    outage: `hosts = 127.0.0.1:${outage.port}\ntimeout = 1\n`,
    replicas: `hosts = 127.0.0.1:${master.port}, 127.0.0.1:${replica.port}\ntimeout = 1\n`,
    sentinel: `sentinels = 127.0.0.1:${sentinelPort}\nsentinel_master = ${SENTINEL_MASTER}\ntimeout = 1\n`,
    tls: `${tlsHost}tls = yes\ntls_CAfile = ${tls.client.ca}\n${clientCert}tls_server_name = localhost\n`,
    tlsUntrusted: `${tlsHost}tls = yes\n${clientCert}`,
    tlsNoClientCert: `${tlsHost}tls = yes\ntls_CAfile = ${tls.client.ca}\n`,
    tlsPlain: tlsHost,
    walk: `hosts = 127.0.0.1:${walkServer.port}\nkey_format = w:%s\nscan_count = 2\ntimeout = 1\n`,
    authDefault: `hosts = 127.0.0.1:${authServer.port}\npassword = default-pw\n`,
    authUser: `hosts = 127.0.0.1:${authServer.port}\nuser = pmuser\npassword = user-pw\n`,
    authWrong: `hosts = 127.0.0.1:${authServer.port}\nuser = pmuser\npassword = not-the-pw\ntimeout = 1\n`,
    poolA: `hosts = 127.0.0.1:${poolServer.port}\nkey_format = a:%s\n`,
    poolB: `hosts = inet:127.0.0.1:${poolServer.port}\nkey_format = b:%s\ndomain = example.com\n`,
    poolDb1: `hosts = 127.0.0.1:${poolServer.port}\ndbnum = 1\n`,
  }
  for (const [name, body] of Object.entries(files)) cf[name] = await pf.writeFile(`redis-${name}.cf`, body)
  const tables = Object.keys(files).map((n) => `redis:${cf[n]}`)
  await pf.approve({read: tables, write: tables})
  await pf.startOurs()
})

after(async () => {
  await pf?.destroy()
  for (const s of privateServers) await s.destroy()
  if (shared) {
    const keys = await shared.keys(`${PREFIX}*`)
    if (keys.length > 0) await shared.del(...keys)
    shared.disconnect()
  }
})

test('update, delete and dump through our proxywrite; real postmap -q and -d through proxy: agree', async () => {
  let r = await cli(pf, ['update', proxy('psc'), 'Alice@Example.COM', 'PASS 1700000000'])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(await query(pf, 'psc', 'ALICE@example.com'), {code: 0, stdout: 'PASS 1700000000\n', stderr: ''})
  const ttl = await shared.ttl(`${PREFIX}psc:alice@example.com`)
  assert.ok(ttl > 3000 && ttl <= 3600, `ttl ${ttl}`)
  const batch = Array.from({length: 20}, (_, i) => `host${i}.example 192.0.2.${i}`)
  r = await cli(pf, ['update', proxy('psc'), '-'], batch.join('\n') + '\n')
  assert.equal(r.code, 0, r.stderr)
  r = await cli(pf, ['dump', proxy('psc')])
  assert.equal(r.code, 0, r.stderr)
  const expected = ['alice@example.com\tPASS 1700000000', ...batch.map((l) => l.replace(' ', '\t'))].sort()
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).sort(), expected)

  r = await cli(pf, ['delete', proxy('psc'), 'host1.example'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal((await query(pf, 'psc', 'host1.example')).code, 1)
  const deleted = await pf.postmap(['-d', 'HOST2.example', proxy('psc')])
  assert.equal(deleted.code, 0, deleted.stderr)
  r = await cli(pf, ['query', proxy('psc'), 'host2.example'])
  assert.equal(r.code, 1, r.stdout)
  assert.equal(await shared.exists(`${PREFIX}psc:host2.example`), 0)
  assert.equal(await shared.get(`${PREFIX}psc:host3.example`), '192.0.2.3')
})

test('postscreen/verify cache cleanup: first/next through proxywrite while deleting expired entries', async () => {
  const ENTRIES = 300
  const expired = (i: number): boolean => i % 3 !== 0
  const pipeline = shared.pipeline()
  for (let i = 0; i < ENTRIES; i++) pipeline.set(`${PREFIX}verify:rcpt${i}@example.com`, `${expired(i) ? 1000 : 4000000000}:0:0:ok`)
  await pipeline.exec()
  const table = proxy('verify')
  const flags = DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE
  const c = await ServiceConnection.connect(pf.socketPath('proxywrite'), {timeoutMs: 30_000})
  const visited = new Set<string>()
  let deletes = 0
  try {
    const open = await c.request({request: 'open', dialect: 'legacy', table, instanceFlags: flags, requestFlags: flags})
    assert.equal(open.status, PROXY_STAT.OK)
    let deleteBehind: string | undefined
    for (let step = 0; step < 10 * ENTRIES; step++) {
      const r = await c.request({request: 'sequence', dialect: 'legacy', table, instanceFlags: flags, requestFlags: flags, func: step === 0 ? 0 : 1})
      if (deleteBehind !== undefined) {
        const d = await c.request({request: 'delete', dialect: 'legacy', table, instanceFlags: flags, requestFlags: flags, key: deleteBehind})
        assert.equal(d.status, PROXY_STAT.OK, `delete ${deleteBehind}`)
        deletes++
        deleteBehind = undefined
      }
      if (r.status === PROXY_STAT.NOKEY) break
      assert.equal(r.status, PROXY_STAT.OK)
      visited.add(r.key!)
      if (Number(r.value!.split(':')[0]) < 2000) deleteBehind = r.key
    }
  } finally {
    c.close()
  }
  assert.equal(visited.size, ENTRIES)
  const left = (await shared.keys(`${PREFIX}verify:*`)).sort()
  const fresh = Array.from({length: ENTRIES}, (_, i) => i).filter((i) => !expired(i)).map((i) => `${PREFIX}verify:rcpt${i}@example.com`).sort()
  assert.deepEqual(left, fresh)
  assert.equal(deletes, ENTRIES - fresh.length)
  assert.equal((await query(pf, 'verify', 'rcpt3@example.com')).code, 0)
  assert.equal((await query(pf, 'verify', 'rcpt4@example.com')).code, 1)
})

test('Redis down: RETRY; Redis back: the same serve answers again', async () => {
  const serverPid = pf.ourPid()
  assert.equal((await cli(pf, ['update', proxy('outage'), 'k', 'before'])).code, 0)
  assert.deepEqual(await query(pf, 'outage', 'k'), {code: 0, stdout: 'before\n', stderr: ''})
  await outage.stop('SIGKILL')
  const down = await query(pf, 'outage', 'k')
  assert.equal(down.code, 1)
  assert.match(down.stderr, /query error/) // postmap's words for a RETRY
  assert.equal((await cli(pf, ['update', proxy('outage'), 'k', 'during'])).code, 4) // RETRY
  await pf.waitForMaillog(/warning: redis:\S+redis-outage\.cf: lookup "k" failed: connect to 127\.0\.0\.1:\d+: (lost connection|Connection refused)/)
  await outage.start() // same port, empty (no persistence)
  await redisCli(outage.port, 'set', 'k', 'after')
  await waitFor(async () => (await query(pf, 'outage', 'k')).stdout === 'after\n', 20_000, () => 'no answer after Redis came back')
  assert.equal((await cli(pf, ['update', proxy('outage'), 'k2', 'v2'])).code, 0)
  assert.equal(await redisCli(outage.port, 'get', 'k2'), 'v2')
  assert.equal(pf.ourPid(), serverPid)
})

test('a first/next walk that outlives a Redis restart starts again on the new server', async () => {
  const seed = async (n: number): Promise<void> => {
    await redisCli(walkServer.port, 'mset', ...Array.from({length: n}, (_, i) => [`w:key${i}`, `v${i}`]).flat())
  }
  await seed(30)
  const table = proxy('walk')
  const c = await ServiceConnection.connect(pf.socketPath('proxymap'), {timeoutMs: 30_000})
  const seenAfter = new Set<string>()
  try {
    const step = (func: number) => c.request({request: 'sequence', dialect: 'legacy', table, instanceFlags: DICT_FLAG.LOCK, requestFlags: DICT_FLAG.LOCK, func})
    assert.equal((await step(0)).status, PROXY_STAT.OK)
    for (let i = 0; i < 12; i++) assert.equal((await step(1)).status, PROXY_STAT.OK)
    await walkServer.stop('SIGKILL')
    await walkServer.start()
    await seed(40)
    let retries = 0
    for (let i = 0; i < 1000; i++) {
      const r = await step(1)
      if (r.status === PROXY_STAT.RETRY && retries++ < 100) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        continue
      }
      if (r.status === PROXY_STAT.NOKEY) break
      assert.equal(r.status, PROXY_STAT.OK)
      seenAfter.add(r.key!)
    }
  } finally {
    c.close()
  }
  assert.equal(seenAfter.size, 40)
  await pf.waitForMaillog(/warning: redis:\S+redis-walk\.cf: first\/next: new server connection, walking again from the start/)
})

test('replica promotion: reads go on from the replica, writes follow the promoted one', async () => {
  assert.equal((await cli(pf, ['update', proxy('replicas'), 'before', 'one'])).code, 0)
  assert.equal(await redisCli(master.port, 'get', 'before'), 'one')
  await waitFor(async () => (await redisCli(replica.port, 'get', 'before')) === 'one', 10_000, () => 'not replicated')
  await master.stop('SIGKILL')
  assert.deepEqual(await query(pf, 'replicas', 'before'), {code: 0, stdout: 'one\n', stderr: ''})
  assert.equal((await cli(pf, ['update', proxy('replicas'), 'after', 'two'])).code, 4) // the replica is READONLY
  await redisCli(replica.port, 'replicaof', 'no', 'one')
  await waitFor(async () => (await cli(pf, ['update', proxy('replicas'), 'after', 'two'])).code === 0, 20_000, () => 'writes did not move')
  assert.equal(await redisCli(replica.port, 'get', 'after'), 'two')
  assert.deepEqual(await query(pf, 'replicas', 'after'), {code: 0, stdout: 'two\n', stderr: ''})
})

test('Sentinel failover: writes come back on the promoted replica', async () => {
  await waitFor(async () => (await redisCli(sentinel.port, 'sentinel', 'replicas', SENTINEL_MASTER)).includes(String(sentinelReplica.port)),
    30_000, () => 'the Sentinel did not find the replica')
  assert.equal((await cli(pf, ['update', proxy('sentinel'), 'before', 'one'])).code, 0)
  assert.equal(await redisCli(sentinelMaster.port, 'get', 'before'), 'one')
  await waitFor(async () => (await redisCli(sentinelReplica.port, 'get', 'before')) === 'one', 10_000, () => 'not replicated')
  await sentinelMaster.stop('SIGKILL')
  await waitFor(async () => (await cli(pf, ['update', proxy('sentinel'), 'after', 'two'])).code === 0, 60_000, () => 'no write after failover')
  assert.match(await redisCli(sentinelReplica.port, 'role'), /^master/)
  assert.equal(await redisCli(sentinelReplica.port, 'get', 'after'), 'two')
  assert.deepEqual(await query(pf, 'sentinel', 'before'), {code: 0, stdout: 'one\n', stderr: ''})
})

test('TLS with a client certificate; an unverified server, no client certificate or no TLS is RETRY', async () => {
  assert.equal((await cli(pf, ['update', proxy('tls'), 'Secure@Example.com', 'over tls'])).code, 0)
  assert.deepEqual(await query(pf, 'tls', 'secure@example.com'), {code: 0, stdout: 'over tls\n', stderr: ''})
  for (const name of ['tlsUntrusted', 'tlsNoClientCert', 'tlsPlain']) {
    const r = await query(pf, name, 'secure@example.com')
    assert.equal(r.code, 1, name)
    assert.match(r.stderr, /query error/, name)
  }
  await pf.waitForMaillog(/warning: redis:\S+redis-tlsUntrusted\.cf: lookup "secure@example\.com" failed: connect to 127\.0\.0\.1:\d+: .*(self-signed|unable to verify)/i)
})

test('password and ACL user; a wrong password is RETRY and never logged', async () => {
  assert.equal((await cli(pf, ['update', proxy('authUser'), 'acl-key', 'by pmuser'])).code, 0)
  assert.deepEqual(await query(pf, 'authDefault', 'acl-key'), {code: 0, stdout: 'by pmuser\n', stderr: ''})
  const wrong = await query(pf, 'authWrong', 'acl-key')
  assert.equal(wrong.code, 1)
  assert.match(wrong.stderr, /query error/)
  await pf.waitForMaillog(/warning: redis:\S+redis-authWrong\.cf: lookup "acl-key" failed: connect to 127\.0\.0\.1:\d+: WRONGPASS/)
  assert.doesNotMatch(pf.maillog() + pf.ourStderr(), /not-the-pw|user-pw|default-pw/)
})

test('tables with the same server setting share one connection', async () => {
  await redisCli(poolServer.port, 'mset', 'a:k1@example.com', 'A1', 'b:k1@example.com', 'B1')
  await redisCli(poolServer.port, '-n', '1', 'set', 'k1@example.com', 'D1')
  const keys = Array.from({length: 200}, (_, i) => `k${i % 3}@example.com`).join('\n') + '\n'
  const runs = await Promise.all(['poolA', 'poolB', 'poolDb1', 'poolA', 'poolB', 'poolDb1'].map((name) => pf.postmap(['-q', '-', proxy(name)], {input: keys})))
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.split('\n').filter(Boolean).length, 67, `run ${i}`)
  }
  const clients = (await redisCli(poolServer.port, 'client', 'list')).split('\n').filter((l) => !/ cmd=client\|list /.test(l))
  assert.deepEqual(clients.map((l) => / db=(\d+) /.exec(l)?.[1]).sort(), ['0', '1'], clients.join('\n'))
})

test('two serve processes sharing one Redis see each other\'s writes', async () => {
  const other = await createPostfixInstance({prefix: 'pm-redis-mx2-'})
  try {
    const file = await other.writeFile('redis-psc.cf', fs.readFileSync(cf.psc))
    await other.approve({read: [`redis:${file}`], write: [`redis:${file}`]})
    await other.startOurs()
    assert.notEqual(other.ourPid(), pf.ourPid())
    const onOther = `proxy:redis:${file}`
    assert.equal((await cli(pf, ['update', proxy('psc'), 'mx1-wrote@example.com', 'from-mx1'])).code, 0)
    const seen = await other.postmap(['-q', 'mx1-wrote@example.com', onOther])
    assert.deepEqual({code: seen.code, stdout: seen.stdout}, {code: 0, stdout: 'from-mx1\n'})
    assert.equal((await cli(other, ['update', onOther, 'mx2-wrote@example.com', 'from-mx2'])).code, 0)
    assert.deepEqual(await query(pf, 'psc', 'mx2-wrote@example.com'), {code: 0, stdout: 'from-mx2\n', stderr: ''})
    const dumped = await cli(other, ['dump', onOther])
    assert.match(dumped.stdout, /^mx1-wrote@example\.com\tfrom-mx1$/m)
    assert.equal((await other.postmap(['-d', 'mx1-wrote@example.com', onOther])).code, 0)
    assert.equal((await query(pf, 'psc', 'mx1-wrote@example.com')).code, 1)
    assert.equal(path.basename(file), path.basename(cf.psc))
  } finally {
    await other.destroy()
  }
})
