// Every map type through proxy:, answered by Postfix's own proxymap and by ours: a real
// `postmap -q -` reads the same keys over one connection to each, and the outputs must be
// identical. (Through the proxy Postfix opens tables with the flags of the first request and
// the client folds keys, so these answers can differ from direct `postmap -q`; the point
// is that ours differ exactly where Postfix's do.) For each real Postfix version: 3.7's
// clients and proxymap, 3.10's and 3.11's (the v2 dialect) from their roots; unix: and
// environ: are left to 3.7, whose users and environment are the host's, as our server's.

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {POSTFIX_VERSIONS, PostfixInstance, PostfixVersion, createPostfixInstance, requirePostfix} from '../helpers/postfix.js'
import {theirsThenOurs} from '../helpers/compare.js'

const SOURCE = [
  'alice@example.com alice-box',
  'Bob@Example.com  bob box with spaces',
  'carol carol@example.org',
  'école école-box',
  'ÉCOLE upper-école',
  'straße strasse-box',
  'x  short',
  '',
].join('\n')

const ADDRESS_KEYS = ['alice@example.com', 'ALICE@EXAMPLE.COM', 'bob@example.com', 'Bob@Example.com', 'carol', 'CAROL',
  'école', 'ÉCOLE', 'Ecole', 'straße', 'STRASSE', 'x', 'X', 'nobody', 'user-joe@example.com', 'USER-JOE@example.com',
  'deny-me', 'a b c', 'postmaster@example.net', '日本語', 'abcd', 'abab@abab', '(a(b)c)', 'x.example.com']
const IP_KEYS = ['192.168.1.7', '192.168.2.1', '10.0.0.1', '10.1.2.3', '172.16.5.4', '127.0.0.1', '::1', '2001:db8::1',
  '2001:DB8::1', '2001:db8:1::5', 'fe80::1', '::ffff:192.168.1.7', '0.0.0.0', 'not-an-ip', '255.255.255.255']

interface Case {type: string; name: () => string; keys: string[]}
for (const version of POSTFIX_VERSIONS) suiteFor(version)

function suiteFor(version: PostfixVersion): void {
let pf: PostfixInstance
const cases: Case[] = []
const names = new Map<string, string>()

before(async () => {
  requirePostfix()
  // Both servers inherit this variable; master(8) removes it from the daemons' environment
  // (import_environment), and a standalone proxymap must too.
  process.env.pmtest_shell_only = 'from the shell'
  pf = await createPostfixInstance({version, prefix: `pm-through${version}-`, main: {
    smtputf8_enable: 'yes',
    import_environment: 'MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME pmtest_set=from-main.cf',
  }})
  names.set('texthash', await pf.createTable('texthash', 'th', SOURCE, {build: false}))
  names.set('cdb', await pf.createTable('cdb', 'cdbt', SOURCE))
  names.set('lmdb', await pf.createTable('lmdb', 'ldb', SOURCE))
  names.set('hash', await pf.createTable('hash', 'hsh', SOURCE))
  names.set('btree', await pf.createTable('btree', 'btr', SOURCE))
  names.set('regexp', await pf.createTable('regexp', 're', [
    '/^user-(.+)@example\\.com$/ mailbox-$1',
    '/^deny/ REJECT denied by regexp',
    'if /example/',
    '/^(alice|bob)@/ known-$1',
    'endif',
    '/^[[:upper:]]+$/ all-upper',
    '/^(a|ab)(c|bcd)(d*)$/ posix:$1/$2/$3',
    '/^((ab)*)@\\1$/ backref-$1-$2',
    '!/@/ no-at-sign',
    '',
  ].join('\n'), {build: false}))
  names.set('cidr', await pf.createTable('cidr', 'nets', [
    '192.168.1.0/24 lan', '10.0.0.0/8 ten', '!172.16.0.0/12 not-rfc1918-172', '2001:db8::/32 doc-v6',
    '::1 loopback6', '127.0.0.1 loopback', '',
  ].join('\n'), {build: false}))
  names.set('pcre', await pf.createTable('pcre', 're.pcre', [
    '/^user-(.+)@example\\.com$/ pcre-mailbox-$1',
    '/^(?i)CAROL$/ pcre-carol',
    '/^(?>a+)b?$/ atomic',
    '/\\Aalice\\b/ alice-word',
    '/^(\\w+)@\\1$/ pcre-backref-$1',
    '/^\\((?:[^()]|(?R))*\\)$/ pcre-recursion',
    '/^(a)?(?(1)bcd|xyz)$/ pcre-conditional-$1',
    '/(?<=x\\.|^www\\.)example/ pcre-lookbehind',
    '/^\\Qa b\\E/ pcre-quoted',
    '',
  ].join('\n'), {build: false}))
  names.set('inline', 'inline:{alice@example.com=inline-alice, {carol = inline carol}, École=inline-École}')
  names.set('unionmap', `unionmap:{${names.get('texthash')}, ${names.get('regexp')}}`)
  names.set('pipemap', `pipemap:{${names.get('regexp')}, inline:{mailbox-joe=joe-final, known-alice=alice-final}}`)
  names.set('unix', 'unix:passwd.byname')
  names.set('static', 'static:{static answer}')
  names.set('environ', 'environ:process')
  cases.push(
    ...['texthash', 'cdb', 'lmdb', 'hash', 'btree', 'regexp', 'pcre', 'inline', 'static', 'unionmap', 'pipemap'].map(type => ({type, name: () => names.get(type)!, keys: ADDRESS_KEYS})),
    {type: 'cidr', name: () => names.get('cidr')!, keys: IP_KEYS},
    ...(version !== '3.7' ? [] : [
      {type: 'unix', name: () => names.get('unix')!, keys: ['root', 'ROOT', 'nobody', 'postfix', 'no-such-user', 'daemon']},
      {type: 'environ', name: () => names.get('environ')!, keys: ['pmtest_set', 'PMTEST_SET', 'pmtest_shell_only', 'home', 'path', 'lang', 'tz', 'user']},
    ]),
  )
  await pf.approve({read: cases.map(c => c.name()), write: []})
})

after(async () => {
  await pf?.destroy()
})

async function runAll(): Promise<Map<string, {stdout: string; stderr: string; code: number}>> {
  const out = new Map<string, {stdout: string; stderr: string; code: number}>()
  for (const c of cases) {
    const r = await pf.postmap(['-q', '-', `proxy:${c.name()}`], {input: c.keys.join('\n') + '\n', timeoutMs: 20_000})
    out.set(c.type, {stdout: r.stdout, stderr: r.stderr, code: r.code})
  }
  return out
}

test(`every map type answers through our proxymap exactly as through Postfix ${version}'s`, async () => {
  const {theirs, ours} = await theirsThenOurs(pf, runAll)
  let compared = 0
  for (const c of cases) {
    const t = theirs.get(c.type)!
    assert.ok(t.stdout.length > 0, `${c.type}: Postfix found something (the case is not vacuous): ${t.stderr}`)
    assert.deepEqual(ours.get(c.type), t, `${c.type} through proxy:`)
    compared += c.keys.length
    console.log(`# ${version} ${c.type}: ${c.keys.length} keys through proxy:, ${t.stdout.split('\n').length - 1} hits, same as Postfix`)
  }
  console.log(`# ${compared} keys compared through proxy: in all`)
})
}
