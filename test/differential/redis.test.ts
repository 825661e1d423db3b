// Differential test of redis: tables. Postfix has no Redis table, so the reference is real
// Postfix answering for the same data in its own tables:
// - key folding (ASCII and UTF-8): `postmap -q KEY lmdb:REF` on an lmdb table built by real
//   postmap from the same entries that the test stores in Redis (under a prefix);
// - key_format and `domain` (%s %u %d %1 %2 ..., domain lists): real `postmap -q KEY
//   sqlite:CF` whose query is `SELECT v FROM kv WHERE k='KEY_FORMAT'` with the same `domain`,
//   over an sqlite file holding every Redis key of the test with its value. Postfix's
//   %-expansion and domain filter decide which key is asked for; ours must ask for the same.
// Each is compared for our table opened directly, and through proxy: with real
// `postmap -q - proxy:redis:CF` answered by our `serve`.
//
// Uses the machine's Redis on 127.0.0.1:6379 (keys under a per-process prefix, removed
// afterwards). A missing Redis or postmap FAILS the test.
//
// Run: node --import tsx --test test/differential/redis.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import Database from 'better-sqlite3'
import {Redis} from 'ioredis'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import type {OpenOptions} from '../../src/lib/tables/table.js'
import {createPostfixInstance, PostfixInstance, POSTMAP, requirePostfix, runCommand} from '../helpers/postfix.js'
import {makeConfig, toBinary, writeTable} from './pattern-helpers.js'
import {lookupOutcome} from './table-helpers.js'

const PREFIX = `pmdiff${process.pid}:`
let dir: string
let config: MainConfig
let asciiDir: string
let asciiConfig: MainConfig
let redis: Redis
const registry = new TableRegistry()

/** Source entries (postmap folds their keys when it builds the lmdb reference). */
const ENTRIES: [string, string][] = [
  ['alice', 'alice-value'],
  ['bob@example.com', 'bob-value'],
  ['carol@sub.example.org', 'carol-value'],
  ['example.com', 'domain-value'],
  ['école@exemple.fr', 'école-valué'],
  ['straße', 'strasse-value'],
  ['bob.example.com', 'user-dot-domain'],
  ['carol.sub.example.org', 'carol-dot'],
  ['example-com', 'parts-value'],
  ['sub-example', 'parts-sub'],
  ['x@other.org', 'other-value'],
]

const KEYS = ['alice', 'ALICE', 'Alice', 'bob@example.com', 'BOB@Example.COM', 'carol@sub.example.org',
  'CAROL@SUB.EXAMPLE.ORG', 'example.com', 'nothere', 'nobody@example.com', 'École@exemple.fr', 'ÉCOLE@EXEMPLE.FR',
  'straße', 'STRASSE', 'bob@', '@example.com', 'x@other.org', 'X@Other.Org', 'bob.example.com']

/** key_format / domain variants, each answered by an sqlite query with the same template. */
const TEMPLATE_VARIANTS: Record<string, {keyFormat: string; domain?: string}> = {
  plain: {keyFormat: `${PREFIX}%s`},
  userdomain: {keyFormat: `${PREFIX}%u.%d`},
  parts: {keyFormat: `${PREFIX}%2-%1`},
  user: {keyFormat: `${PREFIX}%u`},
  domainonly: {keyFormat: `${PREFIX}%d`},
  domainlist: {keyFormat: `${PREFIX}%s`, domain: 'example.com, sub.example.org'},
  negated: {keyFormat: `${PREFIX}%s`, domain: '!other.org, example.com, other.org'},
}

function openOptions(cfg = config): OpenOptions {
  return {
    mode: 'read', dictFlags: postmapQueryFlags(true), config: cfg,
    log: {warning: () => {}, error: () => {}, info: () => {}},
    openNested: (spec, o) => registry.open(spec, o),
  }
}

async function ours(cf: string, key: string, cfg = config): Promise<{stdout: string; status: number}> {
  return lookupOutcome(await registry.open(`redis:${toBinary(cf)}`, openOptions(cfg)), key)
}

async function real(spec: string, key: string, cfDir = dir): Promise<{stdout: string; status: number}> {
  const r = await runCommand(POSTMAP, ['-c', cfDir, '-q', key, spec], {timeoutMs: 30_000})
  return {stdout: r.stdout, status: r.code}
}

const redisCf = (name: string, body: string): string =>
  writeTable(path.join(dir, `redis-${name}.cf`), `hosts = 127.0.0.1:6379\n${body}`)

function variantFiles(): {name: string; redis: string; sqlite: string}[] {
  return Object.entries(TEMPLATE_VARIANTS).map(([name, v]) => {
    const domain = v.domain ? `domain = ${v.domain}\n` : ''
    return {
      name,
      redis: redisCf(name, `key_format = ${v.keyFormat}\n${domain}`),
      sqlite: writeTable(path.join(dir, `sqlite-${name}.cf`),
        `dbpath = ${path.join(dir, 'kv.sqlite')}\nquery = SELECT v FROM kv WHERE k='${v.keyFormat}'\n${domain}`),
    }
  })
}

/**
 * The same data for real Postfix and for Redis: an lmdb table built by postmap in `cfDir`,
 * which folds the keys as it stores them (as our table folds them on update); Redis gets
 * the keys postmap stored (postmap -s), under `prefix`.
 */
async function seedLmdbAndRedis(cfDir: string, prefix: string): Promise<[string, string][]> {
  const ref = path.join(cfDir, 'ref')
  fs.writeFileSync(ref, ENTRIES.map(([k, v]) => `${k} ${v}\n`).join(''))
  const built = await runCommand(POSTMAP, ['-c', cfDir, `lmdb:${ref}`], {timeoutMs: 30_000})
  assert.equal(built.code, 0, built.stderr)
  const stored = await runCommand(POSTMAP, ['-c', cfDir, '-s', `lmdb:${ref}`], {timeoutMs: 30_000})
  const entries = stored.stdout.split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string])
  assert.equal(entries.length, ENTRIES.length, stored.stderr)
  for (const [k, v] of entries) await redis.set(Buffer.from(prefix + k), Buffer.from(v))
  return entries
}

before(async () => {
  requirePostfix()
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-redis-')))
  fs.chmodSync(dir, 0o755)
  config = makeConfig(dir, {compatibility_level: '3.6'})
  redis = new Redis({host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1})
  await redis.connect().catch((err: Error) => {
    throw new Error(`Redis must run on 127.0.0.1:6379 for this test (apt-get install redis-server): ${err.message}`)
  })
  const storedEntries = await seedLmdbAndRedis(dir, PREFIX)
  assert.ok(storedEntries.some(([k]) => k === 'strasse'), 'postmap folds straße')
  asciiDir = path.join(dir, 'ascii')
  fs.mkdirSync(asciiDir, {mode: 0o755})
  asciiConfig = makeConfig(asciiDir, {compatibility_level: '3.6', smtputf8_enable: 'no'})
  assert.ok((await seedLmdbAndRedis(asciiDir, `${PREFIX}ascii:`)).some(([k]) => k === 'straße'), 'no UTF-8 folding')
  const db = new Database(path.join(dir, 'kv.sqlite')) as unknown as {exec(sql: string): void; close(): void}
  const quote = (s: string): string => `'${s.replaceAll("'", "''")}'`
  db.exec(`CREATE TABLE kv (k TEXT, v TEXT);
INSERT INTO kv VALUES ${storedEntries.map(([k, v]) => `(${quote(PREFIX + k)}, ${quote(v)})`).join(', ')};`)
  db.close()
})

after(async () => {
  if (redis) {
    const keys = await redis.keys(`${PREFIX}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  }
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

test('redis lookups fold keys as real postmap does on an lmdb table of the same data', async () => {
  const failures: string[] = []
  let found = 0
  for (const [name, cfDir, cfg, prefix] of [['utf8', dir, config, PREFIX], ['ascii', asciiDir, asciiConfig, `${PREFIX}ascii:`]] as const) {
    const cf = writeTable(path.join(cfDir, 'redis-fold.cf'), `hosts = 127.0.0.1:6379\nkey_format = ${prefix}%s\n`)
    for (const key of KEYS) {
      const [o, r] = await Promise.all([ours(cf, key, cfg), real(`lmdb:${path.join(cfDir, 'ref')}`, key, cfDir)])
      if (r.status === 0) found++
      if (JSON.stringify(o) !== JSON.stringify(r)) failures.push(`${name} ${JSON.stringify(key)}: ours ${JSON.stringify(o)}, lmdb ${JSON.stringify(r)}`)
    }
  }
  console.log(`# redis vs lmdb: ${KEYS.length} keys, UTF-8 and ASCII folding (${found} found)`)
  assert.ok(found >= 20, `too few keys found: ${found}`)
  assert.deepEqual(failures, [])
})

test('redis key_format and domain ask for the keys that real Postfix\'s %-expansion asks for', async () => {
  const failures: string[] = []
  let cases = 0
  let found = 0
  for (const v of variantFiles()) {
    for (const key of KEYS) {
      const [o, r] = await Promise.all([ours(v.redis, key), real(`sqlite:${v.sqlite}`, key)])
      cases++
      if (r.status === 0) found++
      if (JSON.stringify(o) !== JSON.stringify(r))
        failures.push(`${v.name} ${JSON.stringify(key)}: ours ${JSON.stringify(o)}, sqlite ${JSON.stringify(r)}`)
    }
  }
  console.log(`# redis vs sqlite templates: ${cases} cases (${found} found)`)
  assert.ok(found >= cases / 4, `too few cases found a value: ${found}`)
  assert.deepEqual(failures, [])
})

test('real postmap -q through proxy:redis: answered by our serve equals lmdb and sqlite answers', async () => {
  const pf: PostfixInstance = await createPostfixInstance({prefix: 'pm-redis-diff-'})
  try {
    const input = KEYS.join('\n') + '\n'
    const fold = await pf.writeFile('redis-fold.cf', `hosts = 127.0.0.1:6379\nkey_format = ${PREFIX}%s\n`)
    const lmdb = await pf.createTable('lmdb', 'ref', fs.readFileSync(path.join(dir, 'ref')))
    const variants = await Promise.all(Object.entries(TEMPLATE_VARIANTS).map(async ([name, v]) => {
      const domain = v.domain ? `domain = ${v.domain}\n` : ''
      return {
        name,
        redis: await pf.writeFile(`redis-${name}.cf`, `hosts = 127.0.0.1:6379\nkey_format = ${v.keyFormat}\n${domain}`),
        sqlite: await pf.writeFile(`sqlite-${name}.cf`,
          `dbpath = ${path.join(dir, 'kv.sqlite')}\nquery = SELECT v FROM kv WHERE k='${v.keyFormat}'\n${domain}`),
      }
    }))
    await pf.approve({read: [`redis:${fold}`, ...variants.map((v) => `redis:${v.redis}`)]})
    await pf.startOurs()
    const proxied = await pf.postmap(['-q', '-', `proxy:redis:${fold}`], {input})
    const direct = await pf.postmap(['-q', '-', lmdb], {input})
    assert.equal(direct.code, 0, direct.stderr)
    assert.ok(direct.stdout.split('\n').length > 10, direct.stdout)
    assert.deepEqual({out: proxied.stdout, code: proxied.code}, {out: direct.stdout, code: direct.code}, proxied.stderr)
    for (const v of variants) {
      const p = await pf.postmap(['-q', '-', `proxy:redis:${v.redis}`], {input})
      const s = await pf.postmap(['-q', '-', `sqlite:${v.sqlite}`], {input})
      assert.deepEqual({out: p.stdout, code: p.code}, {out: s.stdout, code: s.code}, `${v.name}: ${p.stderr}`)
    }
  } finally {
    await pf.destroy()
  }
})
