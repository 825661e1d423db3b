// The approval lists under each Postfix release's rules: the same main.cf read as Postfix 3.7
// and as Postfix 3.11 read it (authorize_proxied_maps(), authorize_file_content() and
// authorize_rest_classes() of their proxymap.c), byte for byte; how the release is chosen; and
// the 3.10 / 3.11 defaults tables against the real postconf -d of those releases (Debian
// roots, see test/helpers/postfix-roots.ts). test/interop/approval-versions.test.ts compares
// the same kind of main.cf with the real proxymaps.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {AccessPolicy, approvedTables} from '../../src/lib/access/index.js'
import {
  POSTFIX_3_10_DEFAULTS, POSTFIX_3_11_DEFAULTS, POSTFIX_3_7_DEFAULTS, PROXYMAP_3_11_DAEMON_PARAMETERS,
  PROXYMAP_DAEMON_PARAMETERS, approvalRulesFor, choosePostfixVersion, invalidServiceNameMessage, loadMainConfig,
  rulesVersionOf, type PostfixVersion,
} from '../../src/lib/config/index.js'
import {parseMasterArgs} from '../../src/lib/server/master.js'
import {logicalLines} from '../../src/lib/util/source-text.js'
import {createPostfixInstance, postfixVersionUnavailable, type PostfixInstance} from '../helpers/postfix.js'

const rules37 = approvalRulesFor('3.7')
const rules311 = approvalRulesFor('3.11')

let dir: string
const file = (name: string, content: string | Buffer): string => {
  const p = path.join(dir, name)
  fs.writeFileSync(p, content)
  return p
}
const configWith = (mainCf: string) => {
  fs.writeFileSync(path.join(dir, 'main.cf'), mainCf)
  return loadMainConfig({configDir: dir})
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-access-versions-'))
})
after(() => {
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('one main.cf, the lists of Postfix 3.7 and of Postfix 3.11', () => {
  let policy37: AccessPolicy
  let policy311: AccessPolicy
  let policy310: AccessPolicy

  before(() => {
    const D = dir
    file('more', `# a comment line\nproxy:texthash:${D}/from-file\n  proxy:cdb:${D}/continued, ${D}/nested\n{proxy:bad\n`)
    file('nested', `proxy:hash:${D}/nested-table\0 proxy:hash:${D}/after-nul\n`)
    file('more-write', `proxy:lmdb:${D}/written\n`)
    const config = configWith([
      `smtpd_restriction_classes = senders, $extra_class nosuch`,
      `extra_class = helo_class`,
      `senders = check_sender_access proxy:hash:${D}/senders, ${D}/absent, permit`,
      `helo_class = check_helo_access proxy:lmdb:${D}/helo`,
      `virtual_alias_maps = proxy:hash:${D}/virtual ${D}/more [proxy:hash:${D}/bracketed] proxy:nocolon proxy: -proxy:hash:${D}/dash`,
      `smtpd_etrn_restrictions = check_client_access proxy:cdb:${D}/etrn`,
      `address_verify_map = proxy:$default_cache_db_type:$data_directory/verify`,
      `proxy_write_maps = $address_verify_map ${D}/more-write {proxy:btree:${D}/w}x`,
      '',
    ].join('\n'))
    policy37 = AccessPolicy.fromConfig(config, rules37)
    policy310 = AccessPolicy.fromConfig(config, approvalRulesFor('3.10'))
    policy311 = AccessPolicy.fromConfig(config, rules311)
  })

  test('3.7 approves only proxy: words of the lists themselves', () => {
    assert.deepEqual([...policy37.approvedTables('read')], ['unix:passwd.byname', `hash:${dir}/virtual`])
    // default_cache_db_type is no 3.7 parameter: "proxy::/var/lib/..." approves ":/var/lib/...".
    assert.deepEqual([...policy37.approvedTables('write')], [':/var/lib/postfix/verify'])
    assert.deepEqual(policy37.listWarnings('read'), [])
    assert.deepEqual(policy37.listWarnings('write'), [`bad proxy_write_maps parameter value: syntax error after '}' in "{proxy:btree:${dir}/w}x"`])
  })

  test('3.10 approves what 3.7 does', () => {
    for (const service of ['read', 'write'] as const) {
      assert.deepEqual([...policy310.approvedTables(service)], [...policy37.approvedTables(service)])
      assert.deepEqual(policy310.listWarnings(service), policy37.listWarnings(service))
    }
  })

  test('3.11 reads /file/name elements (logical lines, recursively), restriction classes, its longer default, and skips non-table words', () => {
    assert.deepEqual([...policy311.approvedTables('read')], [
      'unix:passwd.byname',
      `hash:${dir}/virtual`,
      `texthash:${dir}/from-file`,
      `cdb:${dir}/continued`,
      `hash:${dir}/nested-table`,
      // "proxy:nocolon" and "proxy:" pass the ':' test before their prefix goes
      'nocolon',
      '',
      // $smtpd_etrn_restrictions is in 3.11's default proxy_read_maps only
      `cdb:${dir}/etrn`,
      // smtpd_restriction_classes: senders, then $extra_class = helo_class; nosuch is not set
      `hash:${dir}/senders`,
      `lmdb:${dir}/helo`,
    ])
    // Restriction classes approve for proxymap only.
    assert.deepEqual([...policy311.approvedTables('write')], ['lmdb:/var/lib/postfix/verify', `lmdb:${dir}/written`])
  })

  test('3.11 warns naming the origin: the parameter, the file, or smtpd_restriction_classes; each reading of a file warns again', () => {
    const inMore = `bad syntax in ${dir}/more content: missing '}' in "{proxy:bad"`
    const nul = `${dir}/nested, line 1: text after null byte may be ignored`
    // virtual_alias_maps is read twice: $virtual_alias_maps and $virtual_alias_domains.
    assert.deepEqual(policy311.listWarnings('read'), [nul, inMore, nul, inMore, `open ${dir}/absent: No such file or directory`])
    assert.deepEqual(policy311.listWarnings('write'), [`bad syntax in proxy_write_maps content: syntax error after '}' in "{proxy:btree:${dir}/w}x"`])
  })

  test('3.11 records where each table came from', () => {
    assert.equal(policy311.originOf('read', `hash:${dir}/virtual`), 'proxy_read_maps')
    assert.equal(policy311.originOf('read', `cdb:${dir}/continued`), `${dir}/more`)
    assert.equal(policy311.originOf('read', `hash:${dir}/nested-table`), `${dir}/nested`)
    assert.equal(policy311.originOf('read', `lmdb:${dir}/helo`), 'smtpd_restriction_classes')
    assert.equal(policy311.originOf('write', `lmdb:${dir}/written`), `${dir}/more-write`)
  })

  test('the denial log is the same in every release', () => {
    assert.deepEqual(policy311.denialLog('read', 'hash:/x'), policy37.denialLog('read', 'hash:/x'))
  })
})

describe('the list walk, word by word', () => {
  test('words that 3.11 skips before anything else', () => {
    const list = '[proxy:hash:/a] -proxy:hash:/b proxy:hash:/c $proxy:hash:/d proxy:x proxy:'
    assert.deepEqual([...approvedTables(list, 'proxy_read_maps', rules37).tables], ['hash:/c'])
    assert.deepEqual([...approvedTables(list, 'proxy_read_maps', rules311).tables], ['hash:/c', 'x', ''])
  })

  test('a group\'s first word may be a /file/name (3.11); unionmap and pipemap may hold one', () => {
    const more = file('grouped', 'proxy:hash:/in-group\n')
    const inner = file('in-union', 'proxy:hash:/in-union\n')
    const list = `{ ${more} x=y } unionmap:{proxy:hash:/u, ${inner}} proxy:unionmap:{${inner}}`
    assert.deepEqual([...approvedTables(list, 'proxy_read_maps', rules311).tables], ['hash:/in-group', 'hash:/u', 'hash:/in-union', `unionmap:{${inner}}`])
    assert.deepEqual([...approvedTables(list, 'proxy_read_maps', rules37).tables], ['hash:/u', `unionmap:{${inner}}`])
  })

  test('a file that includes itself: one "Too many open files" per reading, its tables approved', () => {
    const loop = path.join(dir, 'loop')
    fs.writeFileSync(loop, `${loop}\nproxy:hash:/after-loop\n`)
    const result = approvedTables(`${loop} proxy:hash:/top`, 'proxy_read_maps', rules311)
    assert.deepEqual([...result.tables], ['hash:/after-loop', 'hash:/top'])
    assert.deepEqual(result.warnings, [`open ${loop}: Too many open files`])
  })

  test('a directory cannot be read; a missing file cannot be opened', () => {
    const sub = path.join(dir, 'subdir')
    fs.mkdirSync(sub, {recursive: true})
    assert.deepEqual(approvedTables(`${sub} ${dir}/missing`, 'proxy_read_maps', rules311).warnings, [
      `read ${sub}: Is a directory`,
      `open ${dir}/missing: No such file or directory`,
    ])
  })

  test('file lines follow readllines(): comments dropped, continuation joined, a leading-whitespace line skipped with a warning; a later # is a word', () => {
    const f = file('lines', '  proxy:hash:/leading\n#proxy:hash:/comment\nproxy:hash:/one\n#inner comment\n proxy:hash:/two\nproxy:hash:/three # proxy:hash:/four\n')
    const result = approvedTables(f, 'proxy_read_maps', rules311)
    assert.deepEqual([...result.tables], ['hash:/one', 'hash:/two', 'hash:/three', 'hash:/four'])
    assert.deepEqual(result.warnings, [`${f}: logical line must not start with whitespace: "  proxy:hash:/leading"`])
  })

  test('NUL bytes: numbered from each logical line when the reader keeps no counter (3.11\'s list files)', () => {
    const text = 'a\n b\0\n#c\nd\0e\n'
    const warnings = (mode: 'per-file' | 'per-read'): string[] => {
      const out: string[] = []
      for (const line of logicalLines(text, 'F', w => out.push(w), {nullByteWarnings: mode})) void line
      return out
    }
    assert.deepEqual(warnings('per-file'), ['F, line 1-3: text after null byte may be ignored', 'F, line 4: text after null byte may be ignored'])
    assert.deepEqual(warnings('per-read'), ['F, line 1-3: text after null byte may be ignored', 'F, line 1: text after null byte may be ignored'])
    const silent: string[] = []
    for (const line of logicalLines(text, 'F', w => silent.push(w))) void line
    assert.deepEqual(silent, [], '3.7 does not warn')
  })
})

describe('choosing the release', () => {
  const fakePostconf = (name: string, script: string): string => {
    const bin = path.join(dir, name)
    fs.mkdirSync(bin, {recursive: true})
    fs.writeFileSync(path.join(bin, 'postconf'), `#!/bin/sh\n${script}\n`, {mode: 0o755})
    return bin
  }

  test('--postfix-version, then $PROXYMAP_POSTFIX_VERSION, then the installed postconf, then 3.7', () => {
    const bin = fakePostconf('bin-311', 'echo 3.11.7')
    const config = configWith(`command_directory = ${bin}\n`)
    assert.deepEqual(choosePostfixVersion({option: '3.10', env: {PROXYMAP_POSTFIX_VERSION: '3.7'}, config}), {version: '3.10', source: 'option'})
    assert.deepEqual(choosePostfixVersion({env: {PROXYMAP_POSTFIX_VERSION: '3.7'}, config}), {version: '3.7', source: 'environment'})
    assert.deepEqual(choosePostfixVersion({env: {}, config}), {version: '3.11', source: 'installed', mailVersion: '3.11.7', postconf: path.join(bin, 'postconf')})
    const broken = fakePostconf('bin-broken', 'exit 1')
    assert.deepEqual(choosePostfixVersion({env: {}, config: configWith(`command_directory = ${broken}\n`)}),
      {version: '3.7', source: 'fallback', postconf: path.join(broken, 'postconf')})
  })

  test('without postconf in command_directory, /usr/sbin/postconf answers (the host\'s 3.7)', () => {
    const choice = choosePostfixVersion({env: {}, config: configWith(`command_directory = ${dir}/nothing-here\n`)})
    assert.equal(choice.postconf, '/usr/sbin/postconf')
    assert.equal(choice.source, 'installed')
    assert.equal(choice.version, rulesVersionOf(choice.mailVersion!))
  })

  test('bad explicit values are errors, not silently another release', () => {
    assert.throws(() => choosePostfixVersion({option: '3.9'}), /bad --postfix-version value "3.9": expected one of 3.7, 3.10, 3.11/)
    assert.throws(() => choosePostfixVersion({env: {PROXYMAP_POSTFIX_VERSION: '3.11.7'}}), /bad PROXYMAP_POSTFIX_VERSION value/)
  })

  test('mail_version to rules: before 3.9 3.7\'s, 3.9 and 3.10 3.10\'s, 3.11 and later 3.11\'s', () => {
    const cases: [string, PostfixVersion | undefined][] = [
      ['2.11.3', '3.7'], ['3.6.4', '3.7'], ['3.7.11', '3.7'], ['3.8.0-RC1', '3.7'], ['3.9.1', '3.10'],
      ['3.10.13', '3.10'], ['3.11.7', '3.11'], ['3.12.0', '3.11'], ['4.0', '3.11'], ['x', undefined],
    ]
    for (const [mailVersion, rules] of cases) assert.equal(rulesVersionOf(mailVersion), rules, mailVersion)
  })

  test('master.cf arguments may carry --postfix-version (both spellings) among Postfix\'s options', () => {
    assert.equal(parseMasterArgs(['-n', 'proxymap', '-t', 'unix', '-u', '--postfix-version', '3.11']).postfixVersion, '3.11')
    assert.equal(parseMasterArgs(['-n', 'proxymap', '--postfix-version=3.10', '-u']).postfixVersion, '3.10')
    const plain = parseMasterArgs(['-n', 'proxymap', '-t', 'unix'])
    assert.equal(plain.postfixVersion, undefined)
    assert.deepEqual(plain.rest, [])
    assert.throws(() => parseMasterArgs(['-n', 'proxymap', '--postfix-version']), /requires an argument/)
  })

  test('the bad-service-name fatal is each release\'s', () => {
    assert.equal(invalidServiceNameMessage('3.7', 'foo'), 'service name must be one of proxymap or proxymap')
    assert.equal(invalidServiceNameMessage('3.11', 'foo'), 'invalid service name: "foo" - service name must be "proxywrite" or "proxymap"')
  })
})

describe('the defaults tables are the real releases\' postconf -d', () => {
  const tables = {'3.10': POSTFIX_3_10_DEFAULTS, '3.11': POSTFIX_3_11_DEFAULTS} as const
  for (const version of ['3.10', '3.11'] as const) {
    test(`Postfix ${version}`, async (t) => {
      const why = await postfixVersionUnavailable(version)
      if (why) return t.skip(why)
      let pf: PostfixInstance | undefined
      try {
        pf = await createPostfixInstance({version, prefix: `pm-defaults-${version}-`})
        const names = Object.keys(tables[version])
        const r = await pf.run('postconf', ['-d', ...names])
        assert.equal(r.code, 0, r.stderr)
        const real = Object.fromEntries(r.stdout.split('\n').filter(Boolean).map(line => {
          const at = line.indexOf(' =')
          return [line.slice(0, at), line.slice(at + 2).replace(/^ /, '')]
        }))
        assert.deepEqual(tables[version], real)
        // What the table leaves out on purpose: only smtp_requiretls_policy, which names no proxy: table.
        const all = await pf.run('postconf', ['-d', '-h', 'proxy_read_maps'])
        const referenced = [...all.stdout.matchAll(/\$([a-z0-9_]+)/g)].map(m => m[1])
        assert.deepEqual(referenced.filter(n => !Object.hasOwn(tables[version], n) && !['myhostname', 'mydomain', 'mynetworks'].includes(n)),
          version === '3.11' ? ['smtp_requiretls_policy'] : [])
      } finally {
        await pf?.destroy()
      }
    })
  }

  test('3.7\'s proxy_read_maps is where 3.11\'s starts; the daemons know what their releases define', () => {
    assert.ok(POSTFIX_3_11_DEFAULTS.proxy_read_maps.startsWith(`${POSTFIX_3_7_DEFAULTS.proxy_read_maps} $smtpd_reject_filter_maps `))
    for (const name of ['smtpd_forbidden_commands', 'postscreen_forbidden_commands', 'smtpd_restriction_classes', 'default_cache_db_type']) {
      assert.ok(PROXYMAP_3_11_DAEMON_PARAMETERS.has(name), name)
      assert.ok(!PROXYMAP_DAEMON_PARAMETERS.has(name), name)
    }
  })
})
