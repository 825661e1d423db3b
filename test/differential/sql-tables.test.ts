// Differential test of the sqlite, mysql and pgsql tables against real Postfix 3.7
// (postfix-sqlite, postfix-mysql, postfix-pgsql): fixtures in an sqlite file, in MariaDB
// (database `test`) and in PostgreSQL (database `test`), a set of .cf files per type, and
// for every (cf, key) our lookup (postmap -q flags) compared with
// `postmap -c DIR -q KEY TYPE:FILE.cf`: stdout and exit status. Warnings on stderr are not
// compared (Postfix logs connection warnings in random host order).
//
// A missing postmap, Postfix plugin or database server FAILS the test. Stopped servers are
// started (MariaDB via start-stop-daemon, PostgreSQL via pg_ctlcluster).
//
// Run: node --import tsx --test test/differential/sql-tables.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import Database from 'better-sqlite3'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {OpenOptions, Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {sqliteType} from '../../src/lib/tables/sqlite.js'
import {mysqlType, mysqlTypeWith} from '../../src/lib/tables/mysql.js'
import {pgsqlType, pgsqlTypeWith} from '../../src/lib/tables/pgsql.js'
import {POSTMAP, requirePostfix, runCommand, sleep} from '../helpers/postfix.js'
import {makeConfig, toBinary, writeTable} from './pattern-helpers.js'
import {lookupOutcome} from './table-helpers.js'
import {psqlWithTestDb} from '../helpers/compare.js'

const TABLE = `proxymap_sqltest_${process.pid}`
const USER = 'pmtest'
const PASSWORD = "pm s3cret'x"
let dir: string
let config: MainConfig

interface Row {k: string; v: string | null; v2?: string | null}
const ROWS: Row[] = [
  {k: 'alice@example.com', v: 'alice@mail.example.com', v2: 'second'},
  {k: 'bob@example.com', v: 'bob1@x.org'},
  {k: 'bob@example.com', v: 'bob2@y.org'},
  {k: 'example.com', v: 'OK'},
  {k: 'carol@sub.example.org', v: 'carol'},
  {k: "quote's@example.com", v: 'quoted'},
  {k: 'back\\slash@example.com', v: 'bs'},
  {k: 'null@example.com', v: null, v2: 'only-v2'},
  {k: 'empty@example.com', v: ''},
  ...['m1', 'm2', 'm3', 'm4', 'm5'].map((v) => ({k: 'many@example.com', v})),
  {k: 'josé@example.com', v: 'é-value@exämple.org'},
  {k: 'user', v: 'localonly'},
  {k: 'nodomain@', v: 'weird'},
  {k: 'sub.example.org', v: 'domain-only'},
  {k: 'a', v: 'userpart-a'},
  {k: 'two@example.com', v: 'first@one.example', v2: 'second@two.example'},
]

const KEYS = [
  'alice@example.com', 'ALICE@Example.COM', 'bob@example.com', 'example.com', 'carol@sub.example.org',
  "quote's@example.com", 'back\\slash@example.com', 'null@example.com', 'empty@example.com', 'many@example.com',
  'josé@example.com', 'user', 'user@', '@example.com', 'nobody@example.com', 'two@example.com', 'a@b.c.d.e',
  'x@..', "' OR '1'='1", 'a%sb', 'a@sub.example.org', 'Sub.Example.Org', 'a@b', 'nodomain@',
]

/** The .cf bodies every backend gets (connection lines are prepended per type). */
function cfVariants(q: (s: string) => string): Record<string, string> {
  return {
    basic: `query = SELECT v FROM ${TABLE} WHERE k='%s'\n`,
    userdomain: `query = SELECT v FROM ${TABLE} WHERE k='%u' OR k='%d'\n`,
    domainlist: `domain = example.com, !sub.example.org, sub.example.org\nquery = SELECT v FROM ${TABLE} WHERE k='%s'\n`,
    resultfmt: `query = SELECT v FROM ${TABLE} WHERE k='%s'\nresult_format = smtp:[%s] %u/%d\n`,
    resultkey: `query = SELECT v FROM ${TABLE} WHERE k='%s'\nresult_format = %S|%U|%D|%%\n`,
    limit: `query = SELECT v FROM ${TABLE} WHERE k='%s'\nexpansion_limit = 2\n`,
    multicol: `query = SELECT v, v2 FROM ${TABLE} WHERE k='%s'\n`,
    legacy: `table = ${TABLE}\nselect_field = v\nwhere_field = k\nadditional_conditions = and v <> 'm3'\n`,
    parts: `query = SELECT ${q('%s|%u|%d|%1|%2|%%')}\n# a comment\nresult_format = [%s]\n`,
    continued: `query = SELECT v\n  FROM ${TABLE}\n  WHERE k = '%s'\n`,
  }
}

// ----------------------------------------------------------------------- databases

async function sh(command: string, args: string[], input?: string): Promise<string> {
  const r = await runCommand(command, args, {input, timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

async function ensureMariadb(): Promise<void> {
  if ((await runCommand('mysql', ['-e', 'SELECT 1'], {timeoutMs: 10_000})).code === 0) return
  await sh('start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/mariadbd'])
  for (let i = 0; i < 100; i++) {
    if ((await runCommand('mysql', ['-e', 'SELECT 1'], {timeoutMs: 10_000})).code === 0) return
    await sleep(200)
  }
  throw new Error('MariaDB is not running and could not be started (apt-get install mariadb-server)')
}

async function ensurePostgres(): Promise<void> {
  const ok = async (): Promise<boolean> =>
    (await runCommand('runuser', ['-u', 'postgres', '--', 'psql', '-tAc', 'SELECT 1'], {timeoutMs: 10_000})).code === 0
  if (await ok()) return
  const version = fs.readdirSync('/etc/postgresql')[0]
  await sh('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'])
  for (let i = 0; i < 100; i++) {
    if (await ok()) return
    await sleep(200)
  }
  throw new Error('PostgreSQL is not running and could not be started (apt-get install postgresql)')
}

const sqlString = (s: string | null | undefined): string =>
  s === null || s === undefined ? 'NULL' : `'${s.replaceAll("'", "''").replaceAll('\\', '\\\\')}'`
const pgString = (s: string | null | undefined): string =>
  s === null || s === undefined ? 'NULL' : `'${s.replaceAll("'", "''")}'`

async function setUpMariadb(): Promise<void> {
  await ensureMariadb()
  const pw = sqlString(PASSWORD)
  await sh('mysql', [], `CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS '${USER}'@'localhost' IDENTIFIED BY ${pw};
CREATE USER IF NOT EXISTS '${USER}'@'127.0.0.1' IDENTIFIED BY ${pw};
ALTER USER '${USER}'@'localhost' IDENTIFIED BY ${pw};
ALTER USER '${USER}'@'127.0.0.1' IDENTIFIED BY ${pw};
GRANT SELECT ON test.* TO '${USER}'@'localhost';
GRANT SELECT ON test.* TO '${USER}'@'127.0.0.1';
CREATE TABLE test.${TABLE} (k VARCHAR(100), v VARCHAR(100), v2 VARCHAR(100)) CHARACTER SET utf8mb4;
INSERT INTO test.${TABLE} VALUES ${ROWS.map((r) => `(${sqlString(r.k)}, ${sqlString(r.v)}, ${sqlString(r.v2)})`).join(', ')};
`)
}

async function setUpPostgres(): Promise<void> {
  await ensurePostgres()
  const psql = await psqlWithTestDb(sh)
  await psql('postgres', `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${USER}') THEN CREATE ROLE ${USER} LOGIN; END IF;
END $$;
ALTER ROLE ${USER} LOGIN PASSWORD ${pgString(PASSWORD)};`)
  await psql('test', `CREATE TABLE ${TABLE} (k TEXT, v TEXT, v2 TEXT);
INSERT INTO ${TABLE} VALUES ${ROWS.map((r) => `(${pgString(r.k)}, ${pgString(r.v)}, ${pgString(r.v2)})`).join(', ')};
GRANT SELECT ON ${TABLE} TO ${USER};`)
}

function setUpSqlite(file: string): void {
  const db = new Database(file) as unknown as {exec(sql: string): void; close(): void}
  db.exec(`CREATE TABLE ${TABLE} (k TEXT, v TEXT, v2 TEXT);
INSERT INTO ${TABLE} VALUES ${ROWS.map((r) => `(${pgString(r.k)}, ${pgString(r.v)}, ${pgString(r.v2)})`).join(', ')};`)
  db.close()
  fs.chmodSync(file, 0o644)
}

// ----------------------------------------------------------------------- comparison

interface Outcome {stdout: string; status: number}

async function ours(type: TableType, name: string, key: string): Promise<Outcome> {
  const options: OpenOptions = {
    mode: 'read', dictFlags: postmapQueryFlags(true), config,
    log: {warning: () => {}, error: () => {}, info: () => {}},
    openNested: () => { throw new Error('unused') },
  }
  let table: Table
  try {
    table = await type.open(toBinary(name), options)
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    return {stdout: '', status: 1}
  }
  return lookupOutcome(table, key)
}

async function real(spec: string, key: string): Promise<Outcome> {
  const r = await runCommand(POSTMAP, ['-c', dir, '-q', key, spec], {timeoutMs: 60_000})
  return {stdout: r.stdout, status: r.code}
}

async function compare(type: TableType, files: string[], label: string): Promise<void> {
  const cases = files.flatMap((f) => KEYS.map((k) => ({f, k})))
  const failures: string[] = []
  let next = 0
  let found = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const {f, k} = cases[next++]
      const spec = `${type.type}:${f}`
      const [o, r] = await Promise.all([ours(type, f, k), real(spec, k)])
      if (r.status === 0) found++
      if (JSON.stringify(o) !== JSON.stringify(r))
        failures.push(`-q ${JSON.stringify(k)} ${spec}\n  ours: ${JSON.stringify(o)}\n  real: ${JSON.stringify(r)}`)
    }
  }
  await Promise.all(Array.from({length: 8}, worker))
  console.log(`${label}: ${cases.length} cases compared with postmap (${found} found a value)`)
  assert.ok(found >= cases.length / 5, `too few cases found a value: ${found}`)
  assert.deepEqual(failures, [], failures.slice(0, 20).join('\n'))
}

function writeCfs(prefix: string, connection: string, q: (s: string) => string): string[] {
  return Object.entries(cfVariants(q)).map(([name, body]) => writeTable(path.join(dir, `${prefix}-${name}.cf`), connection + body))
}

// ----------------------------------------------------------------------- tests

before(async () => {
  requirePostfix()
  const maps = fs.readFileSync('/etc/postfix/dynamicmaps.cf', 'utf8')
  for (const t of ['sqlite', 'mysql', 'pgsql'])
    if (!new RegExp(`^${t}\\s`, 'm').test(maps)) throw new Error(`Postfix has no ${t} tables: apt-get install postfix-${t}`)
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-sql-')))
  fs.chmodSync(dir, 0o755)
  config = makeConfig(dir, {
    compatibility_level: '3.6',
    // a table named without a path reads its parameters from main.cf
    pmtestsqlite_dbpath: path.join(dir, 'test.sqlite'),
    pmtestsqlite_query: `SELECT v FROM ${TABLE} WHERE k='%s'`,
    pmtestsqlite_result_format: 'main.cf:%s',
  })
  await Promise.all([setUpMariadb(), setUpPostgres()])
  setUpSqlite(path.join(dir, 'test.sqlite'))
})

after(async () => {
  await runCommand('mysql', ['-e', `DROP TABLE IF EXISTS test.${TABLE}`]).catch(() => {})
  await runCommand('runuser', ['-u', 'postgres', '--', 'psql', '-d', 'test', '-c', `DROP TABLE IF EXISTS ${TABLE}`]).catch(() => {})
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

const quoted = (s: string): string => `'${s}'`

test('sqlite tables answer as postmap does', async () => {
  const files = writeCfs('sqlite', `dbpath = ${path.join(dir, 'test.sqlite')}\n`, quoted)
  await compare(sqliteType, [...files, 'pmtestsqlite'], 'sqlite')
})

test('mysql tables answer as postmap does', async () => {
  const auth = `user = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
  const files = [
    ...writeCfs('mysql-unix', `hosts = unix:/run/mysqld/mysqld.sock\n${auth}`, quoted),
    ...writeCfs('mysql-inet', `hosts = inet:127.0.0.1:3306\n${auth}`, quoted).slice(0, 3),
    // a dead host and a live one: both pick at random; the answer is the same
    writeTable(path.join(dir, 'mysql-failover.cf'), `hosts = inet:127.0.0.1:1, 127.0.0.1\n${auth}query = SELECT v FROM ${TABLE} WHERE k='%s'\n`),
    writeTable(path.join(dir, 'mysql-badpw.cf'), `hosts = 127.0.0.1\nuser = ${USER}\npassword = wrong\ndbname = test\nquery = SELECT v FROM ${TABLE} WHERE k='%s'\n`),
  ]
  await compare(mysqlType, files, 'mysql')
})

test('pgsql tables answer as postmap does', async () => {
  const auth = `user = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
  const files = [
    ...writeCfs('pgsql-inet', `hosts = inet:127.0.0.1:5432\n${auth}`, quoted),
    ...writeCfs('pgsql-unix', `hosts = unix:/var/run/postgresql\n${auth}`, quoted).slice(0, 2),
    writeTable(path.join(dir, 'pgsql-function.cf'), `hosts = 127.0.0.1\n${auth}select_function = upper\n`),
    writeTable(path.join(dir, 'pgsql-failover.cf'), `hosts = 127.0.0.1:1 127.0.0.1\n${auth}query = SELECT v FROM ${TABLE} WHERE k='%s'\n`),
  ]
  await compare(pgsqlType, files, 'pgsql')
})

test('a slow query is a RETRY after the time limit, and passwords stay out of messages', async () => {
  const lines: string[] = []
  const options: OpenOptions = {
    mode: 'read', dictFlags: postmapQueryFlags(true), config,
    log: {warning: (m) => lines.push(m), error: (m) => lines.push(m), info: (m) => lines.push(m)},
    openNested: () => { throw new Error('unused') },
  }
  const auth = `user = ${USER}\npassword = ${PASSWORD}\ndbname = test\n`
  const cases: [TableType, string][] = [
    [mysqlTypeWith({lookupTimeoutMs: 300}), writeTable(path.join(dir, 'mysql-slow.cf'), `hosts = 127.0.0.1\n${auth}query = SELECT CONCAT(SLEEP(2), '%s')\n`)],
    [pgsqlTypeWith({lookupTimeoutMs: 300}), writeTable(path.join(dir, 'pgsql-slow.cf'), `hosts = 127.0.0.1\n${auth}query = SELECT pg_sleep(2)::text || '%s'\n`)],
    [mysqlType, writeTable(path.join(dir, 'mysql-badpw2.cf'), `hosts = 127.0.0.1\nuser = ${USER}\npassword = ${PASSWORD}-wrong\ndbname = test\nquery = SELECT '%s'\n`)],
    [pgsqlType, writeTable(path.join(dir, 'pgsql-badpw2.cf'), `hosts = 127.0.0.1\nuser = nosuchuser\npassword = ${PASSWORD}-wrong\ndbname = test\nquery = SELECT '%s'\n`)],
  ]
  for (const [type, file] of cases) {
    const table = await type.open(file, options)
    const t0 = Date.now()
    await assert.rejects(async () => table.lookup('key'), (err: unknown) => {
      assert.ok(err instanceof TableError && err.kind === 'retry', String(err))
      assert.ok(!err.message.includes(PASSWORD), err.message)
      return true
    })
    assert.ok(Date.now() - t0 < 1500, `${file}: took ${Date.now() - t0} ms`)
    await table.close?.()
  }
  for (const line of lines) assert.ok(!line.includes(PASSWORD), line)
})
