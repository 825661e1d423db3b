// Differential test of the ldap table against real Postfix 3.7 (postfix-ldap) and a private
// OpenLDAP slapd (test/helpers/slapd.ts): a directory of people, groups (DN-valued
// `member`, LDAP URLs in `labeledURI`), aliases and access rules, a set of .cf variants,
// and for every (cf, key) our lookup compared with `postmap -c DIR -q KEY ldap:FILE.cf`:
// stdout, found / not found / error, and the warnings on stderr. Then the CLI
// (`proxymap query ... -`) against `postmap -q -`, and `postmap -q - proxy:ldap:...`
// answered by our server against Postfix's own proxymap; ldaps:// and StartTLS with a CA
// made by openssl. A slapd that goes away, a server that never answers, connection sharing,
// bind_pw staying out of every message, and identical lookups in flight being one search
// (counted in slapd's stats log) are checked on our side.
//
// A missing postmap, postfix-ldap, slapd or ldap-utils FAILS the test.
//
// Run: node --import tsx --test test/differential/ldap.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {OpenOptions, Table, TableError} from '../../src/lib/tables/table.js'
import {ldapType, ldapTypeWith} from '../../src/lib/tables/ldap.js'
import {
  createPostfixInstance, POSTMAP, PROJECT_BIN, PostfixInstance, requirePostfix, runCommand, sleep, waitFor,
} from '../helpers/postfix.js'
import {theirsThenOurs} from '../helpers/compare.js'
import {Slapd, startSlapd} from '../helpers/slapd.js'
import {makeConfig, toBinary, writeTable} from './pattern-helpers.js'
import {pool, postmapWarnedOutcome, warnedLookup, type WarnedOutcome} from './table-helpers.js'

const SUFFIX = 'dc=example,dc=com'
const ROOT_DN = `cn=admin,${SUFFIX}`
const ROOT_PW = 'r00tpw'
const BIND_DN = `uid=binder,ou=system,${SUFFIX}`
const BIND_PW = 'b1nd s3cret#x'
const people = `ou=people,${SUFFIX}`
const groups = `ou=groups,${SUFFIX}`

let slapd: Slapd
let dir: string
let config: MainConfig
const cfs = new Map<string, string>()

// ----------------------------------------------------------------------- the directory

type Attrs = [string, string][]

function ldifEntry(dn: string, attrs: Attrs): string {
  const line = (name: string, value: string): string =>
    /^[\x20-\x7e]*$/.test(value) && !/^[ :<]/.test(value) && !value.endsWith(' ')
      ? `${name}: ${value}`
      : `${name}:: ${Buffer.from(value, 'utf8').toString('base64')}`
  return [line('dn', dn), ...attrs.map(([n, v]) => line(n, v))].join('\n') + '\n'
}

const person = (uid: string, extra: Attrs, ou = people): string => ldifEntry(`uid=${uid},${ou}`, [
  ['objectClass', 'inetOrgPerson'], ['objectClass', 'extensibleObject'], ['uid', uid], ['sn', uid], ...extra,
])
const group = (cn: string, extra: Attrs): string => ldifEntry(`cn=${cn},${groups}`, [
  ['objectClass', 'groupOfNames'], ['objectClass', 'extensibleObject'], ['cn', cn], ...extra,
])

function fixtures(): string {
  const entries = [
    ldifEntry(SUFFIX, [['objectClass', 'dcObject'], ['objectClass', 'organization'], ['o', 'Example'], ['dc', 'example']]),
    ...['people', 'groups', 'system', 'aliases'].map((ou) =>
      ldifEntry(`ou=${ou},${SUFFIX}`, [['objectClass', 'organizationalUnit'], ['ou', ou]])),
    ldifEntry(BIND_DN, [['objectClass', 'account'], ['objectClass', 'simpleSecurityObject'], ['uid', 'binder'], ['userPassword', BIND_PW]]),
    person('alice', [['cn', 'Alice Smith'], ['mail', 'alice@example.com'], ['mail', 'Alice.Smith@example.com'],
      ['description', 'alice desc one'], ['description', 'alice desc two'], ['description', 'alice desc three'],
      ['telephoneNumber', '+1 555 0100'], ['displayName', 'alice@mailbox.example.com']]),
    person('bob', [['cn', 'Bob'], ['mail', 'bob@example.com'], ['description', 'bob-desc'],
      ['seeAlso', `uid=carol,${people}`], ['manager', `uid=alice,${people}`], ['telephoneNumber', '+1 555 0101']]),
    person('carol', [['cn', 'Carol'], ['mail', 'carol@example.org'], ['title', 'terminal-carol'], ['description', 'carol-desc'],
      ['seeAlso', `uid=alice,${people}`]]),
    person('dave', [['cn', 'Dave'], ['mail', 'dave@sub.example.com'], ['description', 'dave-desc']]),
    person('jose', [['cn', 'José Müller'], ['mail', 'jose@example.com'], ['description', 'é-value']]),
    person('star', [['cn', 'Star'], ['mail', 'star*@example.com'], ['description', 'literal star']]),
    person('paren', [['cn', 'Paren'], ['mail', 'paren(x)@example.com'], ['description', 'literal parens']]),
    person('backslash', [['cn', 'Backslash'], ['mail', 'back\\slash@example.com'], ['description', 'literal backslash']]),
    person('comma', [['cn', 'Comma, Quote'], ['mail', 'comma,"q"@example.com'], ['description', 'comma value, with comma']]),
    person('plus', [['cn', 'Plus'], ['mail', 'plus+tag@example.com'], ['description', 'plus']]),
    ...[1, 2, 3, 4, 5].map((i) => person(`many${i}`, [['cn', `Many ${i}`], ['mail', 'many@example.com'], ['description', `many-${i}`]])),
    person('nodomain', [['cn', 'No Domain'], ['mail', 'nodomain'], ['description', 'nodomain@'], ['description', '@leading']]),
    group('staff', [['mail', 'staff@example.com'], ['description', 'staff group'],
      ['member', `uid=alice,${people}`], ['member', `uid=bob,${people}`], ['member', `uid=carol,${people}`],
      ['member', `uid=ghost,${people}`]]),
    group('nested', [['mail', 'nested@example.com'], ['description', 'nested group'],
      ['member', `cn=staff,${groups}`], ['member', `uid=dave,${people}`]]),
    group('loop', [['mail', 'loop@example.com'], ['description', 'loop group'], ['member', `cn=loop,${groups}`]]),
    group('urlgroup', [['mail', 'urlgroup@example.com'], ['member', `uid=jose,${people}`],
      ['labeledURI', `ldap:///${people}?mail,description?one?(mail=many@example.com)`],
      ['labeledURI', `ldap:///${people}?telephoneNumber?one?(uid=alice)`],
      ['labeledURI', `ldap:///${people}?sn?sub?(uid=bob)`]]),
    group('badurl', [['mail', 'badurl@example.com'], ['member', `uid=plus,${people}`],
      ['labeledURI', `ldap:///${people}?mail?bogus?(uid=bob)`]]),
    group('badport', [['mail', 'badport@example.com'], ['member', `uid=plus,${people}`], ['labeledURI', `ldap://127.0.0.1:x/${people}?mail?sub?(uid=bob)`]]),
    ldifEntry(`uid=alias-alice,ou=aliases,${SUFFIX}`, [['objectClass', 'alias'], ['objectClass', 'extensibleObject'],
      ['uid', 'alias-alice'], ['aliasedObjectName', `uid=alice,${people}`]]),
  ]
  return entries.join('\n')
}

const ACL = [
  'access to attrs=userPassword by self write by anonymous auth by * none',
  // Only a bound client sees telephone numbers: bind variants give different answers.
  'access to attrs=telephoneNumber by users read by * none',
  'access to * by * read',
  'index objectClass,mail,uid,cn eq',
]

// ----------------------------------------------------------------------- the .cf variants

const KEYS = [
  'alice@example.com', 'ALICE@EXAMPLE.COM', 'Alice.Smith@example.com', 'bob@example.com', 'carol@example.org',
  'dave@sub.example.com', 'jose@example.com', 'staff@example.com', 'nested@example.com', 'loop@example.com',
  'urlgroup@example.com', 'badurl@example.com', 'badport@example.com', 'many@example.com', 'star*@example.com', 'paren(x)@example.com', 'back\\slash@example.com',
  'comma,"q"@example.com', 'plus+tag@example.com', 'nodomain', 'nobody@example.com', 'alice', 'carol', 'a*', '*', '(', ')',
  '\\', 'alice@', '@example.com', 'Alice Smith', 'José Müller', 'JOSÉ MÜLLER', 'x@a.b.c', 'alias-alice', 'ghost',
  'space user@example.com', "quote'@example.com", '#hash', 'a,b',
]

function cfVariants(url: string): Record<string, string> {
  const base = `server_host = ${url}\nsearch_base = ${SUFFIX}\n`
  const v3 = `${base}version = 3\n`
  return {
    // the defaults: anonymous simple bind, result_attribute maildrop (absent here)
    defaults: `${base}query_filter = (mail=%s)\n`,
    version2: `${base}version = 2\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    version2url: `server_host = ${slapd.ldapiUrl}\nversion = 2\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    version4: `${base}version = 4\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    uidcn: `${base}query_filter = (mail=%s)\nresult_attribute = uid, cn\n`,
    multivalued: `${v3}query_filter = (mail=%s)\nresult_attribute = description mail\n`,
    userpart: `${v3}query_filter = (|(uid=%u)(mail=%s))\nresult_attribute = uid\n`,
    domainparts: `${v3}query_filter = (&(objectClass=inetOrgPerson)(mail=%u@%d))\nresult_attribute = mail\nresult_format = %u at %d [%1] [%2]\n`,
    resultfmt: `${v3}query_filter = (mail=%s)\nresult_attribute = uid\nresult_format = smtp:[%s]:25\n`,
    resultkey: `${v3}query_filter = (mail=%s)\nresult_attribute = uid\nresult_format = %S|%U|%D|%s%%\n`,
    resultdomain: `${v3}query_filter = (mail=%s)\nresult_attribute = description, displayName\nresult_format = %d\n`,
    resultfilter: `${v3}query_filter = (mail=%s)\nresult_attribute = uid\nresult_filter = legacy-%s\n`,
    bycn: `${v3}query_filter = (cn=%s)\nresult_attribute = mail, description\n`,
    domainlist: `${v3}domain = example.com, !sub.example.com\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    special: `${v3}query_filter = (mail=%s)\nresult_attribute = mail\nspecial_result_attribute = member, seeAlso\n`,
    specialurl: `${v3}query_filter = (mail=%s)\nresult_attribute = mail, telephoneNumber\nspecial_result_attribute = member, labeledURI\n`,
    leaf: `${v3}query_filter = (mail=%s)\nresult_attribute = description\nleaf_result_attribute = mail\nspecial_result_attribute = member\n`,
    terminal: `${v3}query_filter = (mail=%s)\nresult_attribute = mail\nterminal_result_attribute = title\nspecial_result_attribute = member seeAlso\n`,
    recursion1: `${v3}query_filter = (mail=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nrecursion_limit = 1\n`,
    recursion2: `${v3}query_filter = (mail=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nrecursion_limit = 2\n`,
    scopebase: `server_host = ${url}\nversion = 3\nsearch_base = uid=%u,${people}\nscope = base\nquery_filter = (objectClass=*)\nresult_attribute = mail\n`,
    scopebasestatic: `server_host = ${url}\nversion = 3\nsearch_base = uid=alice,${people}\nscope = BASE\nquery_filter = (uid=%s)\nresult_attribute = mail\n`,
    scopeone: `${v3}scope = one\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    scopeonepeople: `server_host = ${url}\nsearch_base = ${people}\nscope = one\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    scopebogus: `${v3}scope = everything\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    basedn: `server_host = ${url}\nversion = 3\nsearch_base = cn=%s,${groups}\nquery_filter = (objectClass=*)\nresult_attribute = description\n`,
    nobase: `server_host = ${url}\nsearch_base = dc=nowhere,dc=com\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    bindroot: `${v3}bind = yes\nbind_dn = ${ROOT_DN}\nbind_pw = ${ROOT_PW}\nquery_filter = (mail=%s)\nresult_attribute = telephoneNumber, uid\n`,
    binduser: `${base}bind_dn = ${BIND_DN}\nbind_pw = ${BIND_PW}\nquery_filter = (mail=%s)\nresult_attribute = telephoneNumber, uid\n`,
    bindanon: `${v3}query_filter = (mail=%s)\nresult_attribute = telephoneNumber, uid\n`,
    bindno: `${v3}bind = no\nquery_filter = (mail=%s)\nresult_attribute = telephoneNumber, uid\n`,
    bindwrong: `${v3}bind_dn = ${BIND_DN}\nbind_pw = wrong ${BIND_PW}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    bindnosuchdn: `${v3}bind = simple\nbind_dn = uid=nobody,${SUFFIX}\nbind_pw = x\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    sizelimit2: `${v3}size_limit = 2\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    sizelimit5: `${v3}size_limit = 5\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    expansion2: `${v3}expansion_limit = 2\nquery_filter = (mail=%s)\nresult_attribute = description\n`,
    expansion2nosize: `${v3}expansion_limit = 2\nsize_limit = 0\nquery_filter = (mail=%s)\nresult_attribute = description\n`,
    expansion3special: `${v3}expansion_limit = 3\nsize_limit = 10\nquery_filter = (mail=%s)\nresult_attribute = mail\nspecial_result_attribute = member\n`,
    deref0: `server_host = ${url}\nversion = 3\nsearch_base = ou=aliases,${SUFFIX}\nquery_filter = (uid=%s)\nresult_attribute = mail\n`,
    deref3: `server_host = ${url}\nversion = 3\nsearch_base = ou=aliases,${SUFFIX}\ndereference = 3\nquery_filter = (|(uid=%s)(mail=%s))\nresult_attribute = mail\n`,
    derefbogus: `${v3}dereference = 9\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    badfilter: `${v3}query_filter = (mail=%s\nresult_attribute = uid\n`,
    nofilterparens: `${v3}query_filter = mail=%s\nresult_attribute = uid\n`,
    fixedfilter: `${v3}query_filter = (uid=carol)\nresult_attribute = mail\n`,
    wildcardfilter: `${v3}query_filter = (&(mail=*%s*)(objectClass=inetOrgPerson))\nresult_attribute = uid\n`,
    options: `${v3}query_filter = (mail=%s)\nresult_attribute = cn;lang-en, description\ncache = yes\ncache_size = 10\nchase_referrals = no\n`,
    badserverurl: `server_host = ldap://127.0.0.1:x/ ${url}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    multiserver: `server_host = ldap://127.0.0.1:1, ${url}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    barehost: `server_host = 127.0.0.1\nserver_port = ${new URL(url).port}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    barehostport: `server_host = localhost:1 127.0.0.1:${new URL(url).port}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    ldapi: `server_host = ${slapd.ldapiUrl}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    down: `server_host = ldap://127.0.0.1:1\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    downnobind: `server_host = 127.0.0.1:1\nbind = no\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    // (timeout = 0 with a bind is a race in Postfix: the bind answer may or may not be in
    // by the zero-second poll. Without one every search fails.)
    timeout0nobind: `${v3}timeout = 0\nbind = no\nquery_filter = (mail=%s)\nresult_attribute = uid\n`,
    badbind: `${v3}bind = maybe\nquery_filter = (mail=%s)\n`,
  }
}

// ----------------------------------------------------------------------- comparison

type Outcome = WarnedOutcome

const quiet = {warning: () => {}, error: () => {}, info: () => {}}

function openOptions(log: OpenOptions['log']): OpenOptions {
  return {mode: 'read', dictFlags: postmapQueryFlags(true), config, log, openNested: () => { throw new Error('unused') }}
}

/** Warnings and errors as postmap prints them, without the program name. */
function logInto(lines: string[]): OpenOptions['log'] {
  return {warning: (m) => lines.push(`warning: ${m}`), error: (m) => lines.push(`error: ${m}`), info: () => {}}
}

async function ours(file: string, key: string): Promise<Outcome> {
  const warnings: string[] = []
  let table: Table
  try {
    table = await ldapType.open(toBinary(file), openOptions(logInto(warnings)))
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    return {stdout: '', result: 'error', warnings}
  }
  return warnedLookup(table, key, warnings)
}

const real = (file: string, key: string): Promise<Outcome> => postmapWarnedOutcome(dir, key, `ldap:${file}`)

// ----------------------------------------------------------------------- setup

before(async () => {
  requirePostfix()
  const maps = fs.readFileSync('/etc/postfix/dynamicmaps.cf', 'utf8')
  if (!/^ldap\s/m.test(maps)) throw new Error('Postfix has no ldap tables: apt-get install postfix-ldap')
  slapd = await startSlapd({suffix: SUFFIX, rootDn: ROOT_DN, rootPw: ROOT_PW, databaseLines: ACL})
  await slapd.add(fixtures())
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-ldap-')))
  fs.chmodSync(dir, 0o755)
  fs.writeFileSync(path.join(dir, 'main.cf'), 'compatibility_level = 3.6\n')
  config = makeConfig(dir, {compatibility_level: '3.6'})
  for (const [name, body] of Object.entries(cfVariants(slapd.url))) cfs.set(name, writeTable(path.join(dir, `${name}.cf`), body))
})

after(async () => {
  await slapd?.destroy()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

// ----------------------------------------------------------------------- tests

/** Every (cf, key) through our table and through postmap; returns the tally by Postfix's result. */
async function compareWithPostmap(tables: [string, string][], keys: string[], label: string): Promise<Record<Outcome['result'], number>> {
  const cases = tables.flatMap(([name, file]) => keys.map((key) => ({name, file, key})))
  const failures: string[] = []
  const tally = {found: 0, notfound: 0, error: 0}
  await pool(cases.map(({name, file, key}) => async () => {
    const [o, r] = await Promise.all([ours(file, key), real(file, key)])
    tally[r.result]++
    if (JSON.stringify(o) !== JSON.stringify(r))
      failures.push(`${name}: -q ${JSON.stringify(key)}\n  ours: ${JSON.stringify(o)}\n  real: ${JSON.stringify(r)}`)
  }), 4)
  console.log(`# ${label}: ${cases.length} (cf, key) cases compared with postmap -q: ${tally.found} found, ${tally.notfound} not found, ${tally.error} errors`)
  assert.deepEqual(failures, [], `${failures.length} differences:\n${failures.slice(0, 25).join('\n')}`)
  return tally
}

test('ldap tables answer as postmap -q does: value, status and warnings', async () => {
  const tally = await compareWithPostmap([...cfs.entries()], KEYS, 'ldap')
  assert.ok(tally.found >= 300, `too few cases found a value: ${tally.found}`)
  assert.ok(tally.error >= 50, `too few error cases: ${tally.error}`)
})

const streamKeys = (): string => KEYS.filter((k) => k.length > 0).join('\n') + '\n'

test('proxymap query TABLE - prints what postmap -q - prints', async () => {
  const input = streamKeys()
  let compared = 0
  let failed = 0
  await pool([...cfs.entries()].map(([name, file]) => async () => {
    const table = `ldap:${file}`
    const theirs = await runCommand(POSTMAP, ['-c', dir, '-q', '-', table], {input, timeoutMs: 60_000})
    const mine = await runCommand('node', [PROJECT_BIN, 'query', '-c', dir, table, '-'], {input, timeoutMs: 60_000})
    if (theirs.stderr.includes('fatal:')) {
      // postmap dies at the first failed lookup and loses what it had buffered for stdout;
      // we print each answer as it comes. Both must fail.
      assert.notEqual(mine.code, 0, `${name}: postmap failed (${theirs.stderr.trim()}), ours must too`)
      failed++
    } else {
      assert.equal(mine.stdout, theirs.stdout, `${name}: stdout; ours stderr: ${mine.stderr}`)
      assert.equal(mine.code, theirs.code, `${name}: exit code; ${mine.stderr}`)
    }
    compared++
  }), 2)
  console.log(`# ldap: ${compared} tables x ${KEYS.length} keys compared between proxymap query and postmap -q - (${failed} tables fail on some key in both)`)
})

test('postmap -q - proxy:ldap:... gets the same answers from our server as from Postfix proxymap', async () => {
  let pf: PostfixInstance | undefined
  try {
    pf = await createPostfixInstance({prefix: 'pm-ldap-'})
    // bind = maybe is fatal in Postfix's proxymap (its clients wait for it forever); ours
    // answers RETRY, as for any table that cannot be opened.
    const names = [...cfs.entries()].filter(([name]) => name !== 'badbind').map(([, f]) => `ldap:${f}`)
    await pf.approve({read: names})
    const input = streamKeys()
    const run = async (): Promise<Record<string, {stdout: string; failed: boolean}>> => {
      const out: Record<string, {stdout: string; failed: boolean}> = {}
      for (const name of names) {
        const r = await pf!.postmap(['-q', '-', `proxy:${name}`], {input, timeoutMs: 60_000})
        out[name] = {stdout: r.stdout, failed: r.code !== 0 && r.stderr.includes('fatal:')}
      }
      return out
    }
    const {theirs, ours: mine} = await theirsThenOurs(pf, run)
    for (const name of names) assert.deepEqual(mine[name], theirs[name], name)
    const answered = Object.values(theirs).filter((r) => r.stdout.length > 0).length
    console.log(`# ldap: ${names.length} tables x ${KEYS.length} keys through proxy:, ${answered} tables with answers`)
    assert.ok(answered >= names.length / 2)
  } finally {
    await pf?.destroy()
  }
})

test('a slapd that goes away is a RETRY, and the same table answers again when it is back', async () => {
  for (const name of ['uidcn', 'bindno', 'binduser']) {
    const warnings: string[] = []
    const table = await ldapType.open(cfs.get(name)!, openOptions(logInto(warnings)))
    try {
      assert.ok(await table.lookup('alice@example.com'), `${name}: first lookup`)
      await slapd.stop()
      await assert.rejects(async () => table.lookup('alice@example.com'),
        (err: unknown) => err instanceof TableError && err.kind === 'retry')
      await slapd.start()
      assert.ok(await table.lookup('bob@example.com'), `${name}: after restart; ${warnings.join('\n')}`)
      // Many lookups at once share the one connection.
      const answers = await Promise.all(KEYS.map((k) => Promise.resolve(table.lookup(toBinary(k))).catch(() => 'error')))
      assert.ok(answers.filter((a) => a !== undefined && a !== 'error').length >= 5, JSON.stringify(answers))
    } finally {
      await table.close?.()
    }
  }
})

test('a server that never answers is a RETRY within the time limits; bind_pw is never logged', async () => {
  const sockets: net.Socket[] = []
  const silent = net.createServer((s) => { sockets.push(s) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const port = (silent.address() as net.AddressInfo).port
  const lines: string[] = []
  const log = {warning: (m: string) => lines.push(m), error: (m: string) => lines.push(m), info: (m: string) => lines.push(m)}
  try {
    const cases: [string, number][] = [
      // Postfix's own timeout (seconds) on the bind
      [writeTable(path.join(dir, 'silent-timeout.cf'), `server_host = 127.0.0.1:${port}\ntimeout = 1\nbind_dn = ${BIND_DN}\nbind_pw = ${BIND_PW}\nquery_filter = (mail=%s)\n`), 2500],
      // our per-lookup limit, shorter than the configured timeout
      [writeTable(path.join(dir, 'silent-limit.cf'), `server_host = 127.0.0.1:${port}\ntimeout = 30\nbind_dn = ${BIND_DN}\nbind_pw = ${BIND_PW}\nquery_filter = (mail=%s)\n`), 1500],
      [cfs.get('bindwrong')!, 1500],
    ]
    for (const [file, maxMs] of cases) {
      const table = await ldapTypeWith({lookupTimeoutMs: 500}).open(file, openOptions(log))
      const t0 = Date.now()
      await assert.rejects(async () => table.lookup('alice@example.com'), (err: unknown) => {
        assert.ok(err instanceof TableError && err.kind === 'retry', String(err))
        assert.ok(!err.message.includes(BIND_PW), err.message)
        return true
      })
      assert.ok(Date.now() - t0 < maxMs, `${file}: took ${Date.now() - t0} ms`)
      await table.close?.()
    }
    // Postfix agrees that the silent server is a failure.
    const r = await runCommand(POSTMAP, ['-c', dir, '-q', 'alice@example.com', `ldap:${path.join(dir, 'silent-timeout.cf')}`])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /fatal: table ldap:.*: query error/)
  } finally {
    for (const s of sockets) s.destroy()
    silent.close()
  }
  for (const line of lines) assert.ok(!line.includes(BIND_PW) && !line.includes('s3cret'), line)
})

test('bind = sasl is refused at open with a clear message', async () => {
  const file = writeTable(path.join(dir, 'sasl.cf'), `server_host = ${slapd.url}\nbind = sasl\nsasl_mechs = EXTERNAL\n`)
  await assert.rejects(async () => ldapType.open(file, openOptions(quiet)),
    (err: unknown) => err instanceof TableError && err.kind === 'config' && /bind = sasl is not supported/.test(err.message))
})

test('ldaps:// and start_tls with a private CA answer as postmap -q does', async () => {
  const tlsDir = path.join(dir, 'tls')
  fs.mkdirSync(path.join(tlsDir, 'cadir'), {recursive: true})
  const f = (name: string): string => path.join(tlsDir, name)
  const openssl = async (...args: string[]): Promise<void> => {
    const r = await runCommand('openssl', args, {timeoutMs: 60_000})
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
  }
  fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n')
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=proxymap test CA')
  for (const who of ['server', 'client']) {
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=${who === 'server' ? '127.0.0.1' : 'proxymap client'}`)
    await openssl('x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${who}.pem`), '-days', '2', ...(who === 'server' ? ['-extfile', f('server.ext')] : []))
  }
  fs.copyFileSync(f('ca.pem'), path.join(tlsDir, 'cadir', 'ca.pem'))
  for (const name of fs.readdirSync(tlsDir)) fs.chmodSync(path.join(tlsDir, name), 0o755)

  const tlsSlapd = await startSlapd({
    suffix: SUFFIX, rootDn: ROOT_DN, rootPw: ROOT_PW, databaseLines: ACL, ldaps: true,
    globalLines: [`TLSCACertificateFile ${f('ca.pem')}`, `TLSCertificateFile ${f('server.pem')}`, `TLSCertificateKeyFile ${f('server.key')}`],
  })
  try {
    await tlsSlapd.add(fixtures())
    const ldaps = `ldaps://127.0.0.1:${tlsSlapd.ldapsPort}`
    const plain = `ldap://127.0.0.1:${tlsSlapd.port}`
    const common = `search_base = ${SUFFIX}\nquery_filter = (mail=%s)\nresult_attribute = uid, telephoneNumber\n`
    const variants: Record<string, string> = {
      ldapsCaFile: `server_host = ${ldaps}\ntls_ca_cert_file = ${f('ca.pem')}\ntls_require_cert = yes\n`,
      ldapsCaDir: `server_host = ${ldaps}\ntls_ca_cert_dir = ${f('cadir')}\ntls_require_cert = yes\n`,
      ldapsNoCheck: `server_host = ${ldaps}\ntls_require_cert = no\n`,
      ldapsUntrusted: `server_host = ${ldaps}\ntls_require_cert = yes\n`,
      ldapsBind: `server_host = ${ldaps}\ntls_ca_cert_file = ${f('ca.pem')}\nbind_dn = ${BIND_DN}\nbind_pw = ${BIND_PW}\n`,
      starttlsCaFile: `server_host = ${plain}\nstart_tls = yes\ntls_ca_cert_file = ${f('ca.pem')}\ntls_require_cert = yes\n`,
      starttlsNoCheck: `server_host = ${plain}\nstart_tls = yes\n`,
      starttlsUntrusted: `server_host = ${plain}\nstart_tls = yes\ntls_require_cert = yes\n`,
      starttlsWrongName: `server_host = ldap://localhost:${tlsSlapd.port}\nstart_tls = yes\ntls_ca_cert_file = ${f('ca.pem')}\ntls_require_cert = yes\n`,
      starttlsClientCert: `server_host = ${plain}\nstart_tls = yes\ntls_ca_cert_file = ${f('ca.pem')}\ntls_require_cert = yes\ntls_cert = ${f('client.pem')}\ntls_key = ${f('client.key')}\nbind_dn = ${ROOT_DN}\nbind_pw = ${ROOT_PW}\n`,
      starttlsV2: `server_host = ${plain}\nversion = 2\nstart_tls = yes\n`,
      starttlsDown: `server_host = ldap://127.0.0.1:1\nstart_tls = yes\n`,
    }
    const tables = Object.entries(variants).map(([name, body]): [string, string] =>
      [name, writeTable(path.join(dir, `tls-${name}.cf`), body + common)])
    const tally = await compareWithPostmap(tables, ['alice@example.com', 'bob@example.com', 'nobody@example.com', 'many@example.com'], 'ldap TLS')
    assert.ok(tally.found >= 15 && tally.error >= 8, JSON.stringify(tally))
  } finally {
    await tlsSlapd.destroy()
  }
})

test('tables with the same connection settings share one connection, also under concurrent lookups', async () => {
  const established = async (): Promise<number> => {
    const r = await runCommand('ss', ['-Htn', 'state', 'established', 'dst', `127.0.0.1:${slapd.port}`])
    return r.stdout.split('\n').filter((l) => l.trim().length > 0).length
  }
  const before = await established()
  // Different files, flags and result attributes; the same server, bind and TLS settings.
  const tables = [
    await ldapType.open(cfs.get('uidcn')!, openOptions(quiet)),
    await ldapType.open(cfs.get('multivalued')!, openOptions(quiet)),
    await ldapType.open(cfs.get('uidcn')!, {...openOptions(quiet), dictFlags: postmapQueryFlags(false)}),
  ]
  try {
    const answers = await Promise.all(tables.flatMap((t) => KEYS.map((k) => Promise.resolve(t.lookup(toBinary(k))).catch(() => 'error'))))
    assert.ok(answers.filter((a) => a !== undefined && a !== 'error').length >= 30, JSON.stringify(answers))
    assert.equal(await established() - before, 1)
  } finally {
    for (const t of tables) await t.close?.()
  }
  await waitForCount(established, before)
})

test('a search error of one table does not fail the lookups that share its connection', async () => {
  // The same connection settings as uidcn; a filter the client cannot even send. Postfix
  // drops the connection after such an error; lookups of other tables still waiting on the
  // shared connection must get their answers all the same.
  const broken = writeTable(path.join(dir, 'brokenfilter.cf'), `server_host = ${slapd.url}\nsearch_base = ${SUFFIX}\nquery_filter = (mail=%s\nresult_attribute = uid, cn\n`)
  const good = await ldapType.open(cfs.get('uidcn')!, openOptions(quiet))
  const bad = await ldapType.open(broken, openOptions(quiet))
  try {
    const keys = KEYS.map(toBinary)
    const expected: (string | undefined)[] = []
    for (const k of keys) expected.push(await good.lookup(k))
    assert.ok(expected.some((v) => v !== undefined), 'some keys are found')
    for (let round = 0; round < 20; round++) {
      // Interleaved, so that connections are dropped while good searches wait on them.
      const refused = (k: string, delayMs: number): Promise<string> => sleep(delayMs).then(() => bad.lookup(k))
        .then(() => assert.fail('a broken filter found something'), () => 'refused')
      const answers = await Promise.all(keys.flatMap((k, i) => [
        Promise.resolve(good.lookup(k)).catch((err: Error) => `error: ${err.message}`),
        refused(k, i % 7),
        refused(k, (i * 3) % 11),
      ]))
      assert.deepEqual(answers.filter((_, i) => i % 3 === 0), expected, `round ${round}`)
    }
  } finally {
    await good.close?.()
    await bad.close?.()
  }
})

async function waitForCount(count: () => Promise<number>, expected: number): Promise<void> {
  for (let i = 0; i < 100 && await count() !== expected; i++) await sleep(50)
  assert.equal(await count(), expected, 'the shared connection is closed with the last table')
}

test('identical lookups in flight are one search (counted in the log of a slapd with stats)', async () => {
  const counted = await startSlapd({suffix: SUFFIX, rootDn: ROOT_DN, rootPw: ROOT_PW, databaseLines: ACL, stats: true})
  try {
    await counted.add(fixtures())
    const file = writeTable(path.join(dir, 'counted.cf'), cfVariants(counted.url).uidcn)
    const table = await ldapType.open(file, openOptions(quiet))
    const searches = (key: string): number => counted.log.split('\n').filter((l) => l.includes(` SRCH `) && l.includes(`filter="(mail=${key})"`)).length
    try {
      // folded alike: one search; another key: its own
      const answers = await Promise.all(['alice@example.com', 'ALICE@example.com', 'alice@EXAMPLE.COM', 'alice@example.com', 'bob@example.com']
        .map((k) => Promise.resolve(table.lookup(k))))
      assert.equal(new Set(answers.slice(0, 4)).size, 1)
      assert.ok(answers[0] && answers[4] && answers[0] !== answers[4], String(answers))
      await waitFor(() => searches('bob@example.com') === 1 || undefined, 20_000, () => `no search for bob in the slapd log:\n${counted.log}`)
      assert.equal(searches('alice@example.com'), 1, counted.log)
      // not kept: the next lookup searches again
      await table.lookup('alice@example.com')
      await waitFor(() => searches('alice@example.com') === 2 || undefined, 20_000, () => `no second search:\n${counted.log}`)
    } finally {
      await table.close?.()
    }
  } finally {
    await counted.destroy()
  }
})
