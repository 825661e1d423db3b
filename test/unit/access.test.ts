// Approval lists (proxy_read_maps / proxy_write_maps). The tokenization cases are read off
// Postfix 3.7's authorize_proxied_maps(), mystrtokq() and extpar(); the differential part asks a
// real Postfix 3.7.11 proxymap/proxywrite (private instance) which names it approves, and
// compares its log lines with ours. Real Postfix must be installed: otherwise this fails.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { AccessPolicy, approvedTables } from '../../src/lib/access/index.js'
import { MacroExpansionError, PostfixMainConfig, loadMainConfig } from '../../src/lib/config/index.js'
import { POSTCONF, createPostfixInstance, runCommand, waitFor, type PostfixInstance } from '../helpers/postfix.js'

describe('list tokenization, as authorize_proxied_maps() does it', () => {
  test('entries split on commas and whitespace, never inside {}; a stray } is an ordinary character', () => {
    const { tables } = approvedTables(' proxy:a:1, proxy:b:2\tproxy:c:{x y},,proxy:d:{f, {g h}}i\n}proxy:e:5 ,proxy:f:}6')
    assert.deepEqual([...tables], ['a:1', 'b:2', 'c:{x y}', 'd:{f, {g h}}i', 'f:}6'])
    assert.deepEqual([...approvedTables('').tables], [])
  })

  test('only proxy: entries count, all proxy: prefixes go, and a name must contain ":"', () => {
    const { tables, warnings } = approvedTables(
      'hash:/plain proxy:hash:/a,proxy:proxy:proxy:btree:/b proxy:nocolon proxy: proxy:proxy:x:y',
    )
    assert.deepEqual([...tables], ['hash:/a', 'btree:/b', 'x:y'])
    assert.deepEqual(warnings, [])
  })

  test('names are kept byte for byte, spaces inside {} included', () => {
    const { tables } = approvedTables('proxy:inline:{alice=inline-alice, bob=inline-bob} proxy:inline:{ k = v }')
    assert.deepEqual([...tables], ['inline:{alice=inline-alice, bob=inline-bob}', 'inline:{ k = v }'])
  })

  test('a { ... } group contributes its first word only', () => {
    const { tables } = approvedTables(
      '{ proxy:hash:/first attr=value } {proxy:hash:/tight} { hash:/not-proxy proxy:hash:/second } { } {}',
    )
    assert.deepEqual([...tables], ['hash:/first', 'hash:/tight'])
  })

  test('unionmap:{...} and pipemap:{...} are searched, recursively; without {} they are skipped', () => {
    const { tables } = approvedTables(
      'unionmap:{proxy:hash:/u1, hash:/u2, unionmap:{proxy:hash:/u3}} pipemap:{proxy:hash:/p1,proxy:hash:/p2} ' +
        'pipemap:proxy:hash:/p3 { unionmap:{proxy:hash:/in-group} } proxy:unionmap:{proxy:hash:/kept-whole}',
    )
    assert.deepEqual([...tables], [
      'hash:/u1',
      'hash:/u3',
      'hash:/p1',
      'hash:/p2',
      'hash:/in-group',
      'unionmap:{proxy:hash:/kept-whole}',
    ])
  })

  test('syntax errors give Postfix\'s warnings and the entry is skipped', () => {
    const read = approvedTables('{proxy:hash:/a}x proxy:hash:/ok unionmap:{proxy:hash:/b}y')
    assert.deepEqual([...read.tables], ['hash:/ok'])
    assert.deepEqual(read.warnings, [
      'bad proxy_read_maps parameter value: syntax error after \'}\' in "{proxy:hash:/a}x"',
      'bad proxy_read_maps parameter value: syntax error after \'}\' in "{proxy:hash:/b}y"',
    ])
    // An unclosed brace swallows the rest of the list.
    const write = approvedTables('proxy:hash:/w unionmap:{proxy:hash:/c proxy:hash:/d', 'proxy_write_maps')
    assert.deepEqual([...write.tables], ['hash:/w'])
    assert.deepEqual(write.warnings, [
      'bad proxy_write_maps parameter value: missing \'}\' in "{proxy:hash:/c proxy:hash:/d"',
    ])
  })
})

describe('AccessPolicy', () => {
  const configWith = (settings: Record<string, string>): PostfixMainConfig =>
    new PostfixMainConfig({ configDir: '/nonexistent', mainCfPath: '/nonexistent/main.cf', parameters: new Map(Object.entries(settings)) })

  test('read and write lists are separate; requested names may carry proxy: prefixes', () => {
    const policy = AccessPolicy.fromConfig(
      configWith({ proxy_read_maps: 'proxy:hash:/r', proxy_write_maps: 'proxy:btree:$data_directory/w' }),
    )
    assert.equal(policy.isApproved('read', 'hash:/r'), true)
    assert.equal(policy.isApproved('read', 'proxy:hash:/r'), true)
    assert.equal(policy.isApproved('write', 'hash:/r'), false)
    assert.equal(policy.isApproved('write', 'btree:/var/lib/postfix/w'), true)
    assert.equal(policy.isApproved('read', 'btree:/var/lib/postfix/w'), false)
    assert.equal(policy.parameterFor('read'), 'proxy_read_maps')
    assert.equal(policy.parameterFor('write'), 'proxy_write_maps')
  })

  test('the default lists approve proxy:unix:passwd.byname for reading and nothing for writing', () => {
    const policy = AccessPolicy.fromConfig(configWith({}))
    assert.deepEqual([...policy.approvedTables('read')], ['unix:passwd.byname'])
    assert.deepEqual([...policy.approvedTables('write')], [])
  })

  test('denial log lines are Postfix\'s', () => {
    const policy = AccessPolicy.fromConfig(configWith({}))
    assert.deepEqual(policy.denialLog('read', 'hash:/etc/postfix/x'), [
      'request for unapproved table: "hash:/etc/postfix/x"',
      'to approve this table for read-only access, list proxy:hash:/etc/postfix/x in main.cf:proxy_read_maps',
    ])
    assert.deepEqual(policy.denialLog('write', 'btree:/w'), [
      'request for unapproved table: "btree:/w"',
      'to approve this table for read-write access, list proxy:btree:/w in main.cf:proxy_write_maps',
    ])
  })

  test('a list that refers to itself cannot be loaded', () => {
    assert.throws(
      () => AccessPolicy.fromConfig(configWith({ proxy_read_maps: '$proxy_read_maps proxy:hash:/x' })),
      (error: unknown) => error instanceof MacroExpansionError && /proxy_read_maps/.test(error.message),
    )
  })

  test('lists are expanded as proxymap sees them, not as postconf shows them', () => {
    const config = configWith({
      proxy_read_maps: '$address_verify_transport_maps $virtual_alias_domains',
      transport_maps: 'proxy:hash:/t',
      virtual_maps: 'proxy:hash:/v',
    })
    const policy = AccessPolicy.fromConfig(config)
    assert.equal(policy.isApproved('read', 'hash:/t'), false)
    assert.equal(policy.isApproved('read', 'hash:/v'), true)
    assert.ok(config.get('proxy_read_maps').includes('proxy:hash:/t'))
  })
})

// ------------------------------------------------------------------ against real proxymap

const PROXYMAP_STATUS = { OK: 0, BAD: 3, DENY: 4 } as const

/** Sends one "open" request the way Postfix 3.7's dict_proxy client does; resolves to the status. */
function openThroughProxy(socketPath: string, table: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath)
    let received = Buffer.alloc(0)
    let requested = false
    socket.setTimeout(5000, () => socket.destroy(new Error(`no answer from ${socketPath} for ${table}`)))
    socket.once('error', reject)
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk])
      const lists = completeAttributeLists(received)
      if (lists.length >= 1 && !requested) {
        assert.equal(lists[0].get('protocol'), 'proxymap_protocol')
        socket.write(encodeAttributes([['request', 'open'], ['table', table], ['flags', '0']]))
        requested = true
      }
      if (lists.length >= 2) {
        socket.end()
        resolve(Number(lists[1].get('status')))
      }
    })
  })
}

// attr_print0 format: name NUL value NUL ..., and one more NUL ends the list.
function encodeAttributes(pairs: Array<[string, string]>): Buffer {
  return Buffer.from(`${pairs.map(([name, value]) => `${name}\0${value}\0`).join('')}\0`)
}

function completeAttributeLists(bytes: Buffer): Array<Map<string, string>> {
  const strings = bytes.toString('utf8').split('\0')
  strings.pop() // text after the last NUL is incomplete
  const lists: Array<Map<string, string>> = []
  let current = new Map<string, string>()
  for (let index = 0; index < strings.length; ) {
    if (strings[index] === '') {
      lists.push(current)
      current = new Map()
      index += 1
    } else if (index + 1 < strings.length) {
      current.set(strings[index], strings[index + 1])
      index += 2
    } else {
      break
    }
  }
  return lists
}

describe('approval decisions of a real Postfix 3.7 proxymap and proxywrite', () => {
  let instance: PostfixInstance
  let policy: AccessPolicy
  let dataDir: string

  // [service, table requested, approved? (as read off the Postfix source; real Postfix decides)]
  const probes = (): Array<['read' | 'write', string, boolean]> => [
    ['read', 'inline:{alice=inline-alice, bob=inline-bob}', true],
    ['read', 'inline:{alice=inline-alice,bob=inline-bob}', false],
    ['read', 'inline:{ alice=inline-alice, bob=inline-bob }', false],
    ['read', 'hash:/nonexistent/double', true],
    ['read', 'proxy:proxy:hash:/nonexistent/double', true],
    ['read', 'HASH:/nonexistent/double', false],
    ['read', 'hash:/nonexistent/double ', false],
    ['read', 'hash:/nonexistent/comma', true],
    ['read', 'hash:/nonexistent/grouped', true],
    ['read', 'hash:/nonexistent/grouped2', true],
    ['read', 'hash:/nonexistent/grouped3', false],
    ['read', 'hash:/nonexistent/second-in-group', false],
    ['read', 'hash:/nonexistent/u1', true],
    ['read', 'hash:/nonexistent/u2', false],
    ['read', 'hash:/nonexistent/u3', true],
    ['read', 'hash:/nonexistent/p2', true],
    ['read', 'hash:/nonexistent/p3', true],
    ['read', 'hash:/nonexistent/p4', false],
    ['read', 'hash:/nonexistent/noproxy', false],
    ['read', 'hash:/nonexistent/virtual', true], // $virtual_alias_domains → $virtual_alias_maps → $virtual_maps
    ['read', 'hash:/nonexistent/relocated', true],
    ['read', 'hash:/nonexistent/conditional', true],
    ['read', 'hash:/nonexistent/transport', false], // $address_verify_transport_maps: unknown to proxymap
    ['read', 'hash:/nonexistent/tls_policy', false], // $tlsproxy_client_policy_maps: unknown to proxymap
    ['read', 'regexp:/nonexistent/header_checks', false], // $mime_header_checks: unknown to proxymap
    ['read', 'hash:/nonexistent/unclosed', false],
    ['read', `btree:${dataDir}/w1`, false],
    ['write', `btree:${dataDir}/w1`, true],
    ['write', 'lmdb:/nonexistent/w2', true],
    ['write', `btree:${dataDir}/verify`, true],
    ['write', 'hash:/nonexistent/w3', false],
    ['write', 'inline:{alice=inline-alice, bob=inline-bob}', false],
    ['write', 'hash:/nonexistent/double', false],
  ]

  const settings = [
    'virtual_maps = proxy:hash:/nonexistent/virtual',
    'header_checks = proxy:regexp:/nonexistent/header_checks',
    'transport_maps = proxy:hash:/nonexistent/transport',
    'smtp_tls_policy_maps = proxy:hash:/nonexistent/tls_policy',
    'relocated_maps = proxy:hash:/nonexistent/relocated',
    'address_verify_map = proxy:btree:$data_directory/verify',
    'proxy_read_maps =',
    '  proxy:inline:{alice=inline-alice, bob=inline-bob}',
    '  proxy:proxy:hash:/nonexistent/double,proxy:hash:/nonexistent/comma',
    '  { proxy:hash:/nonexistent/grouped, x=y }',
    '  {proxy:hash:/nonexistent/grouped2}',
    '  { hash:/nonexistent/grouped3 proxy:hash:/nonexistent/second-in-group }',
    '  unionmap:{proxy:hash:/nonexistent/u1, hash:/nonexistent/u2, unionmap:{proxy:hash:/nonexistent/u3}}',
    '  pipemap:{proxy:hash:/nonexistent/p2,proxy:hash:/nonexistent/p3}',
    '  pipemap:proxy:hash:/nonexistent/p4',
    '  hash:/nonexistent/noproxy proxy:nocolon {bad}x',
    '  $virtual_alias_domains $relocated_maps $address_verify_transport_maps',
    '  $tlsproxy_client_policy_maps $mime_header_checks',
    '  ${relocated_maps?{proxy:hash:/nonexistent/conditional}}',
    '  unionmap:{proxy:hash:/nonexistent/unclosed',
    'proxy_write_maps = proxy:btree:$data_directory/w1, proxy:lmdb:/nonexistent/w2 $address_verify_map',
    '  {proxy:hash:/nonexistent/w3}x',
  ]

  before(async () => {
    instance = await createPostfixInstance({ prefix: 'proxymap-access-test-' })
    dataDir = instance.data
    const mainCfPath = path.join(instance.etc, 'main.cf')
    const harnessSettings = fs
      .readFileSync(mainCfPath, 'utf8')
      .split('\n')
      .filter((line) => !/^proxy_(read|write)_maps\s*=/.test(line))
    await instance.writeFile('main.cf', [...harnessSettings, ...settings, ''].join('\n'))
    policy = AccessPolicy.fromConfig(loadMainConfig({ configDir: instance.etc }))
    await instance.startPostfix()
  })

  after(async () => {
    await instance?.destroy()
  })

  test('every probe gets the same decision from real Postfix and from AccessPolicy', async () => {
    const disagreements: string[] = []
    for (const [service, table, expected] of probes()) {
      const socketPath = instance.socketPath(service === 'read' ? 'proxymap' : 'proxywrite')
      const status = await openThroughProxy(socketPath, table)
      assert.ok(status === PROXYMAP_STATUS.OK || status === PROXYMAP_STATUS.DENY, `${service} ${table}: status ${status}`)
      const realApproved = status === PROXYMAP_STATUS.OK
      if (realApproved !== policy.isApproved(service, table) || realApproved !== expected) {
        disagreements.push(
          `${service} "${table}": real Postfix ${realApproved}, AccessPolicy ${policy.isApproved(service, table)}, expected ${expected}`,
        )
      }
    }
    assert.deepEqual(disagreements, [])
  })

  test('a name without ":" is BAD, not DENY, and is never approved', async () => {
    assert.equal(await openThroughProxy(instance.socketPath('proxymap'), 'nocolon'), PROXYMAP_STATUS.BAD)
    assert.equal(policy.isApproved('read', 'nocolon'), false)
  })

  test('the denial and list warnings in the real maillog are the ones AccessPolicy produces', async () => {
    const denied = probes().filter(([service, table]) => !policy.isApproved(service, table))
    const expectedDenialLines = denied.flatMap(([service, table]) => policy.denialLog(service, table))
    const loggedWarnings = (): string[] =>
      [...instance.maillog().matchAll(/ postfix-harness\/proxymap\[\d+\]: warning: (.*)$/gm)].map((match) => match[1])
    await waitFor(
      () => expectedDenialLines.every((line) => loggedWarnings().includes(line)),
      5000,
      () => `maillog lacks some of:\n${expectedDenialLines.join('\n')}\n--- maillog:\n${instance.maillog()}`,
    )
    const logged = loggedWarnings()
    const loggedDenialLines = logged.filter((line) => /^(request for unapproved table|to approve this table)/.test(line))
    assert.deepEqual(new Set(loggedDenialLines), new Set(expectedDenialLines))
    const loggedListWarnings = new Set(logged.filter((line) => line.startsWith('bad proxy_')))
    assert.deepEqual(loggedListWarnings, new Set([...policy.listWarnings('read'), ...policy.listWarnings('write')]))
    assert.equal(loggedListWarnings.size, 3)
  })

  test('postconf -x shows more approved tables than proxymap really approves', async () => {
    const run = await runCommand(POSTCONF, ['-c', instance.etc, '-x', '-h', 'proxy_read_maps'])
    assert.equal(run.code, 0, run.stderr)
    const shownByPostconf = approvedTables(run.stdout.trim()).tables
    assert.ok(shownByPostconf.has('hash:/nonexistent/transport'))
    assert.equal(policy.isApproved('read', 'hash:/nonexistent/transport'), false)
  })
})
