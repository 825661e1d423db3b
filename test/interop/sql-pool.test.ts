// SQL tables through our proxymap server, with real Postfix clients:
// (a) 50 concurrent `postmap -q KEY proxy:mysql:FILE.cf` share one open table, and MariaDB
//     never sees more connections from the table's dedicated user than
//     DEFAULT_BACKEND_CONNECTION_LIMIT (information_schema.PROCESSLIST sampled every 10 ms);
// (b) a PRIVATE MariaDB (test/helpers/mariadb.ts: mariadb-install-db + mariadbd on a UNIX
//     socket, started and stopped by pid) is stopped in the middle of a run: every answer is
//     the right value or a RETRY (postmap: "query error"), never a wrong value or "not
//     found"; after it is started again lookups succeed without restarting proxymap
//     (within the 60 s host retry interval);
// (c) mysql, pgsql and sqlite tables through proxy: answered by our server exactly as by
//     Postfix's own proxymap on the same instance (`postmap -q - proxy:TYPE:FILE.cf`);
// (d) counted at MariaDB and PostgreSQL (a stored function that records each call, then
//     waits for a lock the test holds, so that the lookups stay in flight until the test
//     lets them go): identical lookups of one mysql/pgsql table in flight at once run one
//     query; distinct ones open one connection each, up to the table's limit; idle
//     connections are closed.
//
// Needs the system MariaDB and PostgreSQL (started when stopped, as sql-tables.test.ts does),
// postfix-mysql/pgsql/sqlite, and `npm run build` (startOurs runs the built CLI).
//
// Run: node --import tsx --test test/interop/sql-pool.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, test} from 'node:test'
import Database from 'better-sqlite3'
import * as mysql from 'mysql2/promise'
import pg from 'pg'

import {loadMainConfig} from '../../src/lib/config/index.js'
import {DICT_FLAG} from '../../src/lib/protocol/index.js'
import {DEFAULT_BACKEND_CONNECTION_LIMIT} from '../../src/lib/tables/backend-pool.js'
import {mysqlTypeWith} from '../../src/lib/tables/mysql.js'
import {pgsqlTypeWith} from '../../src/lib/tables/pgsql.js'
import type {SqlPoolLimits} from '../../src/lib/tables/sql/host-pool.js'
import type {Table, TableType} from '../../src/lib/tables/table.js'
import {PostfixInstance, createPostfixInstance, requirePostfix, runCommand, sleep, waitFor} from '../helpers/postfix.js'
import {PrivateMariadb} from '../helpers/mariadb.js'
import {psqlWithTestDb, theirsThenOurs} from '../helpers/compare.js'

const TABLE = `proxymap_pool_${process.pid}`
const USER = `pmpool${process.pid}`
const PASSWORD = 'pool-pw'
/** (d): the calls of HIT_FUNCTION, and the lock it waits for. */
const HITS = `proxymap_pool_hits_${process.pid}`
const HIT_FUNCTION = `proxymap_pool_hit_${process.pid}`
const LOCK = `proxymap_pool_lock_${process.pid}`
const LOCK_ID = process.pid
const ROWS: [string, string][] = [
  ['alice@example.com', 'alice-value'], ['bob@example.com', 'bob-value'], ['example.com', 'OK'],
  ['carol', 'carol-value'], ['many', 'm1'], ['many', 'm2'], ['josé@example.com', 'josé-value'],
]
const KEYS = ['alice@example.com', 'ALICE@EXAMPLE.COM', 'bob@example.com', 'example.com', 'carol', 'CAROL', 'many',
  'nobody@example.com', 'josé@example.com', 'JOSÉ@example.com', "it's", '']

let pf: PostfixInstance
let privateDb: PrivateMariadb | undefined

async function sh(command: string, args: string[], input?: string): Promise<string> {
  const r = await runCommand(command, args, {input, timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

async function ensureMariadb(): Promise<void> {
  const ok = async (): Promise<boolean> => (await runCommand('mysql', ['-e', 'SELECT 1'], {timeoutMs: 10_000})).code === 0
  if (await ok()) return
  await sh('start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/mariadbd'])
  for (let i = 0; i < 100 && !(await ok()); i++) await sleep(200)
  if (!(await ok())) throw new Error('MariaDB is not running and could not be started (apt-get install mariadb-server)')
}

async function ensurePostgres(): Promise<void> {
  const ok = async (): Promise<boolean> =>
    (await runCommand('runuser', ['-u', 'postgres', '--', 'psql', '-tAc', 'SELECT 1'], {timeoutMs: 10_000})).code === 0
  if (await ok()) return
  await sh('pg_ctlcluster', ['--skip-systemctl-redirect', fs.readdirSync('/etc/postgresql')[0], 'main', 'start'])
  for (let i = 0; i < 100 && !(await ok()); i++) await sleep(200)
  if (!(await ok())) throw new Error('PostgreSQL is not running and could not be started (apt-get install postgresql)')
}

const sqlString = (s: string): string => `'${s.replaceAll("'", "''").replaceAll('\\', '\\\\')}'`
const values = (): string => ROWS.map(([k, v]) => `(${sqlString(k)}, ${sqlString(v)})`).join(', ')

async function setUpMariadb(): Promise<void> {
  await ensureMariadb()
  await sh('mysql', [], `CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS '${USER}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}';
GRANT SELECT ON test.* TO '${USER}'@'127.0.0.1';
CREATE TABLE test.${TABLE} (k VARCHAR(100), v VARCHAR(100)) CHARACTER SET utf8mb4;
INSERT INTO test.${TABLE} VALUES ${values()};
CREATE TABLE test.${HITS} (k VARCHAR(100));
DELIMITER //
CREATE FUNCTION test.${HIT_FUNCTION}(k VARCHAR(100)) RETURNS VARCHAR(200) MODIFIES SQL DATA
BEGIN
  INSERT INTO test.${HITS} VALUES (k);
  DO GET_LOCK('${LOCK}', 60);
  DO RELEASE_LOCK('${LOCK}');
  RETURN CONCAT('hit-', k);
END//
DELIMITER ;
GRANT EXECUTE ON FUNCTION test.${HIT_FUNCTION} TO '${USER}'@'127.0.0.1';
`)
}

async function setUpPostgres(): Promise<void> {
  await ensurePostgres()
  const psql = await psqlWithTestDb(sh)
  await psql('postgres', `CREATE ROLE ${USER} LOGIN PASSWORD '${PASSWORD}';`)
  await psql('test', `CREATE TABLE ${TABLE} (k TEXT, v TEXT);
INSERT INTO ${TABLE} VALUES ${ROWS.map(([k, v]) => `('${k.replaceAll("'", "''")}', '${v.replaceAll("'", "''")}')`).join(', ')};
GRANT SELECT ON ${TABLE} TO ${USER};
CREATE TABLE ${HITS} (k TEXT);
GRANT SELECT, INSERT ON ${HITS} TO ${USER};
CREATE FUNCTION ${HIT_FUNCTION}(k TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ${HITS} VALUES (k);
  PERFORM pg_advisory_lock(${LOCK_ID});
  PERFORM pg_advisory_unlock(${LOCK_ID});
  RETURN 'hit-' || k;
END $$;`)
}

/** A private MariaDB on a UNIX socket only, with the test table. */
async function initPrivateMariadb(): Promise<void> {
  privateDb = await PrivateMariadb.create(pf.dir)
  await privateDb.sql(`CREATE DATABASE test;
CREATE TABLE test.${TABLE} (k VARCHAR(100), v VARCHAR(100)) CHARACTER SET utf8mb4;
INSERT INTO test.${TABLE} VALUES ${values()};`)
}

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-sqlpool-'})
  await Promise.all([setUpMariadb(), setUpPostgres(), initPrivateMariadb()])
})

after(async () => {
  await privateDb?.stop().catch(() => {})
  await pf?.destroy()
  await runCommand('mysql', ['-e', `DROP TABLE IF EXISTS test.${TABLE}; DROP TABLE IF EXISTS test.${HITS}; DROP FUNCTION IF EXISTS test.${HIT_FUNCTION}; DROP USER IF EXISTS '${USER}'@'127.0.0.1';`]).catch(() => {})
  await runCommand('runuser', ['-u', 'postgres', '--', 'psql', '-d', 'test', '-c', `DROP TABLE IF EXISTS ${TABLE}; DROP TABLE IF EXISTS ${HITS}; DROP FUNCTION IF EXISTS ${HIT_FUNCTION}; DROP ROLE IF EXISTS ${USER};`]).catch(() => {})
})

test('(a) 50 concurrent postmap clients: MariaDB sees at most DEFAULT_BACKEND_CONNECTION_LIMIT connections', async () => {
  // SLEEP makes every lookup take a while, so that the clients overlap at the database.
  const cf = await pf.writeFile('pool-mysql.cf', `hosts = inet:127.0.0.1:3306\nuser = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
    + `query = SELECT CONCAT(COALESCE(MAX(v), '%s'), SLEEP(0.1)) FROM ${TABLE} WHERE k='%s'\n`)
  const spec = `proxy:mysql:${cf}`
  await pf.approve({read: [`mysql:${cf}`]})
  await pf.startOurs()
  try {
    let sampling = true
    let max = 0
    let samples = 0
    // sampled over one root connection of our own (not counted: another user)
    const admin = await mysql.createConnection({socketPath: '/run/mysqld/mysqld.sock', user: 'root'})
    const sampler = (async () => {
      while (sampling) {
        const [rows] = await admin.query(`SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER='${USER}'`)
        max = Math.max(max, Number((rows as {n: number}[])[0].n))
        samples++
        await sleep(10)
      }
    })().finally(() => admin.end())
    // distinct keys (a key of no row answers itself): identical ones would share one query
    const keys = Array.from({length: 50}, (_, i) => (i < 4 ? ROWS[i][0] : `nobody${i}@example.com`))
    const results = await Promise.all(keys.map((k) => pf.postmap(['-q', k, spec], {timeoutMs: 60_000})))
    sampling = false
    await sampler
    // the connections stay open (idle) afterwards: one more sample
    const after = Number((await sh('mysql', ['-NBe', `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='${USER}'`])).trim())
    max = Math.max(max, after)
    results.forEach((r, i) => {
      const expected = ROWS.find(([k]) => k === keys[i])?.[1] ?? keys[i]
      assert.deepEqual({stdout: r.stdout, code: r.code}, {stdout: `${expected}0\n`, code: 0}, r.stderr)
    })
    console.log(`# 50 concurrent clients: max ${max} MariaDB connections of ${USER} in ${samples} samples (bound ${DEFAULT_BACKEND_CONNECTION_LIMIT})`)
    assert.ok(max <= DEFAULT_BACKEND_CONNECTION_LIMIT, `MariaDB saw ${max} connections`)
    assert.ok(max >= 2, `the lookups did not overlap (max ${max}): the test proves nothing`)
  } finally {
    await pf.stopOurs()
  }
})

test('(b) a database that goes away gives RETRY, never a wrong answer, and is used again when back', {timeout: 240_000}, async () => {
  const cf = await pf.writeFile('private-mysql.cf', `hosts = unix:${privateDb!.socket}\nuser = root\ndbname = test\n`
    + `query = SELECT v FROM ${TABLE} WHERE k='%s'\n`)
  const spec = `proxy:mysql:${cf}`
  await pf.approve({read: [`mysql:${cf}`]})
  await pf.startOurs()
  const tally = {ok: 0, retry: 0}
  const wrong: string[] = []
  const lookup = async (): Promise<'ok' | 'retry'> => {
    const r = await pf.postmap(['-q', 'alice@example.com', spec], {timeoutMs: 60_000})
    if (r.code === 0 && r.stdout === 'alice-value\n') return 'ok'
    if (r.code !== 0 && r.stdout === '' && /query error/.test(r.stderr)) return 'retry'
    wrong.push(JSON.stringify({stdout: r.stdout, code: r.code, stderr: r.stderr}))
    return 'retry'
  }
  let phase: 'up' | 'down' | 'back' = 'up'
  const seen = {up: new Set<string>(), down: new Set<string>(), back: new Set<string>()}
  let running = true
  const clients = Array.from({length: 4}, async () => {
    while (running) {
      const p = phase
      const outcome = await lookup()
      tally[outcome]++
      seen[p].add(outcome)
      await sleep(20)
    }
  })
  try {
    await sleep(1500)
    await privateDb!.stop()
    phase = 'down'
    await sleep(3000)
    await privateDb!.start()
    phase = 'back'
    // Postfix leaves a failed host alone for 60 s (SQL_HOST_RETRY_INTERVAL_MS); so do we.
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline && !seen.back.has('ok')) await sleep(250)
    running = false
    await Promise.all(clients)
    const afterwards = await lookup()
    console.log(`# database outage: ${tally.ok} answers, ${tally.retry} RETRY; phases: up=${[...seen.up]} down=${[...seen.down]} back=${[...seen.back]}`)
    assert.deepEqual(wrong, [])
    assert.ok(seen.up.has('ok'), 'lookups worked before the outage')
    assert.deepEqual([...seen.down], ['retry'], 'every lookup during the outage was a RETRY')
    assert.equal(afterwards, 'ok', 'lookups work again after the restart')
    assert.ok(pf.ourPid() !== undefined, 'our server kept running')
  } finally {
    running = false
    await Promise.all(clients)
    await pf.stopOurs()
  }
})

test('(c) mysql, pgsql and sqlite through proxy: our server answers as Postfix\'s proxymap', async () => {
  const sqlite = path.join(pf.etc, 'pool.sqlite')
  const db = new Database(sqlite) as unknown as {exec(sql: string): void; close(): void}
  db.exec(`CREATE TABLE ${TABLE} (k TEXT, v TEXT); INSERT INTO ${TABLE} VALUES ${ROWS.map(([k, v]) => `('${k}', '${v}')`).join(', ')};`)
  db.close()
  fs.chmodSync(sqlite, 0o644)
  const auth = `user = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
  const query = `query = SELECT v FROM ${TABLE} WHERE k='%s'\n`
  const tables: Record<string, string> = {
    mysql: `mysql:${await pf.writeFile('c-mysql.cf', `hosts = inet:127.0.0.1:3306\n${auth}${query}`)}`,
    'mysql-fmt': `mysql:${await pf.writeFile('c-mysql-fmt.cf', `hosts = inet:127.0.0.1:3306\n${auth}query = SELECT v FROM ${TABLE} WHERE k='%u' OR k='%d'\nresult_format = [%s] %U\n`)}`,
    pgsql: `pgsql:${await pf.writeFile('c-pgsql.cf', `hosts = inet:127.0.0.1:5432\n${auth}${query}`)}`,
    'pgsql-domain': `pgsql:${await pf.writeFile('c-pgsql-domain.cf', `hosts = inet:127.0.0.1:5432\n${auth}domain = example.com\n${query}`)}`,
    sqlite: `sqlite:${await pf.writeFile('c-sqlite.cf', `dbpath = ${sqlite}\n${query}`)}`,
    'sqlite-limit': `sqlite:${await pf.writeFile('c-sqlite-limit.cf', `dbpath = ${sqlite}\n${query}expansion_limit = 1\n`)}`,
  }
  await pf.approve({read: Object.values(tables)})
  const input = KEYS.join('\n') + '\n'
  const runAll = async (): Promise<Map<string, {stdout: string; code: number}>> => {
    const out = new Map<string, {stdout: string; code: number}>()
    for (const [label, t] of Object.entries(tables)) {
      const r = await pf.postmap(['-q', '-', `proxy:${t}`], {input, timeoutMs: 30_000})
      out.set(label, {stdout: r.stdout, code: r.code})
    }
    return out
  }
  const {theirs, ours} = await theirsThenOurs(pf, runAll)
  let compared = 0
  for (const label of Object.keys(tables)) {
    const t = theirs.get(label)!
    assert.deepEqual(ours.get(label), t, `${label} through proxy:`)
    // (with expansion_limit = 1 Postfix's answer may be an early query error: compared, not required)
    if (!label.endsWith('-limit')) assert.ok(t.stdout.length > 0, `${label}: Postfix found something (the case is not vacuous)`)
    compared += KEYS.length
    console.log(`# ${label}: ${KEYS.length} keys through proxy:, ${t.stdout.split('\n').length - 1} lines, same as Postfix`)
  }
  console.log(`# ${compared} keys compared through proxy: in all`)
})

interface CountedBackend {
  type: (limits: Partial<SqlPoolLimits>) => TableType
  /** The .cf file of a table whose query calls HIT_FUNCTION. */
  cf: string
  /** Take the lock HIT_FUNCTION waits for, or let it go. */
  hold(): Promise<void>
  letGo(): Promise<void>
  /** Queries of the table waiting for the lock. */
  waiting(): Promise<number>
  /** Connections of the table's user (not the test's own). */
  connections(): Promise<number>
  /** Calls of HIT_FUNCTION with `k`. */
  hits(k: string): Promise<number>
  end(): Promise<void>
}

async function countedMysql(): Promise<CountedBackend> {
  const cf = await pf.writeFile('pool-hits-mysql.cf', `hosts = inet:127.0.0.1:3306\nuser = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
    + `query = SELECT ${HIT_FUNCTION}('%s')\n`)
  const admin = await mysql.createConnection({socketPath: '/run/mysqld/mysqld.sock', user: 'root'})
  const count = async (sql: string): Promise<number> => Number(((await admin.query(sql))[0] as {n: number}[])[0].n)
  return {
    type: mysqlTypeWith, cf,
    hold: async () => { await admin.query(`SELECT GET_LOCK('${LOCK}', 10)`) },
    letGo: async () => { await admin.query(`SELECT RELEASE_LOCK('${LOCK}')`) },
    waiting: () => count(`SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND STATE='User lock' AND INFO LIKE '%${LOCK}%'`),
    // inside the function a connection shows the definer (root) as its user
    connections: () => count(`SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND (USER='${USER}' OR INFO LIKE '%${LOCK}%')`),
    hits: (k) => count(`SELECT COUNT(*) AS n FROM test.${HITS} WHERE k='${k}'`),
    end: () => admin.end(),
  }
}

async function countedPgsql(): Promise<CountedBackend> {
  const cf = await pf.writeFile('pool-hits-pgsql.cf', `hosts = inet:127.0.0.1:5432\nuser = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
    + `query = SELECT ${HIT_FUNCTION}('%s')\n`)
  // the test's own session, as the table's user (advisory locks are per database)
  const pool = new pg.Pool({host: '127.0.0.1', port: 5432, user: USER, password: PASSWORD, database: 'test', max: 1})
  const admin = await pool.connect()
  const count = async (sql: string): Promise<number> => Number((await admin.query({text: sql, rowMode: 'array'})).rows[0]![0])
  return {
    type: pgsqlTypeWith, cf,
    hold: async () => { await admin.query({text: `SELECT pg_advisory_lock(${LOCK_ID})`}) },
    letGo: async () => { await admin.query({text: `SELECT pg_advisory_unlock(${LOCK_ID})`}) },
    waiting: () => count(`SELECT COUNT(*) AS n FROM pg_stat_activity
      WHERE usename='${USER}' AND pid <> pg_backend_pid() AND wait_event_type='Lock' AND wait_event='advisory'`),
    connections: () => count(`SELECT COUNT(*) AS n FROM pg_stat_activity WHERE usename='${USER}' AND pid <> pg_backend_pid()`),
    hits: (k) => count(`SELECT COUNT(*) AS n FROM ${HITS} WHERE k='${k}'`),
    end: () => {
      admin.release()
      return pool.end()
    },
  }
}

for (const [name, counted] of [['mysql', countedMysql], ['pgsql', countedPgsql]] as const) {
  test(`(d) ${name}: identical lookups in flight run one query; distinct ones open a connection each, up to the limit; idle ones close`, async () => {
    const backend = await counted()
    const until = (what: string, probe: () => Promise<boolean>): Promise<true> =>
      waitFor(async () => (await probe()) || undefined, 20_000, () => `timed out waiting for ${what}`, 20)
    const options = {
      mode: 'read' as const, dictFlags: DICT_FLAG.LOCK | DICT_FLAG.FOLD_FIX, config: loadMainConfig({configDir: pf.etc}),
      log: {warning: (m: string) => console.log(`# warning: ${m}`), error: () => {}, info: () => {}},
      openNested: () => { throw new Error('unused') },
    }
    const tables: Table[] = []
    try {
      await backend.hold()
      const table = await backend.type({idleIntervalMs: 500}).open(backend.cf, options)
      tables.push(table)
      // identical (after folding): one query
      const same = ['Same', 'SAME', 'same', 'same', 'sAme', 'same'].map((k) => Promise.resolve(table.lookup(k)))
      await until('the query at the server', async () => (await backend.waiting()) === 1)
      // distinct: one connection each, all at once
      const keys = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7']
      const distinct = keys.map((k) => Promise.resolve(table.lookup(k)))
      await until('8 queries waiting at once', async () => (await backend.waiting()) === 8)
      assert.equal(await backend.connections(), 8)
      // what `proxymap stats` shows of the table
      assert.deepEqual(table.poolStats?.(), {connections: 8, busy: 8, queued: 0})
      await backend.letGo()
      assert.deepEqual(await Promise.all(same), Array(6).fill('hit-same'))
      assert.deepEqual(await Promise.all(distinct), keys.map((k) => `hit-${k}`))
      assert.equal(await backend.hits('same'), 1)
      for (const k of keys) assert.equal(await backend.hits(k), 1, k)
      // unused for the idle time: the connections are closed
      await until('the idle connections closed', async () => (await backend.connections()) === 0)
      assert.deepEqual(table.poolStats?.(), {connections: 0, busy: 0, queued: 0})

      // at most the limit; the others wait for a free connection
      await backend.hold()
      const limited = await backend.type({maxConnections: 3}).open(backend.cf, options)
      tables.push(limited)
      const many = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']
      const answers = many.map((k) => Promise.resolve(limited.lookup(k)))
      await until('3 queries waiting', async () => (await backend.waiting()) === 3)
      assert.equal(await backend.connections(), 3)
      assert.deepEqual(limited.poolStats?.(), {connections: 3, busy: 3, queued: 3})
      await backend.letGo()
      assert.deepEqual(await Promise.all(answers), many.map((k) => `hit-${k}`))
      assert.equal(await backend.connections(), 3)
      assert.deepEqual(limited.poolStats?.(), {connections: 3, busy: 0, queued: 0})
    } finally {
      await backend.letGo().catch(() => {})
      await Promise.all(tables.map((t) => t.close?.()))
      await backend.end()
    }
  })
}
