// `proxymap stats` and the Prometheus endpoint (issue 16, item 3): after a known workload,
// sent by real Postfix clients (postmap -q) and by ours (update, delete) plus raw bad
// requests, the running serve's stats socket reports exactly that workload, and the
// Prometheus endpoint, read by the real Prometheus text-format parser (python3's
// prometheus_client), the same counts. The stats socket is guarded as the services are
// (Postfix's private/ directory), and input on it harms nothing.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {
  PROJECT_BIN, PROJECT_ROOT, createPostfixInstance, requirePostfix, runCommand, spawnTracked, waitFor,
  type PostfixInstance, type RunResult,
} from '../helpers/postfix.js'
import {shapeErrors} from '../helpers/json-schema.js'
import {runOnTerminal} from '../helpers/terminal.js'
import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import {redisCli} from '../helpers/redis.js'
import {type Slapd, startSlapd} from '../helpers/slapd.js'
import * as mysql from 'mysql2/promise'
import pg from 'pg'
import type {ServiceSnapshot, StatsSnapshot, TableSnapshot} from '../../src/lib/server/stats.js'

/** Debian's python3 (python3-prometheus-client), not a python3 of someone's PATH. */
const SYSTEM_PYTHON = '/usr/bin/python3'
const PARSE_METRICS = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(samples))
`

interface Sample {family: string; type: string; name: string; labels: Record<string, string>; value: number}

function proxymap(args: string[], opts: {input?: string; asPostfix?: boolean} = {}): Promise<RunResult> {
  const env = {...process.env}
  delete env.MAIL_CONFIG
  return runCommand(process.execPath, [PROJECT_BIN, ...args], {cwd: PROJECT_ROOT, env, input: opts.input, asPostfix: opts.asPostfix, timeoutMs: 30_000})
}

/** One request of our own on a fresh connection, and the reply bytes after the announcement. */
function rawRequest(socketPath: string, attrs: string[]): Promise<string> {
  const request = Buffer.from(`${attrs.map(a => `${a}\0`).join('')}\0`, 'latin1')
  return new Promise((resolve, reject) => {
    let text = ''
    const s = net.createConnection({path: socketPath})
    s.on('data', d => {
      text += d.toString('latin1')
      // announcement "protocol\0proxymap_protocol\0\0", then a reply ending in "\0\0"
      const reply = text.slice('protocol\0proxymap_protocol\0\0'.length)
      if (reply.endsWith('\0\0')) { s.destroy(); resolve(reply) }
    })
    s.on('error', reject)
    s.write(request)
  })
}

const service = (snapshot: StatsSnapshot, name: string): ServiceSnapshot => {
  const found = snapshot.services.find(s => s.service === name)
  assert.ok(found, `no service ${name} in ${JSON.stringify(snapshot)}`)
  return found
}
const table = (s: ServiceSnapshot, name: string): TableSnapshot => {
  const found = s.tables.find(t => t.table === name)
  assert.ok(found, `no table ${name} in ${s.service}: ${JSON.stringify(s.tables.map(t => t.table))}`)
  return found
}

/** Every count of `requests` that is not zero, as "type STATUS". */
function nonZero(requests: ServiceSnapshot['requests']): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [type, byStatus] of Object.entries(requests))
    for (const [status, n] of Object.entries(byStatus)) if (n !== 0) out[`${type} ${status}`] = n
  return out
}

/**
 * A socketmap_table(5) peer on loopback TCP that answers "OK value" to every request, each
 * held back while `holding` is set, so that a test can see the pool busy and queued.
 */
class HoldingSocketmapPeer {
  holding = true
  private readonly held: (() => void)[] = []
  private readonly server = net.createServer(socket => {
    let buffered = Buffer.alloc(0)
    socket.on('error', () => undefined)
    socket.on('data', data => {
      buffered = Buffer.concat([buffered, data])
      for (let colon = buffered.indexOf(':'); colon >= 0; colon = buffered.indexOf(':')) {
        const length = Number(buffered.subarray(0, colon).toString('latin1'))
        if (buffered.length < colon + length + 2) return
        buffered = buffered.subarray(colon + length + 2)
        const answer = () => { socket.write('8:OK value,') }
        if (this.holding) this.held.push(answer)
        else answer()
      }
    })
  })

  get waiting(): number {
    return this.held.length
  }

  async listen(): Promise<number> {
    await new Promise<void>(resolve => this.server.listen({host: '127.0.0.1', port: 0}, resolve))
    return (this.server.address() as net.AddressInfo).port
  }

  release(): void {
    this.holding = false
    for (const answer of this.held.splice(0)) answer()
  }

  close(): void {
    this.server.close()
  }
}

/**
 * A database lock that the queries of a table wait for while the test holds it; the query
 * itself lets go of it (MariaDB) or takes it for its transaction only (PostgreSQL).
 */
interface HeldDatabase {
  query: string
  /** The value of the key "k". */
  value: (key: string) => string
  hold(): Promise<void>
  letGo(): Promise<void>
  end(): Promise<void>
}

const LOCK = `proxymap_stats_${process.pid}`

async function heldMysql(): Promise<HeldDatabase> {
  const admin = await mysql.createConnection({socketPath: '/run/mysqld/mysqld.sock', user: 'root'})
  return {
    query: `SELECT CONCAT(GET_LOCK('${LOCK}', 60), RELEASE_LOCK('${LOCK}'), '-%s')`,
    value: (key) => `11-${key}`,
    hold: async () => { await admin.query(`SELECT GET_LOCK('${LOCK}', 10)`) },
    letGo: async () => { await admin.query(`SELECT RELEASE_LOCK('${LOCK}')`) },
    end: () => admin.end(),
  }
}

async function heldPgsql(): Promise<HeldDatabase> {
  const admin = new pg.Pool({host: '127.0.0.1', port: 5432, user: 'root', database: 'test', max: 1})
  return {
    query: `SELECT 'pg-' || '%s' FROM (SELECT pg_advisory_xact_lock_shared(${process.pid})) AS held`,
    value: (key) => `pg-${key}`,
    hold: async () => { await admin.query({text: `SELECT pg_advisory_lock(${process.pid})`}) },
    letGo: async () => { await admin.query({text: `SELECT pg_advisory_unlock(${process.pid})`}) },
    end: () => admin.end(),
  }
}

const REDIS_PREFIX = `proxymap-stats-${process.pid}:`

describe('proxymap stats', () => {
  let pf: PostfixInstance
  let senders: string
  let virtual: string
  let denied: string
  let socketmap: string
  const peer = new HoldingSocketmapPeer()
  let metricsUrl: string
  let baseline: StatsSnapshot
  let slapd: Slapd
  const held: Record<'mysql' | 'pgsql', {table: string; database: HeldDatabase}> = {} as never
  let ldapTable: string
  let redisTable: string

  async function stats(): Promise<StatsSnapshot> {
    const r = await proxymap(['stats', '-c', pf.etc, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout) as StatsSnapshot
    assert.deepEqual(shapeErrors('stats', doc), [], r.stdout)
    return doc
  }

  before(async () => {
    requirePostfix()
    pf = await createPostfixInstance({prefix: 'pm-stats-'})
    senders = await pf.createTable('lmdb', `${pf.data}/senders`, 'alice@example.com OK\ncarol@example.com REJECT\n')
    virtual = await pf.createTable('texthash', 'virtual', 'alice@example.com alice@mailbox.example.com\n', {build: false})
    denied = await pf.createTable('texthash', 'other', 'x y\n', {build: false})
    socketmap = `socketmap:inet:127.0.0.1:${await peer.listen()}:map`
    for (const [type, open] of [['mysql', heldMysql], ['pgsql', heldPgsql]] as const) {
      const database = await open()
      const cf = path.join(pf.etc, `held-${type}.cf`)
      await pf.writeFile(cf, `hosts = inet:127.0.0.1:${type === 'mysql' ? 3306 : 5432}\nuser = root\ndbname = test\nquery = ${database.query}\n`)
      held[type] = {table: `${type}:${cf}`, database}
    }
    const suffix = 'dc=example,dc=com'
    slapd = await startSlapd({suffix, rootDn: `cn=admin,${suffix}`, rootPw: 'secret'})
    await slapd.add([
      `dn: ${suffix}`, 'objectClass: dcObject', 'objectClass: organization', 'o: Example', 'dc: example', '',
      `dn: uid=alice,${suffix}`, 'objectClass: inetOrgPerson', 'uid: alice', 'cn: Alice', 'sn: A', 'mail: alice@example.com', '',
    ].join('\n'))
    ldapTable = `ldap:${path.join(pf.etc, 'ldap.cf')}`
    await pf.writeFile(path.join(pf.etc, 'ldap.cf'), `server_host = ${slapd.url}\nversion = 3\nsearch_base = ${suffix}\nquery_filter = (uid=%s)\nresult_attribute = mail\n`)
    await redisCli(6379, 'SET', `${REDIS_PREFIX}alice`, 'redis-value')
    redisTable = `redis:${path.join(pf.etc, 'redis.cf')}`
    await pf.writeFile(path.join(pf.etc, 'redis.cf'), `hosts = 127.0.0.1:6379\nkey_format = ${REDIS_PREFIX}%s\n`)
    await pf.approve({read: [senders, virtual, socketmap, held.mysql.table, held.pgsql.table, ldapTable, redisTable], write: [senders]})
    // Four backend connections at most, so that six lookups at once leave two queued.
    await pf.postconf({proxymap_backend_connection_limit: '4'})
    await pf.startOurs(['--prometheus-listen', '127.0.0.1:0'])
    const m = await pf.waitForOurStderr(/ and (http:\/\/127\.0\.0\.1:\d+\/metrics) \(Prometheus\)/)
    metricsUrl = m[1]
    // startOurs() has probed the sockets (connections without requests): counted from here.
    baseline = await stats()

    // The workload.
    const lookups = await pf.postmap(['-q', '-', `proxy:${senders}`], {input: 'alice@example.com\ncarol@example.com\nnobody@example.com\nnone@example.com\nalice@example.com\n'})
    assert.equal(lookups.code, 0, lookups.stderr)
    const miss = await pf.postmap(['-q', 'nobody@example.com', `proxy:${virtual}`])
    assert.equal(miss.code, 1, miss.stderr)
    const deny = await pf.postmap(['-q', 'x', `proxy:${denied}`])
    assert.notEqual(deny.code, 0)
    for (const [key, value] of [['dave@example.com', 'OK'], ['erin@example.com', 'OK']]) {
      const r = await proxymap(['update', '-c', pf.etc, `proxy:${senders}`, key, value])
      assert.equal(r.code, 0, r.stderr)
    }
    const gone = await proxymap(['delete', '-c', pf.etc, `proxy:${senders}`, 'nobody@example.com'])
    assert.equal(gone.code, 1, gone.stderr)
    // BAD from the service (a table name without a type) and BAD from the decoder (no key).
    assert.match(await rawRequest(pf.socketPath('proxymap'), ['request', 'lookup', 'table', 'nocolon', 'flags', '0', 'key', 'k']), /^status\x003\0/)
    assert.match(await rawRequest(pf.socketPath('proxymap'), ['request', 'lookup', 'table', senders, 'flags', '0']), /^status\x003\0/)
  })

  after(async () => {
    peer.release()
    for (const {database} of Object.values(held)) await database.letGo().catch(() => {})
    await pf?.destroy()
    peer.close()
    for (const {database} of Object.values(held)) await database.end()
    await slapd?.destroy()
    await redisCli(6379, 'DEL', `${REDIS_PREFIX}alice`).catch(() => {})
  })

  test('a fresh server has answered nothing', () => {
    for (const s of baseline.services) {
      assert.equal(s.total, 0, s.service)
      assert.deepEqual(s.tables, [])
      assert.equal(s.latency.count, 0)
    }
    assert.deepEqual(baseline.services.map(s => s.service), ['proxymap', 'proxywrite'])
  })

  test('--json after the workload: exactly its counts, per service and per table', async () => {
    const now = await stats()
    const read = service(now, 'proxymap')
    // postmap -q: one open per run (three runs), then a lookup per key; the DENY is the open's.
    assert.deepEqual(nonZero(read.requests), {'open OK': 2, 'open DENY': 1, 'lookup OK': 3, 'lookup NOKEY': 3, 'lookup BAD': 1})
    assert.equal(read.total, 10)
    assert.equal(read.hits, 3)
    assert.equal(read.misses, 3)
    assert.equal(read.badRequests, 1, 'the lookup without a key, answered BAD by the decoder')
    assert.equal(read.unrecognizedRequests, 0)
    assert.equal(read.malformedInput, 0)
    assert.equal(read.latency.count, read.total)
    assert.equal(read.latency.counts.reduce((a, b) => a + b, 0), read.total)
    // 3 postmap runs and 2 raw connections; none is still open.
    assert.equal(read.connections.accepted - service(baseline, 'proxymap').connections.accepted, 5)
    assert.equal(read.connections.open, 0)
    assert.equal(read.openInstances, 2)
    const readSenders = table(read, senders)
    assert.deepEqual(nonZero(readSenders.requests), {'open OK': 1, 'lookup OK': 3, 'lookup NOKEY': 2})
    assert.equal(readSenders.latency.count, 6)
    assert.equal(readSenders.openInstances, 1)
    assert.equal(readSenders.pool, null, 'lmdb has no backend pool')
    assert.deepEqual(nonZero(table(read, virtual).requests), {'open OK': 1, 'lookup NOKEY': 1})
    assert.ok(!read.tables.some(t => t.table === denied || t.table === 'nocolon'), 'tables not approved are not listed')

    const write = service(now, 'proxywrite')
    assert.deepEqual(nonZero(write.requests), {'open OK': 3, 'update OK': 2, 'delete NOKEY': 1})
    assert.deepEqual(nonZero(table(write, senders).requests), {'open OK': 3, 'update OK': 2, 'delete NOKEY': 1})
    assert.equal(write.connections.accepted - service(baseline, 'proxywrite').connections.accepted, 3)
  })

  test('the Prometheus endpoint parses with prometheus_client and has the same counts', async () => {
    const now = await stats()
    const response = await fetch(metricsUrl)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    const parsed = await runCommand(SYSTEM_PYTHON, ['-c', PARSE_METRICS], {input: await response.text()})
    assert.equal(parsed.code, 0, parsed.stderr)
    const samples = JSON.parse(parsed.stdout) as Sample[]
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value
    const read = {service: 'proxymap'}
    assert.equal(value('proxymap_requests_total', {...read, request: 'lookup', status: 'OK'}), 3)
    assert.equal(value('proxymap_requests_total', {...read, request: 'lookup', status: 'NOKEY'}), 3)
    assert.equal(value('proxymap_requests_total', {...read, request: 'open', status: 'DENY'}), 1)
    assert.equal(value('proxymap_requests_total', {service: 'proxywrite', request: 'update', status: 'OK'}), 2)
    assert.equal(value('proxymap_rejected_requests_total', {...read, reason: 'bad'}), 1)
    assert.equal(value('proxymap_table_requests_total', {...read, table: senders, request: 'lookup', status: 'OK'}), 3)
    assert.equal(value('proxymap_table_requests_total', {service: 'proxywrite', table: senders, request: 'delete', status: 'NOKEY'}), 1)
    assert.equal(value('proxymap_open_instances', read), 2)
    assert.equal(value('proxymap_connections_accepted_total', read), service(now, 'proxymap').connections.accepted)
    // The histogram: cumulative buckets ending in +Inf = _count = every request of the service.
    assert.equal(samples.find(s => s.name === 'proxymap_request_duration_seconds_count' && s.labels.service === 'proxymap')?.type, 'histogram')
    assert.equal(value('proxymap_request_duration_seconds_count', read), 10)
    assert.equal(value('proxymap_request_duration_seconds_bucket', {...read, le: '+Inf'}), 10)
    const buckets = samples.filter(s => s.name === 'proxymap_request_duration_seconds_bucket' && s.labels.service === 'proxymap').map(s => s.value)
    assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b), 'cumulative')
    assert.equal((await fetch(new URL('/other', metricsUrl))).status, 404)
  })

  test('the stats socket is beside the service sockets, guarded by private/ as they are', async () => {
    const socket = path.join(pf.spool, 'private', 'proxymap.stats')
    const mode = (p: string) => fs.statSync(p).mode & 0o7777
    assert.ok(fs.statSync(socket).isSocket())
    assert.equal(mode(socket), mode(pf.socketPath('proxymap')))
    assert.equal(mode(path.dirname(socket)), 0o700)
    // mail_owner (postfix) reads it; nobody else can reach private/.
    const asPostfix = await proxymap(['stats', '-c', pf.etc, '--json'], {asPostfix: true})
    assert.equal(asPostfix.code, 0, asPostfix.stderr)
    const nobody = await runCommand('/usr/sbin/runuser', ['-u', 'nobody', '--', process.execPath, PROJECT_BIN, 'stats', '-c', pf.etc], {cwd: '/'})
    assert.equal(nobody.code, 6, nobody.stderr)
    assert.match(nobody.stderr, /permission denied/)
  })

  test('input on the stats socket is discarded: the document still comes, the server stays', async () => {
    const socket = path.join(pf.spool, 'private', 'proxymap.stats')
    const text = await new Promise<string>((resolve, reject) => {
      let got = ''
      const s = net.createConnection({path: socket})
      s.on('data', d => { got += d.toString() })
      s.on('end', () => resolve(got))
      s.on('error', reject)
      s.write(Buffer.alloc(1024 * 1024, 'x'))
      s.end()
    })
    assert.equal((JSON.parse(text) as StatsSnapshot).pid, pf.ourPid())
    assert.equal((await pf.postmap(['-q', 'alice@example.com', `proxy:${senders}`])).stdout, 'OK\n')
  })

  test('table on a terminal, key=value lines in a pipe', async () => {
    const onTerminal = await runOnTerminal(['stats', '-c', pf.etc, '--no-color'])
    assert.equal(onTerminal.code, 0, onTerminal.stdout)
    assert.match(onTerminal.stdout, /request.*OK.*NOKEY.*RETRY.*BAD.*DENY.*CONFIG/)
    assert.match(onTerminal.stdout, /proxymap\S*: 12 requests, 4 hits, 3 misses, 1 rejected before a table/)
    const widest = Math.max(...onTerminal.stdout.split('\n').map(line => line.replace(/\r$/, '').length))
    assert.ok(widest <= 80, `fits the 80 columns of the terminal (${widest})`)
    assert.ok(onTerminal.stdout.includes('─') || onTerminal.stdout.includes('┌'), 'a drawn table')
    const piped = await proxymap(['stats', '-c', pf.etc])
    assert.equal(piped.code, 0, piped.stderr)
    assert.match(piped.stdout, /^service=proxywrite requests=6 OK=5 NOKEY=1 RETRY=0 BAD=0 DENY=0 CONFIG=0 hits=0 misses=0 /m)
    assert.ok(piped.stdout.split('\n').some(l => l.startsWith(`service=proxywrite table=${senders} requests=6 `)))
  })

  test('--watch prints every second until SIGINT, which exits 0', async () => {
    const child = spawnTracked(process.execPath, [PROJECT_BIN, 'stats', '-c', pf.etc, '--watch'], {cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout!.on('data', d => { out += d.toString() })
    const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
    const stamps = () => new Set(out.split('\n').filter(l => l.includes('service=proxymap requests=')).map(l => l.split(' ')[0]))
    await waitFor(() => stamps().size >= 2, 30_000, () => `two rounds of lines: ${out}`)
    child.kill('SIGINT')
    assert.equal(await exited, 0)
    for (const stamp of stamps()) assert.ok(!Number.isNaN(Date.parse(stamp)), stamp)
  })

  test('--watch on a terminal redraws every second, and Ctrl-C ends it with exit 0', async () => {
    // Ctrl-C, typed once the table has been drawn twice.
    const r = await runOnTerminal(['stats', '-c', pf.etc, '--watch', '--no-color'], {answer: '\x03', typeAfter: {text: '\x1b[H\x1b[2J', times: 2}})
    assert.equal(r.code, 0, r.stdout)
    assert.ok(r.stdout.split('\x1b[H\x1b[2J').filter(frame => /proxymap: \d+ requests/.test(frame)).length >= 2, r.stdout)
  })

  test('no server: exit 6, naming the socket and what to start', async () => {
    const idle = fs.mkdtempSync(path.join(pf.dir, 'idle-'))
    fs.writeFileSync(path.join(idle, 'main.cf'), `queue_directory = ${idle}/spool\n`)
    const r = await proxymap(['stats', '-c', idle, '--json'])
    assert.equal(r.code, 6)
    const doc = JSON.parse(r.stdout) as {error: {message: string; hint: string}}
    assert.match(doc.error.message, /private\/proxymap\.stats/)
    assert.match(doc.error.hint, /proxymap serve -c /)
  })

  test('a backend pool: its connections, busy and queued requests, as Table.poolStats() has them', async () => {
    // Six clients at once with distinct keys against a pool of at most four connections.
    const clients = Array.from({length: 6}, (_, i) => pf.postmap(['-q', `key${i}`, `proxy:${socketmap}`], {timeoutMs: 60_000}))
    const pool = async () => table(service(await stats(), 'proxymap'), socketmap).pool
    await waitFor(async () => peer.waiting === 4 && (await pool())?.queued === 2, 30_000, () => `4 requests held by the peer (${peer.waiting}) and 2 queued`)
    assert.deepEqual(await pool(), {connections: 4, busy: 4, queued: 2})
    peer.release()
    for (const r of await Promise.all(clients)) assert.equal(r.stdout, 'value\n', r.stderr)
    // The connections stay open for the next lookups (idle until max_idle).
    assert.deepEqual(await pool(), {connections: 4, busy: 0, queued: 0})
    assert.deepEqual(nonZero(table(service(await stats(), 'proxymap'), socketmap).requests), {'open OK': 6, 'lookup OK': 6})
  })
  for (const type of ['mysql', 'pgsql'] as const) {
    test(`a ${type} table's pool: queries held at the database are busy, those beyond the connection limit queued`, async () => {
      const {table: name, database} = held[type]
      const pool = async () => service(await stats(), 'proxymap').tables.find(t => t.table === name)?.pool
      await database.hold()
      const keys = Array.from({length: 6}, (_, i) => `key${i}`)
      let clients: Promise<RunResult>[] = []
      try {
        clients = keys.map(key => pf.postmap(['-q', key, `proxy:${name}`], {timeoutMs: 60_000}))
        // the limit is four connections (before()): four queries wait for the lock, two for a connection
        await waitFor(async () => {
          const now = await pool()
          return (now?.busy === 4 && now.queued === 2) || undefined
        }, 30_000, () => 'four lookups at the database and two queued')
        assert.deepEqual(await pool(), {connections: 4, busy: 4, queued: 2})
      } finally {
        await database.letGo()
      }
      const answers = await Promise.all(clients)
      assert.deepEqual(answers.map(r => r.stdout), keys.map(key => `${database.value(key)}\n`), answers.map(r => r.stderr).join(''))
      // the connections stay open for the next lookups (until idle for 60 s)
      assert.deepEqual(await pool(), {connections: 4, busy: 0, queued: 0})
    })
  }

  test('ldap and redis tables: the one connection of their server settings (shared with tables of the same settings)', async () => {
    for (const [name, value] of [[ldapTable, 'alice@example.com'], [redisTable, 'redis-value']]) {
      const r = await pf.postmap(['-q', 'alice', `proxy:${name}`])
      assert.equal(r.stdout, `${value}\n`, r.stderr)
      assert.deepEqual(table(service(await stats(), 'proxymap'), name).pool, {connections: 1, busy: 0, queued: 0}, name)
      // a second instance (other flags) uses the same connection: it is counted once
      assert.match(await rawRequest(pf.socketPath('proxymap'), ['request', 'lookup', 'table', name, 'flags', String(DICT_FLAG.TRY0NULL), 'key', 'alice']), /^status\x000\0/)
      const both = table(service(await stats(), 'proxymap'), name)
      assert.equal(both.openInstances, 2, name)
      assert.deepEqual(both.pool, {connections: 1, busy: 0, queued: 0}, name)
    }
  })
})
