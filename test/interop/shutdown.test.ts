// Stopping: `proxymap serve` stops within 2 s of SIGTERM or SIGINT whatever tables it has
// used (mysql, pgsql, ldap, tcp, socketmap, memcache: their pools, sockets and timers are
// closed), on its own (exit 0, sockets removed, "SIGTERM received -- shutting down") and
// under real master(8) (`postfix stop`); a lookup in flight is answered, or failed with
// RETRY, before it goes, so that the real client is not left retrying a vanished server.
// `proxymap query` on those tables exits once it has printed the answer, even when the
// peer keeps its connection open.
//
// Real components: MariaDB and PostgreSQL of this machine (database test, root without a
// password), a private slapd and memcached, scripted tcp_table(5) and socketmap peers here.

import assert from 'node:assert/strict'
import type {ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {
  NODE_EXECUTABLE, PROJECT_BIN, PostfixInstance, RunResult, backdate, createPostfixInstance, processesRunning, requirePostfix, runCommand,
  spawnTracked, waitFor,
} from '../helpers/postfix.js'
import {SOCKETMAP_MAX_REPLY, netstringParser} from '../../src/lib/tables/socketmap.js'
import {freeLoopbackPort} from '../helpers/ports.js'
import {Slapd, startSlapd} from '../helpers/slapd.js'

/** What the issue asks: gone within 2 s of the signal. */
const STOP_LIMIT_MS = 2000
/** The socketmap peer answers the key "slow" this late: longer than any stop may take. */
const SLOW_ANSWER_MS = 5000
const SUFFIX = 'dc=example,dc=com'

let pf: PostfixInstance
let slapd: Slapd
let memcached: ChildProcess | undefined
const peers: net.Server[] = []
const peerSockets = new Set<net.Socket>()
let slowRequestsSeen = 0
/** Every table the server is asked about, by type (and the slow ones, by type + Slow). */
const tables: Record<string, string> = {}

/** A tcp_table(5) peer: "200 tcp-KEY" for every key; it never closes a connection itself. */
function tcpPeer(socket: net.Socket): void {
  peerSockets.add(socket)
  socket.on('close', () => peerSockets.delete(socket))
  let buf = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => {
    buf += d
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const key = buf.slice(4, nl)
      buf = buf.slice(nl + 1)
      socket.write(`200 tcp-${key}\n`)
    }
  })
  socket.on('error', () => undefined)
}

/** A socketmap peer: "OK sm-KEY", the key "slow" after SLOW_ANSWER_MS; connections stay open. */
function socketmapPeer(socket: net.Socket): void {
  peerSockets.add(socket)
  socket.on('close', () => peerSockets.delete(socket))
  let buf = Buffer.alloc(0)
  const parse = netstringParser(SOCKETMAP_MAX_REPLY)
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    for (let request = parse(buf); request; request = parse(buf)) {
      buf = buf.subarray(request.used)
      const key = request.value.slice(request.value.indexOf(' ') + 1)
      const reply = `OK sm-${key}`
      const send = (): void => { if (!socket.destroyed) socket.write(`${reply.length}:${reply},`) }
      if (key === 'slow') {
        slowRequestsSeen++
        setTimeout(send, SLOW_ANSWER_MS).unref()
      } else send()
    }
  })
  socket.on('error', () => undefined)
}

/** An LDAP server that accepts connections and reads requests, but never answers one. */
let silentRequestsSeen = 0
function silentPeer(socket: net.Socket): void {
  peerSockets.add(socket)
  socket.on('close', () => peerSockets.delete(socket))
  socket.on('data', () => { silentRequestsSeen++ })
  socket.on('error', () => undefined)
}

async function listenPeer(handler: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(handler)
  peers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

async function startMemcached(): Promise<number> {
  const port = await freeLoopbackPort()
  const user = /^memcache:/m.test(fs.readFileSync('/etc/passwd', 'utf8')) ? 'memcache' : 'nobody'
  memcached = spawnTracked('/usr/bin/memcached', ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-u', user], {stdio: 'ignore'})
  await waitFor(() => new Promise<boolean>((resolve) => {
    const c = net.connect({host: '127.0.0.1', port})
    c.once('connect', () => { c.destroy(); resolve(true) })
    c.once('error', () => resolve(false))
  }), 10_000, () => `memcached did not start on 127.0.0.1:${port}`, 50)
  return port
}

/** One lookup per table type through our proxymap service, answered as expected. */
async function useEveryTable(): Promise<void> {
  const expected: Record<string, string> = {
    mysql: 'my-alice', pgsql: 'pg-alice', ldap: 'alice@example.com', tcp: 'tcp-alice', socketmap: 'sm-alice', memcache: '',
  }
  for (const [type, name] of Object.entries(tables)) {
    if (type.endsWith('Slow')) continue
    const r = await pf.postmap(['-q', 'alice', `proxy:${name}`])
    if (type === 'memcache') assert.equal(r.code, 1, `memcache: not found is an answer: ${r.stderr}`)
    else assert.deepEqual({out: r.stdout, code: r.code}, {out: `${expected[type]}\n`, code: 0}, `${type}: ${r.stderr}`)
  }
}

async function sqlCount(type: 'mysql' | 'pgsql', sql: string): Promise<number> {
  const r = type === 'mysql'
    ? await runCommand('mysql', ['-h', '127.0.0.1', '-u', 'root', '-N', '-B', '-e', sql])
    : await runCommand('psql', ['-h', '127.0.0.1', '-U', 'root', '-d', 'test', '-A', '-t', '-c', sql])
  return Number(r.stdout.trim())
}

/**
 * Lookups in progress when the signal comes: one the socketmap peer holds for
 * SLOW_ANSWER_MS, one query each that MariaDB and PostgreSQL take that long to answer, and
 * an LDAP search that is never answered; started, and seen by their servers.
 */
async function lookupsInFlight(): Promise<{clients: Promise<RunResult[]>}> {
  const seen = slowRequestsSeen
  const silentSeen = silentRequestsSeen
  const clients = Promise.all(['socketmap', 'mysqlSlow', 'pgsqlSlow', 'ldapSlow'].map(t =>
    pf.postmap(['-q', 'slow', `proxy:${tables[t]}`], {timeoutMs: 15_000})))
  await waitFor(async () => slowRequestsSeen > seen && silentRequestsSeen > silentSeen
    && await sqlCount('mysql', "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT CONCAT(SLEEP(%'") > 0
    && await sqlCount('pgsql', "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'") > 0,
  10_000, () => 'the slow requests did not all reach their servers', 50)
  // wrapped: an async function returning the promise itself would wait for the clients
  return {clients}
}

/** The clients of the requests in flight got an answer (RETRY: postmap's "query error"), and soon. */
function assertAnsweredBeforeExit(results: RunResult[], signalledAt: number): void {
  for (const r of results) {
    assert.equal(r.timedOut, false, `a client in flight was left retrying: ${r.stderr}`)
    assert.match(r.stderr, /query error/, `a client in flight got no RETRY: code ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr}`)
  }
  assert.ok(performance.now() - signalledAt < SLOW_ANSWER_MS, 'the clients waited for the servers, not for our answer')
}

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-shutdown-'})
  slapd = await startSlapd({suffix: SUFFIX, rootDn: `cn=admin,${SUFFIX}`, rootPw: 'secret'})
  await slapd.add([
    `dn: ${SUFFIX}`, 'objectClass: dcObject', 'objectClass: organization', 'o: Example', 'dc: example', '',
    `dn: uid=alice,${SUFFIX}`, 'objectClass: inetOrgPerson', 'uid: alice', 'cn: Alice', 'sn: A', 'mail: alice@example.com', '',
  ].join('\n'))
  const memcachePort = await startMemcached()
  const tcpPort = await listenPeer(tcpPeer)
  const socketmapPort = await listenPeer(socketmapPeer)
  const silentLdapPort = await listenPeer(silentPeer)
  const cf = async (name: string, body: string): Promise<string> => {
    const file = path.join(pf.etc, name)
    await pf.writeFile(file, body)
    return file
  }
  tables.mysql = `mysql:${await cf('my.cf', "hosts = inet:127.0.0.1:3306\nuser = root\ndbname = test\nquery = SELECT CONCAT('my-', '%s')\n")}`
  tables.pgsql = `pgsql:${await cf('pg.cf', "hosts = inet:127.0.0.1:5432\nuser = root\ndbname = test\nquery = SELECT 'pg-' || '%s'\n")}`
  tables.ldap = `ldap:${await cf('ldap.cf', `server_host = ${slapd.url}\nversion = 3\nsearch_base = ${SUFFIX}\nquery_filter = (uid=%s)\nresult_attribute = mail\n`)}`
  tables.mysqlSlow = `mysql:${await cf('my-slow.cf', `hosts = inet:127.0.0.1:3306\nuser = root\ndbname = test\nquery = SELECT CONCAT(SLEEP(${SLOW_ANSWER_MS / 1000}), '%s')\n`)}`
  tables.pgsqlSlow = `pgsql:${await cf('pg-slow.cf', `hosts = inet:127.0.0.1:5432\nuser = root\ndbname = test\nquery = SELECT pg_sleep(${SLOW_ANSWER_MS / 1000})::text || '%s'\n`)}`
  tables.ldapSlow = `ldap:${await cf('ldap-silent.cf', `server_host = ldap://127.0.0.1:${silentLdapPort}\nbind = no\nversion = 3\nsearch_base = ${SUFFIX}\nquery_filter = (uid=%s)\nresult_attribute = mail\n`)}`
  tables.tcp = `tcp:127.0.0.1:${tcpPort}`
  tables.socketmap = `socketmap:inet:127.0.0.1:${socketmapPort}:users`
  tables.memcache = `memcache:${await cf('mc.cf', `memcache = inet:127.0.0.1:${memcachePort}\n`)}`
  await pf.approve({read: Object.values(tables), write: [tables.memcache]})
})

after(async () => {
  await pf?.destroy()
  await slapd?.destroy()
  if (memcached?.pid && memcached.exitCode === null) process.kill(memcached.pid, 'SIGTERM')
  for (const s of peerSockets) s.destroy()
  for (const p of peers) p.close()
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`serve stops within 2 s of ${signal} after using mysql, pgsql, ldap, tcp, socketmap and memcache tables, answering the lookup in flight`, async () => {
    await pf.startOurs()
    let stopped
    let stoppedMs: number
    let clients: RunResult[]
    let signalledAt: number
    const pid = pf.ourPid()!
    try {
      await useEveryTable()
      const inFlight = await lookupsInFlight()
      signalledAt = performance.now()
      process.kill(pid, signal)
      await waitFor(() => pf.ourExit(), 10_000, () => `serve still runs 10 s after ${signal}:\n${pf.ourStderr()}`, 10)
      stoppedMs = performance.now() - signalledAt
      clients = await inFlight.clients
    } finally {
      stopped = await pf.stopOurs()
    }
    const {code, signal: killedBy, socketsLeft} = stopped
    console.log(`# ${signal}: serve exited ${Math.round(stoppedMs)} ms after the signal; the clients in flight finished after ${clients.map(c => Math.round(c.ms)).join(', ')} ms`)
    assert.ok(stoppedMs < STOP_LIMIT_MS, `serve took ${Math.round(stoppedMs)} ms to exit after ${signal}:\n${pf.ourStderr()}`)
    assert.deepEqual({code, killedBy, socketsLeft}, {code: 0, killedBy: null, socketsLeft: []}, pf.ourStderr())
    assert.match(pf.ourStderr(), new RegExp(`postfix-harness/proxymap\\[${pid}\\]: ${signal} received -- shutting down`))
    for (const type of ['socketmap', 'mysql', 'pgsql', 'ldap'])
      assert.match(pf.ourStderr(), new RegExp(`warning: lookup ${type}:\\S+: no answer before shutdown -- replying RETRY`))
    assert.doesNotMatch(pf.ourStderr(), /query failed|lookup error/, 'a table closing is no server failure')
    assert.doesNotMatch(pf.ourStderr(), /still open/, 'nothing held the process')
    assertAnsweredBeforeExit(clients, signalledAt)
  })
}

/** Our node processes of this instance: master starts daemons in the queue directory. */
/** Our daemons under master: node processes in the queue directory (their titles are Postfix's). */
const ourDaemons = (): number[] => processesRunning(NODE_EXECUTABLE, pf.spool)

test('under real master(8), postfix stop ends our daemons within 2 s, answering the lookup in flight', async () => {
  const masterCf = path.join(pf.etc, 'master.cf')
  const stock = fs.readFileSync(masterCf, 'utf8')
  const launcher = path.join(pf.dir, 'proxymap-ts')
  fs.writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${PROJECT_BIN} serve "$@"\n`, {mode: 0o755})
  // master.cf commands are relative to daemon_directory
  const command = path.relative('/usr/lib/postfix/sbin', launcher)
  fs.writeFileSync(masterCf, stock.replace(/^(proxymap|proxywrite)(\s+unix.*?)proxymap$/gm, `$1$2${command}`))
  await backdate(masterCf)
  await pf.startPostfix()
  try {
    await useEveryTable()
    // the write service too, with a memcache table open
    const update = await pf.postmap(['-d', 'alice', `proxy:${tables.memcache}`])
    assert.equal(update.timedOut, false, update.stderr)
    const daemons = ourDaemons()
    assert.ok(daemons.length >= 2, `master runs our proxymap and proxywrite: ${daemons}`)
    const inFlight = await lookupsInFlight()
    const signalledAt = performance.now()
    const stopping = pf.stopPostfix()
    await waitFor(() => ourDaemons().length === 0, 10_000, () => `our daemons outlive postfix stop by 10 s: ${ourDaemons()}`, 10)
    const stoppedMs = performance.now() - signalledAt
    await stopping
    const clients = await inFlight.clients
    console.log(`# postfix stop: our daemons gone ${Math.round(stoppedMs)} ms after SIGTERM to master; the clients in flight finished after ${clients.map(c => Math.round(c.ms)).join(', ')} ms`)
    assert.ok(stoppedMs < STOP_LIMIT_MS, `our daemons took ${Math.round(stoppedMs)} ms to exit`)
    assertAnsweredBeforeExit(clients, signalledAt)
    assert.doesNotMatch(pf.maillog(), /proxymap(-ts)?\[\d+\]: (warning: .*still open|fatal|panic)/)
  } finally {
    await pf.stopPostfix()
    fs.writeFileSync(masterCf, stock)
    await backdate(masterCf)
  }
})

test('proxymap query exits once it has printed the answer, though the peer keeps the connection open', async () => {
  const expected: Record<string, [string, number]> = {
    mysql: ['my-alice\n', 0], pgsql: ['pg-alice\n', 0], ldap: ['alice@example.com\n', 0], tcp: ['tcp-alice\n', 0],
    socketmap: ['sm-alice\n', 0], memcache: ['', 1],
  }
  for (const [type, name] of Object.entries(tables)) {
    if (type.endsWith('Slow')) continue
    const r = await runCommand(process.execPath, [PROJECT_BIN, 'query', '-c', pf.etc, name, 'alice'], {timeoutMs: 10_000})
    console.log(`# proxymap query ${type}: exited after ${Math.round(r.ms)} ms`)
    assert.equal(r.timedOut, false, `proxymap query ${name} did not exit within 10 s of its answer (${JSON.stringify(r.stdout)})`)
    assert.deepEqual([r.stdout, r.code], expected[type], `${type}: ${r.stderr}`)
  }
})
