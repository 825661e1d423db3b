// Open table instances are bounded and released: a client cycling through instance flags
// (each value is a new instance in Postfix's proxymap) leaves at most MAX_INSTANCES_PER_NAME
// open; an instance no request uses for max_idle is closed, unless a client is in the middle
// of a sequence of it; a reopened (changed) table's old instance is closed once its last
// request is done. The ProxymapService runs over the real texthash type; the registry only
// counts what the real tables do on close.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, test} from 'node:test'

import {AccessPolicy} from '../../src/lib/access/index.js'
import {loadMainConfig} from '../../src/lib/config/index.js'
import {Logger, MemorySink} from '../../src/lib/log/logger.js'
import {DICT_FLAG, PROXY_STAT, type ProxyRequest} from '../../src/lib/protocol/index.js'
import {ClientSession, MAX_INSTANCES_PER_NAME, ProxymapService} from '../../src/lib/server/proxymap-service.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import type {Table, TableType} from '../../src/lib/tables/table.js'
import {texthashType} from '../../src/lib/tables/texthash.js'
import {waitFor} from '../helpers/postfix.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-instances-'))
after(() => fs.rmSync(dir, {recursive: true, force: true}))

interface Counted {service: ProxymapService; closed: Table[]; table: string; sink: MemorySink}

function setUp(idleReleaseMs?: number): Counted {
  const file = path.join(dir, `t${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(file, 'alice ALICE\nbob BOB\n')
  const old = Date.now() / 1000 - 10
  fs.utimesSync(file, old, old)
  const table = `texthash:${file}`
  fs.writeFileSync(path.join(dir, 'main.cf'), `compatibility_level = 3.6\nproxy_read_maps = proxy:${table}\n`)
  const config = loadMainConfig({configDir: dir})
  const closed: Table[] = []
  const registry = new TableRegistry()
  const counting: TableType = {
    type: 'texthash',
    async open(name, options) {
      const t = await texthashType.open(name, options)
      const close = t.close?.bind(t)
      t.close = () => { closed.push(t); return close?.() }
      return t
    },
  }
  registry.register(counting)
  const sink = new MemorySink()
  const service = new ProxymapService({
    kind: 'read', policy: AccessPolicy.fromConfig(config), registry, config,
    log: new Logger('postfix/proxymap[1]', [sink]), idleReleaseMs,
  })
  return {service, closed, table, sink}
}

const v2 = (request: 'lookup' | 'sequence', table: string, instanceFlags: number, extra: Partial<ProxyRequest> = {}): ProxyRequest => ({
  request, dialect: 'v2', table, instanceFlags, requestFlags: DICT_FLAG.FOLD_FIX, ...extra,
})

test('512 distinct instance flags leave at most MAX_INSTANCES_PER_NAME instances open, all answering', async () => {
  const {service, closed, table} = setUp()
  const session = new ClientSession()
  for (let i = 0; i < 512; i++) {
    const reply = await service.handle(v2('lookup', table, DICT_FLAG.FOLD_FIX | (i << 24) >>> 0, {key: 'alice'}), session)
    assert.equal(reply.status, PROXY_STAT.OK)
    assert.equal(reply.value, 'ALICE')
    assert.ok(service.openInstances <= MAX_INSTANCES_PER_NAME, `${service.openInstances} open after ${i + 1} flag values`)
  }
  assert.equal(closed.length, 512 - service.openInstances, 'every instance let go was closed')
})

test('an instance unused for max_idle is closed; a client in the middle of a sequence keeps its own', async () => {
  const {service, closed, table} = setUp(100)
  const walker = new ClientSession()
  const first = await service.handle(v2('sequence', table, 0, {func: 0}), walker)
  assert.equal(first.status, PROXY_STAT.OK)
  const other = new ClientSession()
  await service.handle(v2('lookup', table, DICT_FLAG.FOLD_FIX, {key: 'bob'}), other)
  assert.equal(service.openInstances, 2)
  await waitFor(() => service.openInstances === 1, 5000, () => `${service.openInstances} instances open`)
  assert.equal(closed.length, 1, 'the idle lookup instance was closed')
  const next = await service.handle(v2('sequence', table, 0, {func: 1}), walker)
  assert.equal(next.status, PROXY_STAT.OK, 'the sequence goes on where it was')
  assert.notEqual(next.key, first.key)
  walker.close()
  await waitFor(() => service.openInstances === 0, 5000, () => `${service.openInstances} instances open after the walker left`)
  assert.equal(closed.length, 2)
  const again = await service.handle(v2('lookup', table, DICT_FLAG.FOLD_FIX, {key: 'bob'}), other)
  assert.equal(again.value, 'BOB', 'a released table opens again on demand')
})

test('a changed table: the old instance is closed, once, when the new one is in place', async () => {
  const {service, closed, table} = setUp()
  const session = new ClientSession()
  const ask = (): Promise<string | undefined> => Promise.resolve(service.handle(v2('lookup', table, DICT_FLAG.FOLD_FIX, {key: 'alice'}), session)).then(r => r.value)
  assert.equal(await ask(), 'ALICE')
  fs.writeFileSync(table.slice('texthash:'.length), 'alice NEW\n')
  service.checkForChangedTables(Date.now())
  assert.equal(await ask(), 'NEW')
  assert.equal(closed.length, 1)
  assert.equal(service.openInstances, 1)
})
