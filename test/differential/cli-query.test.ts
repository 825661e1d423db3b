// The CLI itself against postmap: `proxymap query -c DIR TYPE:NAME -` and real
// `postmap -c DIR -q - TYPE:NAME` read the same keys and must print the same lines with
// the same exit code, for every file-based map type. (The per-type differential suites
// compare the same code path in-process with many more cases.)

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {PROJECT_BIN, PostfixInstance, createPostfixInstance, requirePostfix, runCommand} from '../helpers/postfix.js'

const SOURCE = 'alice@example.com alice-box\nBob@Example.com bob box\nécole école-box\nx short\n'
const KEYS = ['alice@example.com', 'ALICE@EXAMPLE.COM', 'bob@example.com', 'BOB@EXAMPLE.COM', 'école', 'ÉCOLE', 'x', 'nobody',
  'user-joe@example.com', '192.168.1.7', '10.9.9.9', '2001:db8::1', 'root', 'no-such-user-here']

let pf: PostfixInstance
const tables: string[] = []

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-cliquery-', main: {smtputf8_enable: 'yes'}})
  tables.push(
    await pf.createTable('texthash', 'th', SOURCE, {build: false}),
    await pf.createTable('cdb', 'c', SOURCE),
    await pf.createTable('lmdb', 'l', SOURCE),
    await pf.createTable('hash', 'h', SOURCE),
    await pf.createTable('btree', 'b', SOURCE),
    await pf.createTable('regexp', 're', '/^user-(.+)@example\\.com$/ mailbox-$1\n/^[[:upper:]@.]+$/ upper\n', {build: false}),
    await pf.createTable('pcre', 'pc', '/^(?i)bob@/ pcre-bob\n/\\Aécole\\z/ pcre-école\n', {build: false}),
    await pf.createTable('cidr', 'ci', '192.168.1.0/24 lan\n2001:db8::/32 doc\n', {build: false}),
    'inline:{alice@example.com=inline-alice, x=inline-x}',
    'static:{static answer}',
    'unix:passwd.byname',
    'fail:x',
  )
})

after(async () => {
  await pf?.destroy()
})

test('proxymap query and postmap -q agree on every file map type', async () => {
  const input = KEYS.join('\n') + '\n'
  let compared = 0
  for (const table of tables) {
    const theirs = await pf.postmap(['-q', '-', table], {input})
    const ours = await runCommand('node', [PROJECT_BIN, 'query', '-c', pf.etc, table, '-'], {input, timeoutMs: 30_000})
    assert.equal(ours.stdout, theirs.stdout, `${table}: stdout`)
    if (theirs.code === 0 || theirs.stdout !== '') assert.equal(ours.code, theirs.code, `${table}: exit code; ${ours.stderr}`)
    else assert.notEqual(ours.code, 0, `${table}: postmap failed (${theirs.stderr.trim()}), ours must too`)
    compared += KEYS.length
  }
  console.log(`# ${compared} keys compared between proxymap query and postmap -q over ${tables.length} tables`)
})

test("a table's warnings on the CLI's stderr read as postmap's, with our name: no date, no host", async () => {
  const table = await pf.createTable('regexp', 'bad-rule', '/^a$/ first\n/(/ unmatched\n', {build: false})
  const theirs = await pf.postmap(['-q', 'a', table])
  const ours = await runCommand('node', [PROJECT_BIN, 'query', '-c', pf.etc, table, 'a'], {timeoutMs: 30_000})
  assert.match(theirs.stderr, /^postmap: warning: regexp map .*, line 2: /)
  assert.equal(ours.stdout, theirs.stdout)
  assert.equal(ours.stderr, theirs.stderr.replaceAll('postmap: ', 'proxymap: '))
})
