// The TLS settings of mysql tables (mysql_table(5): tls_CAfile, tls_CApath, tls_cert_file,
// tls_key_file, tls_ciphers, tls_verify_cert; and the ssl-*/tls-version settings of
// option_file, option_group and the default ~/.my.cnf) against real Postfix 3.7: for every
// case `proxymap query -c DIR mysql:FILE.cf KEY` and `postmap -c DIR -q KEY mysql:FILE.cf`
// must print the same thing; exit codes agree (found 0, not found 1; where postmap fails
// with "query error" ours must answer RETRY, exit 4), and a failed connection must fail for
// the same reason (TLS, access denied) on both sides.
//
// The server is a PRIVATE MariaDB (test/helpers/mariadb.ts) on a free loopback TCP port and
// a UNIX socket, with certificates made here with openssl: a CA, a server certificate for
// 127.0.0.1/localhost, a client certificate; another CA; a server certificate for another
// name. Users: `plain` (no requirement), `tls` (REQUIRE SSL), `x509` (REQUIRE X509). The
// query returns the session's TLS version and cipher with the value, so a case that
// connects proves which protocol each side used. The server is restarted with the misnamed
// certificate and then without TLS for the cases that depend on it. One case of each
// outcome also goes through proxy: (our server vs Postfix's proxymap).
//
// pgsql: Postfix 3.7 has no TLS parameters of its own; libpq does TLS by sslmode (in
// `hosts = postgresql://...?sslmode=...`, default "prefer"). The same comparison runs
// against a PRIVATE PostgreSQL cluster (initdb + postgres as user postgres, by pid) with
// TLS, where pg_hba admits `tlsonly` over TLS only, and then without TLS.
//
// A missing postmap, postfix-mysql/pgsql, mariadbd, PostgreSQL or openssl FAILS the test.
//
// Run: npx tsc -p . && node --import tsx --test test/differential/sql-tls.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, test} from 'node:test'

import {PROJECT_BIN, PROJECT_ROOT, POSTMAP, PostfixInstance, createPostfixInstance, requirePostfix, runCommand, sleep, spawnTracked} from '../helpers/postfix.js'
import {PrivateMariadb} from '../helpers/mariadb.js'
import {freeLoopbackPort} from '../helpers/ports.js'
import {theirsThenOurs} from '../helpers/compare.js'

const PASSWORDS = {plain: 'plain-Pw#1', tls: 'tls-Pw#2', x509: 'x509-Pw#3'}
const ROWS: [string, string][] = [['alice', 'alice-value'], ['bob', 'bob-value']]

let pf: PostfixInstance
let db: PrivateMariadb
let tlsDir: string
let cfDir: string
/** config_directory of the direct lookups: a bare main.cf, so that postmap warns on stderr */
let directEtc: string
/** Everything our commands wrote to stderr: checked for secrets at the end. */
const ourStderr: string[] = []

// ------------------------------------------------------------------------ certificates

async function openssl(args: string[]): Promise<void> {
  const r = await runCommand('openssl', args, {cwd: tlsDir, timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: exit ${r.code}: ${r.stderr}`)
}

async function makeCertificates(): Promise<void> {
  const ca = async (name: string, cn: string): Promise<void> =>
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`])
  const signed = async (name: string, cn: string, san?: string): Promise<void> => {
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`])
    const ext = san ? ['-extfile', path.join(tlsDir, `${name}.ext`)] : []
    if (san) fs.writeFileSync(path.join(tlsDir, `${name}.ext`), `subjectAltName=${san}\n`)
    await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', ...ext])
  }
  await ca('ca', 'proxymap test CA')
  await ca('wrong-ca', 'proxymap other CA')
  await signed('server', 'localhost', 'IP:127.0.0.1,DNS:localhost')
  await signed('misnamed', 'db.example.org', 'DNS:db.example.org')
  await signed('client', 'proxymap client')
  const read = (f: string): string => fs.readFileSync(path.join(tlsDir, f), 'utf8')
  fs.writeFileSync(path.join(tlsDir, 'client-combined.pem'), read('client.pem') + read('client.key'))
  // a CApath as OpenSSL wants it (subject-hash names), and one without the hash names
  for (const d of ['capath', 'capath-unhashed']) {
    fs.mkdirSync(path.join(tlsDir, d))
    fs.copyFileSync(path.join(tlsDir, 'ca.pem'), path.join(tlsDir, d, 'ca.pem'))
  }
  await openssl(['rehash', path.join(tlsDir, 'capath')])
  // proxymap (ours and Postfix's) runs as mail_owner and must read them
  for (const f of fs.readdirSync(tlsDir)) fs.chmodSync(path.join(tlsDir, f), fs.statSync(path.join(tlsDir, f)).isDirectory() ? 0o755 : 0o644)
}

const tlsFile = (f: string): string => path.join(tlsDir, f)
const serverTls = (cert: string): string[] =>
  [`--ssl-ca=${tlsFile('ca.pem')}`, `--ssl-cert=${tlsFile(`${cert}.pem`)}`, `--ssl-key=${tlsFile(`${cert}.key`)}`]

// ------------------------------------------------------------------------ cases

interface Case {
  name: string
  /** .cf lines after hosts/dbname/query (user/password included). */
  lines: string[]
  /** hosts (default the TCP port) */
  hosts?: string
  key?: string
  /** extra environment (HOME) for both commands */
  env?: Record<string, string>
  /** what postmap must do (guards against a vacuous case) */
  expect: 'found' | 'notfound' | 'error'
}

const as = (user: keyof typeof PASSWORDS): string[] => [`user = ${user}`, `password = ${PASSWORDS[user]}`]

function optionFile(name: string, text: string): string {
  const file = path.join(cfDir, `${name}.cnf`)
  fs.writeFileSync(file, text)
  return file
}

type SqlType = 'mysql' | 'pgsql'

async function writeCf(c: Case, type: SqlType = 'mysql'): Promise<string> {
  const status = (v: string): string => `(SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME='${v}')`
  const file = path.join(cfDir, `${c.name}.cf`)
  fs.writeFileSync(file, [
    `hosts = ${c.hosts ?? `inet:127.0.0.1:${db.port}`}`,
    'dbname = test',
    type === 'mysql'
      ? `query = SELECT CONCAT(v, ' [', ${status('SSL_VERSION')}, ' ', ${status('SSL_CIPHER')}, ']') FROM t WHERE k='%s'`
      : "query = SELECT v || ' [' || coalesce((SELECT version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()), 'clear') || ']' FROM t WHERE k='%s'",
    ...c.lines, '',
  ].join('\n'))
  return file
}

interface Outcome {stdout: string; code: number; reason?: string; queryError: boolean}

/** The cause of a failed connection, from "connect to mysql server HOST: REASON". */
function failureReason(stderr: string): string | undefined {
  const m = /connect to mysql server \S+: (.*)/.exec(stderr)
  if (!m) return undefined
  if (m[1].startsWith('TLS/SSL error')) return 'TLS/SSL error'
  if (/^Access denied for user '\w+'@'[\w.]+' \(using password: (YES|NO)\)/.test(m[1])) return m[1]
  return m[1]
}

async function theirs(spec: string, key: string, env?: Record<string, string>): Promise<Outcome> {
  const r = await runCommand(POSTMAP, ['-c', directEtc, '-q', key, spec], {timeoutMs: 60_000, env: {...process.env, ...env}})
  return {stdout: r.stdout, code: r.code, reason: failureReason(r.stderr), queryError: /: query error/.test(r.stderr)}
}

async function ours(spec: string, key: string, env?: Record<string, string>): Promise<Outcome> {
  const r = await runCommand('node', [PROJECT_BIN, 'query', '-c', directEtc, spec, key], {timeoutMs: 60_000, env: {...process.env, ...env}})
  ourStderr.push(r.stderr)
  return {stdout: r.stdout, code: r.code, reason: failureReason(r.stderr), queryError: r.code === 4}
}

/** Runs every case on both sides (a few at a time), fails on disagreements; Postfix's answers by case. */
async function compareCases(cases: Case[], label: string, type: SqlType = 'mysql'): Promise<Map<string, string>> {
  const answers = new Map<string, string>()
  const failures: string[] = []
  const tally = {found: 0, notfound: 0, error: 0}
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]
      const spec = `${type}:${await writeCf(c, type)}`
      const key = c.key ?? 'alice'
      const [t, o] = await Promise.all([theirs(spec, key, c.env), ours(spec, key, c.env)])
      const problems: string[] = []
      const actual = t.code === 0 ? 'found' : t.queryError ? 'error' : 'notfound'
      if (actual !== c.expect) problems.push(`postmap: ${actual}, the case expects ${c.expect}`)
      if (o.stdout !== t.stdout) problems.push('stdout differs')
      if (actual === 'error') {
        if (o.code !== 4) problems.push(`postmap failed (query error), ours must be a RETRY (exit 4), not ${o.code}`)
        // (libpq's and node-postgres' words differ: only mysql failures are compared by cause)
        if (type === 'mysql' && t.reason === undefined) problems.push('postmap logged no connection failure')
        if (type === 'mysql' && o.reason !== t.reason) problems.push('the connection failed for another reason')
      } else if (o.code !== t.code) problems.push('exit code differs')
      if (problems.length > 0)
        failures.push(`${c.name} (key ${key}): ${problems.join('; ')}\n  ours:   ${JSON.stringify(o)}\n  theirs: ${JSON.stringify(t)}`)
      tally[actual]++
      answers.set(c.name, t.stdout)
    }
  }
  await Promise.all(Array.from({length: 3}, worker))
  console.log(`# ${label}: ${cases.length} cases compared with postmap (${tally.found} found, ${tally.notfound} not found, ${tally.error} connection errors)`)
  assert.deepEqual(failures, [], failures.join('\n'))
  return answers
}

// ------------------------------------------------------------------------ setup

before(async () => {
  requirePostfix()
  const maps = fs.readFileSync('/etc/postfix/dynamicmaps.cf', 'utf8')
  for (const t of ['mysql', 'pgsql'])
    if (!new RegExp(`^${t}\\s`, 'm').test(maps)) throw new Error(`Postfix has no ${t} tables: apt-get install postfix-${t}`)
  for (const tool of ['/usr/sbin/mariadbd', '/usr/bin/mariadb-install-db', '/usr/bin/openssl'])
    if (!fs.existsSync(tool)) throw new Error(`${tool} is missing (apt-get install mariadb-server openssl)`)
  if (!fs.existsSync(path.join(PROJECT_ROOT, 'dist', 'commands', 'query.js')))
    throw new Error('dist/ is missing: npx tsc -p . first')
  pf = await createPostfixInstance({prefix: 'pm-sqltls-'})
  tlsDir = path.join(pf.dir, 'tls')
  cfDir = path.join(pf.dir, 'cf')
  fs.mkdirSync(tlsDir, {mode: 0o755})
  fs.mkdirSync(cfDir, {mode: 0o755})
  directEtc = path.join(pf.dir, 'direct-etc')
  fs.mkdirSync(directEtc, {mode: 0o755})
  fs.writeFileSync(path.join(directEtc, 'main.cf'), 'compatibility_level = 3.6\n')
  await makeCertificates()
  db = await PrivateMariadb.create(pf.dir, {tcp: true}, serverTls('server'))
  const users = (host: string): string => `
CREATE USER 'plain'@'${host}' IDENTIFIED BY '${PASSWORDS.plain}';
CREATE USER 'tls'@'${host}' IDENTIFIED BY '${PASSWORDS.tls}' REQUIRE SSL;
CREATE USER 'x509'@'${host}' IDENTIFIED BY '${PASSWORDS.x509}' REQUIRE X509;
GRANT SELECT ON test.* TO 'plain'@'${host}', 'tls'@'${host}', 'x509'@'${host}';`
  await db.sql(`CREATE DATABASE test;
CREATE TABLE test.t (k VARCHAR(100), v VARCHAR(100));
INSERT INTO test.t VALUES ${ROWS.map(([k, v]) => `('${k}', '${v}')`).join(', ')};
${users('127.0.0.1')}${users('localhost')}`)
})

after(async () => {
  await db?.stop().catch(() => {})
  await pf?.destroy()
})

// ------------------------------------------------------------------------ tests

test('a server with TLS: the tls_* parameters as Postfix uses them', async () => {
  const home = path.join(pf.dir, 'home')
  fs.mkdirSync(home, {recursive: true})
  fs.writeFileSync(path.join(home, '.my.cnf'), `[client]\nssl-ca = ${tlsFile('ca.pem')}\n`)
  const ca = `tls_CAfile = ${tlsFile('ca.pem')}`
  const wrongCa = `tls_CAfile = ${tlsFile('wrong-ca.pem')}`
  const clientCert = [`tls_cert_file = ${tlsFile('client.pem')}`, `tls_key_file = ${tlsFile('client.key')}`]
  const cases: Case[] = [
    {name: 'plain-clear', lines: as('plain'), expect: 'found'},
    {name: 'plain-clear-notfound', lines: as('plain'), key: 'nobody', expect: 'notfound'},
    {name: 'tls-no-tls-params', lines: as('tls'), expect: 'error'},
    {name: 'tls-verify-no-alone', lines: [...as('tls'), 'tls_verify_cert = no'], expect: 'error'},
    // right CA + verify; wrong CA + verify: both fail the same way
    {name: 'tls-ca-verify', lines: [...as('tls'), ca, 'tls_verify_cert = yes'], expect: 'found'},
    {name: 'tls-ca-verify-notfound', lines: [...as('tls'), ca, 'tls_verify_cert = yes'], key: 'nobody', expect: 'notfound'},
    {name: 'tls-wrongca-verify', lines: [...as('tls'), wrongCa, 'tls_verify_cert = yes'], expect: 'error'},
    // a CA file means a checked chain, even with tls_verify_cert = no
    {name: 'tls-wrongca-noverify', lines: [...as('tls'), wrongCa, 'tls_verify_cert = no'], expect: 'error'},
    {name: 'tls-ca-only', lines: [...as('tls'), ca], expect: 'found'},
    // no CA and no verification: encrypted, nothing checked
    {name: 'tls-noca-noverify', lines: [...as('tls'), 'tls_ciphers = HIGH', 'tls_verify_cert = no'], expect: 'found'},
    // verification without a CA: the system's CAs, which do not know ours
    {name: 'tls-verify-system-cas', lines: [...as('tls'), 'tls_verify_cert = yes'], expect: 'error'},
    {name: 'tls-ca-missing', lines: [...as('tls'), `tls_CAfile = ${tlsFile('no-such-ca.pem')}`], expect: 'error'},
    {name: 'tls-capath', lines: [...as('tls'), `tls_CApath = ${tlsFile('capath')}`, 'tls_verify_cert = yes'], expect: 'found'},
    {name: 'tls-capath-unhashed', lines: [...as('tls'), `tls_CApath = ${tlsFile('capath-unhashed')}`], expect: 'error'},
    {name: 'tls-wrong-cafile-right-capath', lines: [...as('tls'), wrongCa, `tls_CApath = ${tlsFile('capath')}`], expect: 'found'},
    // a TLS 1.2 cipher list leaves TLS 1.3 as it is; a TLS_ name sets the TLS 1.3 suite
    {name: 'tls-ciphers-12', lines: [...as('tls'), ca, 'tls_ciphers = ECDHE-RSA-AES128-GCM-SHA256'], expect: 'found'},
    {name: 'tls-ciphers-13', lines: [...as('tls'), ca, 'tls_ciphers = TLS_AES_128_GCM_SHA256'], expect: 'found'},
    {name: 'tls-ciphers-bad', lines: [...as('tls'), ca, 'tls_ciphers = NO-SUCH-CIPHER'], expect: 'error'},
    // client certificates (REQUIRE X509)
    {name: 'x509-no-cert', lines: [...as('x509'), ca, 'tls_verify_cert = yes'], expect: 'error'},
    {name: 'x509-cert', lines: [...as('x509'), ...clientCert], expect: 'found'},
    {name: 'x509-cert-ca-verify', lines: [...as('x509'), ...clientCert, ca, 'tls_verify_cert = yes'], expect: 'found'},
    {name: 'x509-combined-cert-only', lines: [...as('x509'), `tls_cert_file = ${tlsFile('client-combined.pem')}`], expect: 'found'},
    {name: 'x509-combined-key-only', lines: [...as('x509'), `tls_key_file = ${tlsFile('client-combined.pem')}`], expect: 'found'},
    {name: 'x509-cert-without-key', lines: [...as('x509'), `tls_cert_file = ${tlsFile('client.pem')}`], expect: 'error'},
    {name: 'x509-key-mismatch', lines: [...as('x509'), `tls_cert_file = ${tlsFile('client.pem')}`, `tls_key_file = ${tlsFile('server.key')}`], expect: 'error'},
    // the UNIX socket carries TLS as well
    {name: 'unix-tls-ca-verify', hosts: `unix:${db.socket}`, lines: [...as('tls'), ca, 'tls_verify_cert = yes'], expect: 'found'},
    {name: 'unix-tls-wrongca', hosts: `unix:${db.socket}`, lines: [...as('tls'), wrongCa], expect: 'error'},
    // option files are read after the .cf settings: theirs win
    {name: 'opt-ca-beats-cf', lines: [...as('tls'), wrongCa, `option_file = ${optionFile('right-ca', `[client]\nssl-ca = ${tlsFile('ca.pem')}\n`)}`], expect: 'found'},
    {name: 'opt-wrongca-beats-cf', lines: [...as('tls'), ca, `option_file = ${optionFile('wrong-ca', `[client]\nssl_ca = "${tlsFile('wrong-ca.pem')}"\n`)}`], expect: 'error'},
    {name: 'opt-client-mariadb-cert', lines: [...as('x509'), `option_file = ${optionFile('cert', `# comment\n[mysqld]\nssl-cert = /nonexistent\n[client-mariadb]\nssl-cert = ${tlsFile('client.pem')}\nssl-key = ${tlsFile('client.key')}\n`)}`], expect: 'found'},
    {name: 'opt-group', lines: [...as('tls'), 'option_group = pm', `option_file = ${optionFile('group', `[pm]\nssl-ca = ${tlsFile('ca.pem')}\n`)}`], expect: 'found'},
    {name: 'opt-group-not-named', lines: [...as('tls'), `option_file = ${optionFile('group', `[pm]\nssl-ca = ${tlsFile('ca.pem')}\n`)}`], expect: 'error'},
    {name: 'opt-ssl-alone', lines: [...as('tls'), `option_file = ${optionFile('ssl', '[client]\nssl\nssl-verify-server-cert\n')}`], expect: 'error'},
    {name: 'opt-tls-version', lines: [...as('tls'), ca, `option_file = ${optionFile('version', '[client]\ntls-version = TLSv1.2\n')}`], expect: 'found'},
    {name: 'opt-include', lines: [...as('tls'), `option_file = ${optionFile('include', `[client]\n!include ${optionFile('right-ca', `[client]\nssl-ca = ${tlsFile('ca.pem')}\n`)}\n`)}`], expect: 'found'},
    // Postfix passes its own (empty) password: an option file's password is not used
    {name: 'opt-user-password', lines: [`option_file = ${optionFile('userpw', `[client]\nuser = plain\npassword = ${PASSWORDS.plain}\n`)}`], expect: 'error'},
    {name: 'opt-user', lines: [`password = ${PASSWORDS.plain}`, `option_file = ${optionFile('user', '[client]\nuser = plain\n')}`], expect: 'found'},
    // without option_file, the default files (here ~/.my.cnf) are read, unless option_group is empty
    {name: 'home-my-cnf', lines: as('tls'), env: {HOME: home}, expect: 'found'},
    {name: 'home-my-cnf-no-group', lines: [...as('tls'), 'option_group ='], env: {HOME: home}, expect: 'error'},
  ]
  const answers = await compareCases(cases, 'TLS server')
  assert.match(answers.get('tls-ca-verify')!, /^alice-value \[TLSv1\.3 TLS_/)
  assert.match(answers.get('plain-clear')!, /^alice-value \[ \]/)
  assert.match(answers.get('opt-tls-version')!, /\[TLSv1\.2 /)
  assert.match(answers.get('tls-ciphers-13')!, /TLS_AES_128_GCM_SHA256/)
})

test('a server certificate for another name: only tls_verify_cert = yes checks the name', async () => {
  await db.start(serverTls('misnamed'))
  try {
    const ca = `tls_CAfile = ${tlsFile('ca.pem')}`
    await compareCases([
      {name: 'name-ca-verify', lines: [...as('tls'), ca, 'tls_verify_cert = yes'], expect: 'error'},
      {name: 'name-ca-noverify', lines: [...as('tls'), ca, 'tls_verify_cert = no'], expect: 'found'},
      {name: 'name-ca', lines: [...as('tls'), ca], expect: 'found'},
      {name: 'name-opt-verify-1', lines: [...as('tls'), ca, `option_file = ${optionFile('verify1', '[client]\nssl-verify-server-cert = 1\n')}`], expect: 'error'},
      {name: 'name-opt-bare-verify-ignored', lines: [...as('tls'), ca, 'tls_verify_cert = yes', `option_file = ${optionFile('verify', '[client]\nssl-verify-server-cert\n')}`], expect: 'error'},
      {name: 'name-unix-verify', hosts: `unix:${db.socket}`, lines: [...as('tls'), ca, 'tls_verify_cert = yes'], expect: 'error'},
    ], 'misnamed server certificate')
  } finally {
    await db.start(serverTls('server'))
  }
})

test('a server without TLS: clear text unless tls_verify_cert = yes', async () => {
  await db.start(['--skip-ssl'])
  try {
    const ca = `tls_CAfile = ${tlsFile('ca.pem')}`
    await compareCases([
      {name: 'clear-plain-ca', lines: [...as('plain'), ca], expect: 'found'},
      {name: 'clear-plain-cert', lines: [...as('plain'), `tls_cert_file = ${tlsFile('client-combined.pem')}`], expect: 'found'},
      // the files are only read when TLS starts
      {name: 'clear-plain-missing-ca', lines: [...as('plain'), `tls_CAfile = ${tlsFile('no-such-ca.pem')}`], expect: 'found'},
      {name: 'clear-plain-ca-verify', lines: [...as('plain'), ca, 'tls_verify_cert = yes'], expect: 'error'},
      {name: 'clear-tls-ca', lines: [...as('tls'), ca], expect: 'error'},
    ], 'server without TLS')
  } finally {
    await db.start(serverTls('server'))
  }
})

test('through proxy: our server answers TLS tables as Postfix\'s proxymap does', async () => {
  const ca = `tls_CAfile = ${tlsFile('ca.pem')}`
  const clientCert = [`tls_cert_file = ${tlsFile('client.pem')}`, `tls_key_file = ${tlsFile('client.key')}`]
  const tables = [
    `mysql:${await writeCf({name: 'proxy-x509', lines: [...as('x509'), ...clientCert, ca, 'tls_verify_cert = yes'], expect: 'found'})}`,
    `mysql:${await writeCf({name: 'proxy-wrongca', lines: [...as('tls'), `tls_CAfile = ${tlsFile('wrong-ca.pem')}`, 'tls_verify_cert = yes'], expect: 'error'})}`,
  ]
  await pf.approve({read: tables})
  const run = async (): Promise<{stdout: string; code: number}[]> => {
    const out: {stdout: string; code: number}[] = []
    for (const t of tables) {
      for (const key of ['alice', 'nobody']) {
        const r = await pf.postmap(['-q', key, `proxy:${t}`], {timeoutMs: 30_000})
        out.push({stdout: r.stdout, code: r.code})
      }
    }
    return out
  }
  const result = await theirsThenOurs(pf, run)
  ourStderr.push(pf.ourStderr())
  assert.deepEqual(result.ours, result.theirs)
  assert.match(result.theirs[0].stdout, /^alice-value \[TLSv1\.3 /, 'the client-certificate table answers through proxy:')
  assert.notEqual(result.theirs[2].code, 0, 'the wrong-CA table fails through proxy:')
  console.log(`# through proxy: ${result.theirs.length} lookups, same as Postfix's proxymap`)
})

// ------------------------------------------------------------------------ pgsql

/**
 * A private PostgreSQL cluster (initdb as user postgres, postgres started by pid) on a free
 * loopback port and a socket directory, TLS with the same server certificate. pg_hba lets
 * `tlsonly` in over TLS only.
 */
class PrivatePostgres {
  private child?: ReturnType<typeof spawnTracked>
  readonly port: Promise<number> = freeLoopbackPort()

  constructor(readonly dir: string, private readonly ids: {uid: number; gid: number}) {}

  static async create(parent: string): Promise<PrivatePostgres> {
    const bin = PG_BIN()
    const dir = fs.mkdtempSync(path.join(parent, 'pg-'))
    const uid = Number((await runCommand('id', ['-u', 'postgres'])).stdout.trim())
    const gid = Number((await runCommand('id', ['-g', 'postgres'])).stdout.trim())
    fs.chmodSync(dir, 0o755)
    fs.chownSync(dir, uid, gid)
    const init = await runCommand('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', path.join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'], {timeoutMs: 120_000})
    if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`)
    for (const f of ['server.pem', 'server.key']) {
      fs.copyFileSync(tlsFile(f), path.join(dir, f))
      fs.chownSync(path.join(dir, f), uid, gid)
      fs.chmodSync(path.join(dir, f), 0o600)
    }
    fs.writeFileSync(path.join(dir, 'data', 'pg_hba.conf'), [
      'local all all trust',
      'hostnossl all tlsonly 127.0.0.1/32 reject',
      'host all all 127.0.0.1/32 trust', '',
    ].join('\n'))
    return new PrivatePostgres(dir, {uid, gid})
  }

  async start(ssl: boolean): Promise<void> {
    await this.stop()
    const port = await this.port
    this.child = spawnTracked(path.join(PG_BIN(), 'postgres'), [
      '-D', path.join(this.dir, 'data'), '-p', String(port), '-k', this.dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', `ssl=${ssl ? 'on' : 'off'}`, '-c', `ssl_cert_file=${path.join(this.dir, 'server.pem')}`,
      '-c', `ssl_key_file=${path.join(this.dir, 'server.key')}`, '-c', 'fsync=off',
    ], {stdio: 'ignore', cwd: this.dir, uid: this.ids.uid, gid: this.ids.gid})
    for (let i = 0; i < 100; i++) {
      if ((await this.psql('SELECT 1').catch(() => '')).trim() === '1') return
      await sleep(200)
    }
    throw new Error('private postgres did not start')
  }

  async stop(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGINT') // fast shutdown
    await exited
  }

  async psql(sql: string, db = 'postgres'): Promise<string> {
    const r = await runCommand(path.join(PG_BIN(), 'psql'), ['-h', this.dir, '-p', String(await this.port), '-U', 'postgres',
      '-d', db, '-v', 'ON_ERROR_STOP=1', '-qtA'], {input: sql, timeoutMs: 30_000})
    if (r.code !== 0) throw new Error(`psql: ${r.stderr}`)
    return r.stdout
  }
}

const PG_BIN = (): string => {
  const versions = fs.readdirSync('/usr/lib/postgresql').sort()
  if (versions.length === 0) throw new Error('PostgreSQL is not installed (apt-get install postgresql)')
  return path.join('/usr/lib/postgresql', versions.at(-1)!, 'bin')
}

test('pgsql: libpq\'s sslmode (URI hosts) and its "prefer" default, as Postfix gets them', async () => {
  const pgdb = await PrivatePostgres.create(pf.dir)
  try {
    await pgdb.start(true)
    await pgdb.psql('CREATE ROLE plain LOGIN; CREATE ROLE tlsonly LOGIN; CREATE DATABASE test;')
    await pgdb.psql(`CREATE TABLE t (k TEXT, v TEXT); INSERT INTO t VALUES ${ROWS.map(([k, v]) => `('${k}', '${v}')`).join(', ')};
GRANT SELECT ON t TO plain, tlsonly;`, 'test')
    const port = await pgdb.port
    const uri = (user: string, query: string, host = '127.0.0.1'): string => `postgresql://${user}@${host}:${port}/test?${query}`
    const ca = `sslrootcert=${tlsFile('ca.pem')}`
    const wrongCa = `sslrootcert=${tlsFile('wrong-ca.pem')}`
    const inet = `inet:127.0.0.1:${port}`
    const cases: Case[] = [
      {name: 'pg-inet-prefer', hosts: inet, lines: ['user = plain'], expect: 'found'},
      {name: 'pg-inet-prefer-tlsonly', hosts: inet, lines: ['user = tlsonly'], expect: 'found'},
      // libpq never uses TLS on a UNIX-domain socket, whatever sslmode says
      {name: 'pg-unix-clear', hosts: `postgresql:///test?host=${pgdb.dir}&port=${port}&user=plain&sslmode=require`, lines: [], expect: 'found'},
      {name: 'pg-disable', hosts: uri('plain', 'sslmode=disable'), lines: [], expect: 'found'},
      {name: 'pg-disable-tlsonly', hosts: uri('tlsonly', 'sslmode=disable'), lines: [], expect: 'error'},
      {name: 'pg-require', hosts: uri('tlsonly', 'sslmode=require'), lines: [], expect: 'found'},
      {name: 'pg-require-wrongca', hosts: uri('tlsonly', `sslmode=require&${wrongCa}`), lines: [], expect: 'error'},
      {name: 'pg-verify-ca', hosts: uri('tlsonly', `sslmode=verify-ca&${ca}`), lines: [], expect: 'found'},
      {name: 'pg-verify-ca-wrongca', hosts: uri('tlsonly', `sslmode=verify-ca&${wrongCa}`), lines: [], expect: 'error'},
      {name: 'pg-verify-ca-no-rootcert', hosts: uri('tlsonly', 'sslmode=verify-ca'), lines: [], expect: 'error'},
      {name: 'pg-verify-full', hosts: uri('tlsonly', `sslmode=verify-full&${ca}`), lines: [], expect: 'found'},
      {name: 'pg-verify-full-localhost', hosts: uri('tlsonly', `sslmode=verify-full&${ca}`, 'localhost'), lines: [], expect: 'found'},
      {name: 'pg-prefer-wrongca-falls-back', hosts: uri('plain', `sslmode=prefer&${wrongCa}`), lines: [], expect: 'found'},
      {name: 'pg-allow', hosts: uri('plain', 'sslmode=allow'), lines: [], expect: 'found'},
      {name: 'pg-allow-tlsonly', hosts: uri('tlsonly', 'sslmode=allow'), lines: [], expect: 'found'},
    ]
    const answers = await compareCases(cases, 'pgsql, server with TLS', 'pgsql')
    // not vacuous: libpq's default took TLS, "disable" and the socket did not
    assert.match(answers.get('pg-inet-prefer')!, /^alice-value \[TLSv1\.3 /)
    assert.match(answers.get('pg-disable')!, /\[clear\]/)
    assert.match(answers.get('pg-unix-clear')!, /\[clear\]/)
    assert.match(answers.get('pg-prefer-wrongca-falls-back')!, /\[clear\]/)
    await pgdb.start(false)
    await compareCases([
      {name: 'pg-clear-require', hosts: uri('plain', 'sslmode=require'), lines: [], expect: 'error'},
      {name: 'pg-clear-prefer', hosts: uri('plain', 'sslmode=prefer'), lines: [], expect: 'found'},
      {name: 'pg-clear-inet', hosts: inet, lines: ['user = plain'], expect: 'found'},
    ], 'pgsql, server without TLS', 'pgsql')
  } finally {
    await pgdb.stop()
  }
})

test('passwords and key material never appear in our messages', () => {
  const text = ourStderr.join('\n')
  assert.ok(text.includes('connect to mysql server'), 'the failing cases were logged')
  for (const pw of Object.values(PASSWORDS)) assert.ok(!text.includes(pw), `a password appears in our stderr`)
  for (const keyFile of ['client.key', 'server.key', 'ca.key']) {
    const body = fs.readFileSync(tlsFile(keyFile), 'utf8').split('\n').filter((l) => l.length > 40 && !l.startsWith('-----'))
    for (const line of body) assert.ok(!text.includes(line), `${keyFile} material appears in our stderr`)
  }
  assert.ok(!/PRIVATE KEY/.test(text), 'a PEM private key appears in our stderr')
})
