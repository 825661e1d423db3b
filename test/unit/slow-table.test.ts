// A slow table must not hold up the others: a socketmap server that answers after 2 s,
// and lookups of a texthash table through the same ProxymapService instance meanwhile
// are answered within 50 ms. Also: the socketmap/tcp clients against small test servers
// (replies, %XX coding, time limit -> RETRY).
//
// Run: node --import tsx --test test/unit/slow-table.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import {loadMainConfig} from '../../src/lib/config/index.js'
import {AccessPolicy} from '../../src/lib/access/index.js'
import {Logger, MemorySink} from '../../src/lib/log/logger.js'
import {DICT_FLAG, PROXY_STAT, type ProxyRequest} from '../../src/lib/protocol/index.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import {ClientSession, ProxymapService} from '../../src/lib/server/proxymap-service.js'
import {socketmapTypeWith} from '../../src/lib/tables/socketmap.js'
import {hexQuote, tcpTypeWith} from '../../src/lib/tables/tcp.js'
import type {OpenOptions} from '../../src/lib/tables/table.js'
import {onSocketmapRequests} from '../helpers/held-socketmap.js'

const SLOW_MS = 2000
let dir: string
const servers: net.Server[] = []
const received: string[] = []

/** A socketmap server: netstring "name key" -> "OK value-of-key" after `delayMs`. */
function socketmapServer(socketPath: string, delayMs: number): Promise<void> {
  const server = net.createServer((sock) => {
    onSocketmapRequests(sock, (request, reply) => {
      received.push(request)
      const key = request.slice(request.indexOf(' ') + 1)
      const text = key === 'missing' ? 'NOTFOUND ' : key === 'temp' ? 'TEMP try later' : key === 'perm' ? 'PERM no' : `OK value-of-${key}`
      setTimeout(() => reply(text), delayMs)
    })
    sock.on('error', () => {})
  })
  servers.push(server)
  return new Promise((resolve) => server.listen(socketPath, resolve))
}

/** A tcp_table server: "get KEY" -> 200/500/400 lines. */
function tcpServer(): Promise<number> {
  const server = net.createServer((sock) => {
    let buf = ''
    sock.setEncoding('latin1')
    sock.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        received.push(line)
        const key = decodeURIComponent(line.slice(4))
        if (key === 'missing') sock.write('500 not found\n')
        else if (key === 'temp') sock.write('400 later\n')
        else if (key === 'slow') setTimeout(() => sock.write('200 slow\n'), 1000)
        else sock.write(`200 ${hexQuote(`v=${key}`)}\n`)
      }
    })
    sock.on('error', () => {})
  })
  servers.push(server)
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
}

before(async () => {
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-slow-')))
  await socketmapServer(path.join(dir, 'slow.sock'), SLOW_MS)
  await socketmapServer(path.join(dir, 'fast.sock'), 0)
})

after(() => {
  for (const s of servers) s.close()
  fs.rmSync(dir, {recursive: true, force: true})
})

const lookup = (table: string, key: string): ProxyRequest => ({
  request: 'lookup', dialect: 'v2', table, key,
  instanceFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX, requestFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX,
})

test('a socketmap table that answers after 2 s does not delay lookups of another table', async () => {
  const texthash = path.join(dir, 'fast.txt')
  fs.writeFileSync(texthash, 'alice  ALICE\nbob  BOB\n')
  const t = Date.now() / 1000 - 10
  fs.utimesSync(texthash, t, t)
  const slow = `socketmap:unix:${path.join(dir, 'slow.sock')}:slowmap`
  const fast = `texthash:${texthash}`
  fs.writeFileSync(path.join(dir, 'main.cf'), `compatibility_level = 3.6\nproxy_read_maps = proxy:${slow} proxy:${fast}\n`)
  fs.utimesSync(path.join(dir, 'main.cf'), t, t)
  const config = loadMainConfig({configDir: dir})
  const sink = new MemorySink()
  const service = new ProxymapService({
    kind: 'read', policy: AccessPolicy.fromConfig(config), registry: new TableRegistry(), config,
    log: new Logger('postfix/proxymap[1]', [sink]),
  })
  const session = new ClientSession()
  const first = await service.handle(lookup(fast, 'alice'), session)
  assert.deepEqual([first.status, first.value], [PROXY_STAT.OK, 'ALICE'], sink.lines.join('\n'))

  const started = Date.now()
  const slowReply = Promise.resolve(service.handle(lookup(slow, 'key1'), session))
  const slowReply2 = Promise.resolve(service.handle(lookup(slow, 'key2'), session))
  const times: number[] = []
  while (Date.now() - started < SLOW_MS - 300) {
    const t0 = performance.now()
    const reply = await service.handle(lookup(fast, 'bob'), session)
    times.push(performance.now() - t0)
    assert.equal(reply.value, 'BOB')
    await new Promise((r) => setTimeout(r, 100))
  }
  const [r1, r2] = await Promise.all([slowReply, slowReply2])
  const slowMs = Date.now() - started
  console.log(`fast lookups while the slow one waited: ${times.length}, slowest ${Math.max(...times).toFixed(1)} ms; slow lookups took ${slowMs} ms`)
  assert.ok(times.length >= 10)
  assert.ok(Math.max(...times) < 50, `a fast lookup took ${Math.max(...times)} ms`)
  assert.deepEqual([r1.status, r1.value, r2.value], [PROXY_STAT.OK, 'value-of-key1', 'value-of-key2'], sink.lines.join('\n'))
  // two connections: the second slow lookup did not queue behind the first
  assert.ok(slowMs < SLOW_MS * 1.5, `slow lookups took ${slowMs} ms`)
})

function openOptions(): OpenOptions {
  const config = {configDir: dir, get: (n: string) => (n === 'smtputf8_enable' ? 'yes' : ''), raw: () => undefined, isSet: () => false}
  return {
    mode: 'read', dictFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_MUL, config,
    log: {warning: () => {}, error: () => {}, info: () => {}}, openNested: () => { throw new Error('unused') },
  }
}

test('socketmap client: replies, folding and the time limit', async () => {
  const type = socketmapTypeWith({timeoutMs: 500})
  const fast = await type.open(`unix:${path.join(dir, 'fast.sock')}:mymap`, openOptions())
  assert.equal(await fast.lookup('Key'), 'value-of-key')
  assert.equal(received.at(-1), 'mymap key')
  assert.equal(await fast.lookup('missing'), undefined)
  await assert.rejects(async () => fast.lookup('temp'), {kind: 'retry'})
  await assert.rejects(async () => fast.lookup('perm'), {kind: 'config'})
  const slow = await type.open(`unix:${path.join(dir, 'slow.sock')}:mymap`, openOptions())
  const t0 = Date.now()
  await assert.rejects(async () => slow.lookup('x'), {kind: 'retry'})
  assert.ok(Date.now() - t0 < 1500)
  const dead = await type.open(`unix:${path.join(dir, 'nothing.sock')}:mymap`, openOptions())
  await assert.rejects(async () => dead.lookup('x'), {kind: 'retry'})
})

test('tcp client: %XX coding, 200/500/400 and the time limit', async () => {
  const port = await tcpServer()
  const type = tcpTypeWith({timeoutMs: 300, retryDelayMs: 10})
  const table = await type.open(`127.0.0.1:${port}`, openOptions())
  assert.equal(await table.lookup('a b%c'), 'v=a b%c')
  assert.equal(received.at(-1), 'get a%20b%25c')
  assert.equal(await table.lookup('missing'), undefined)
  await assert.rejects(async () => table.lookup('temp'), {kind: 'retry'})
  await assert.rejects(async () => table.lookup('slow'), {kind: 'retry'})
})

test('sql host pool: a server that goes away is a RETRY, and is used again after the retry interval', async () => {
  const {HostPool, DEFAULT_SQL_POOL_LIMITS} = await import('../../src/lib/tables/sql/host-pool.js')
  let up = true
  let connects = 0
  const warnings: string[] = []
  const pool = new HostPool([{spec: 'inet:db:1', unix: false}], async () => {
    connects++
    if (!up) throw new Error('connection refused')
    return {
      query: async () => {
        if (!up) throw new Error('server has gone away')
        return [['v']]
      },
      end: async () => {},
      destroy: async () => {},
      stats: () => ({connections: 1, busy: 0, queued: 0}),
    }
  }, (h, err) => `connect to server ${h.spec}: ${(err as Error).message}`,
  {warning: (m) => warnings.push(m), error: () => {}, info: () => {}},
  {...DEFAULT_SQL_POOL_LIMITS, retryIntervalMs: 200})
  assert.deepEqual(await pool.query('q'), [['v']])
  up = false
  await assert.rejects(pool.query('q'), {kind: 'retry'})
  up = true
  await assert.rejects(pool.query('q'), {kind: 'retry'}) // still within the retry interval
  await new Promise((r) => setTimeout(r, 250))
  assert.deepEqual(await pool.query('q'), [['v']])
  assert.equal(connects, 2)
  assert.deepEqual(warnings, ['server has gone away'])
  await pool.close()
})
