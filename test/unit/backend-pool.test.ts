// Backend connections that follow demand (src/lib/tables/backend-pool.ts), counted at a real
// socketmap server in this process that holds its answers until the test lets them go (no
// timings: every step waits for what the server has seen):
// - identical lookups of one table in flight at once reach the server once, and all get its
//   answer, or its error; lookups of another table on the same server are not joined;
// - N distinct lookups in flight open N connections, up to the limit (a tableType limit, or
//   main.cf proxymap_backend_connection_limit); the ones beyond it wait;
// - waiting lookups are sent in the order they arrived;
// - idle connections are closed after the idle time;
// - memcache: identical lookups in flight are one "get", but a lookup after an update is
//   not joined with one from before it.
//
// Run: node --import tsx --test test/unit/backend-pool.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import {loadMainConfig, type MainConfig} from '../../src/lib/config/index.js'
import {DICT_FLAG} from '../../src/lib/protocol/index.js'
import {DEFAULT_BACKEND_CONNECTION_LIMIT} from '../../src/lib/tables/backend-pool.js'
import {memcacheTypeWith} from '../../src/lib/tables/memcache.js'
import {socketmapTypeWith} from '../../src/lib/tables/socketmap.js'
import type {OpenOptions, Table} from '../../src/lib/tables/table.js'
import {HeldSocketmap} from '../helpers/held-socketmap.js'
import {waitFor} from '../helpers/postfix.js'

let dir: string

const servers: HeldSocketmap[] = []

async function heldServer(name: string): Promise<HeldSocketmap> {
  const s = new HeldSocketmap(path.join(dir, `${name}.sock`))
  await s.listen()
  servers.push(s)
  return s
}

function optionsWith(config: MainConfig): OpenOptions {
  return {
    mode: 'read', dictFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_MUL, config,
    log: {warning: () => {}, error: () => {}, info: () => {}}, openNested: () => { throw new Error('unused') },
  }
}

function configWith(mainCf: string): MainConfig {
  const configDir = fs.mkdtempSync(path.join(dir, 'etc-'))
  fs.writeFileSync(path.join(configDir, 'main.cf'), mainCf)
  return loadMainConfig({configDir})
}

const wait = (what: string, probe: () => boolean): Promise<true> => waitFor(() => probe() || undefined, 20_000, () => `timed out waiting for ${what}`, 5)

async function open(server: HeldSocketmap, map: string, limits: Parameters<typeof socketmapTypeWith>[0] = {}, mainCf = ''): Promise<Table> {
  return socketmapTypeWith(limits).open(`unix:${server.socketPath}:${map}`, optionsWith(configWith(mainCf)))
}

before(() => {
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-backend-pool-')))
})

after(async () => {
  for (const s of servers) await s.close()
  fs.rmSync(dir, {recursive: true, force: true})
})

test('identical lookups in flight reach the backend once; another table on the same server is not joined', async () => {
  const server = await heldServer('coalesce')
  const table = await open(server, 'one')
  const other = await open(server, 'two')
  // folded alike (FOLD_MUL): one key
  const answers = ['Key', 'KEY', 'key', 'kEy', 'key', 'Key', 'key', 'KEY'].map((k) => Promise.resolve(table.lookup(k)))
  const otherAnswer = Promise.resolve(other.lookup('key'))
  await wait('the two requests', () => server.requests.length === 2)
  assert.equal(server.heldCount, 2)
  server.answer()
  assert.deepEqual(await Promise.all(answers), Array(8).fill('one=key'))
  assert.equal(await otherAnswer, 'two=key')
  assert.deepEqual(server.requests.sort(), ['one key', 'two key'])
  // the answer is not kept: a lookup after it asks again
  server.letGo()
  assert.equal(await table.lookup('key'), 'one=key')
  assert.equal(server.requests.length, 3)
  table.close?.()
  other.close?.()
})

test('an error of a joined lookup answers every waiter the same way', async () => {
  const server = await heldServer('coalesce-error')
  const table = await open(server, 'map')
  const answers = Array.from({length: 5}, () => Promise.resolve(table.lookup('temp')).then(() => 'no error', (err: Error & {kind?: string}) => `${err.kind}: ${err.message}`))
  await wait('the request', () => server.requests.length === 1)
  server.answer()
  const got = await Promise.all(answers)
  assert.deepEqual(got, Array(5).fill(`retry: socketmap:unix:${server.socketPath}:map socketmap server temporary error: try later`))
  assert.deepEqual(server.requests, ['map temp'])
  table.close?.()
})

test('the pool grows with distinct lookups in flight, up to the limit; the others wait', async () => {
  const server = await heldServer('grow')
  const table = await open(server, 'map', {maxConnections: 6})
  const keys = Array.from({length: 10}, (_, i) => `k${i}`)
  const first = keys.slice(0, 4).map((k) => Promise.resolve(table.lookup(k)))
  await wait('4 requests', () => server.requests.length === 4)
  assert.equal(server.open, 4)
  const rest = keys.slice(4).map((k) => Promise.resolve(table.lookup(k)))
  await wait('6 requests', () => server.requests.length === 6)
  assert.deepEqual([server.open, server.accepted, server.mostAtOnce], [6, 6, 6])
  server.letGo()
  assert.deepEqual(await Promise.all([...first, ...rest]), keys.map((k) => `map=${k}`))
  assert.deepEqual([server.requests.length, server.accepted, server.mostAtOnce], [10, 6, 6])
  table.close?.()
})

test('the limit is main.cf proxymap_backend_connection_limit, by default ' + DEFAULT_BACKEND_CONNECTION_LIMIT, async () => {
  const server = await heldServer('limit')
  for (const [mainCf, limit] of [['proxymap_backend_connection_limit = 3\n', 3], ['', DEFAULT_BACKEND_CONNECTION_LIMIT]] as const) {
    server.reset()
    const table = await open(server, 'map', {}, mainCf)
    const keys = Array.from({length: limit + 5}, (_, i) => `k${i}`)
    const answers = keys.map((k) => Promise.resolve(table.lookup(k)))
    await wait(`${limit} requests`, () => server.requests.length === limit)
    // the others really wait: nothing more arrives while the first ones are held
    await wait('a connection in use', () => server.open === limit)
    server.answer(1)
    await wait('one more request', () => server.requests.length === limit + 1)
    assert.equal(server.accepted, limit)
    server.letGo()
    assert.deepEqual(await Promise.all(answers), keys.map((k) => `map=${k}`))
    assert.equal(server.accepted, limit, mainCf)
    table.close?.()
    await wait('connections closed', () => server.open === 0)
  }
})

test('waiting lookups are sent in the order they arrived', async () => {
  const server = await heldServer('fifo')
  const table = await open(server, 'map', {maxConnections: 2})
  const order = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
  const answers: Promise<unknown>[] = []
  for (const k of order) answers.push(Promise.resolve(table.lookup(k)))
  // one answer at a time: each frees a connection for the next waiter
  for (let sent = 2; sent <= order.length; sent++) {
    await wait(`${sent} requests`, () => server.requests.length === sent)
    server.answer(1)
  }
  server.letGo()
  await Promise.all(answers)
  assert.deepEqual(server.requests, order.map((k) => `map ${k}`))
  table.close?.()
})

test('connections idle for the idle time are closed; the pool grows again on demand', async () => {
  const server = await heldServer('shrink')
  const table = await open(server, 'map', {maxConnections: 8, maxIdleMs: 300})
  for (let round = 1; round <= 2; round++) {
    server.reset()
    const answers = ['a', 'b', 'c', 'd', 'e'].map((k) => Promise.resolve(table.lookup(k)))
    await wait('5 requests', () => server.requests.length === 5)
    server.letGo()
    await Promise.all(answers)
    assert.equal(server.accepted, 5, `round ${round}`)
    // all five were open when the answers came
    assert.equal(server.mostAtOnce, 5)
    await wait('the idle connections closed', () => server.open === 0)
  }
  table.close?.()
})

/** A memcached text-protocol server whose "get" answers wait until the test lets them go ("set" is answered at once). */
class HeldMemcache {
  readonly server: net.Server
  readonly requests: string[] = []
  readonly store = new Map<string, string>()
  private readonly held: (() => void)[] = []

  constructor(readonly socketPath: string) {
    this.server = net.createServer((sock) => {
      sock.on('error', () => {})
      let buf = ''
      sock.setEncoding('latin1')
      sock.on('data', (d: string) => {
        buf += d
        for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
          const [verb, key, , , length] = buf.slice(0, nl).split(' ')
          if (verb === 'set') {
            const end = nl + 2 + Number(length)
            if (buf.length < end + 2) return
            this.store.set(key!, buf.slice(nl + 2, end))
            buf = buf.slice(end + 2)
            this.requests.push(`set ${key}`)
            sock.write('STORED\r\n')
            continue
          }
          buf = buf.slice(nl + 2)
          this.requests.push(`${verb} ${key}`)
          // the value as it is when the answer goes
          this.held.push(() => {
            const v = this.store.get(key!)
            sock.write(v === undefined ? 'END\r\n' : `VALUE ${key} 0 ${v.length}\r\n${v}\r\nEND\r\n`)
          })
        }
      })
    })
  }

  get heldCount(): number {
    return this.held.length
  }

  answer(): void {
    for (const a of this.held.splice(0)) a()
  }
}

test('memcache: identical lookups in flight are one get; a lookup after an update is not joined with one from before', async () => {
  const mc = new HeldMemcache(path.join(dir, 'memcache.sock'))
  await new Promise<void>((r) => mc.server.listen(mc.socketPath, r))
  const cf = path.join(dir, 'memcache.cf')
  fs.writeFileSync(cf, `memcache = unix:${mc.socketPath}\ntimeout = 60\n`)
  const table = await memcacheTypeWith().open(cf, {...optionsWith(configWith('')), mode: 'write', dictFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX})
  try {
    mc.store.set('key', 'old')
    const before = ['Key', 'KEY', 'key'].map((k) => Promise.resolve(table.lookup(k)))
    await wait('the first get', () => mc.heldCount === 1)
    assert.equal(await table.update!('key', 'new'), true)
    const afterUpdate = [Promise.resolve(table.lookup('key')), Promise.resolve(table.lookup('KEY'))]
    await wait(`the second get (seen: ${mc.requests.join(', ')})`, () => mc.heldCount === 2)
    mc.answer()
    await Promise.all([...before, ...afterUpdate])
    assert.deepEqual(await Promise.all(afterUpdate), ['new', 'new'])
    assert.deepEqual(mc.requests, ['get key', 'set key', 'get key'])
  } finally {
    await table.close?.()
    await new Promise((r) => mc.server.close(r))
  }
})
