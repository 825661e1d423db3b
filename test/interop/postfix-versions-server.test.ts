// proxymap serve as the server of real Postfix 3.10 and 3.11 clients: the same client
// operations (postmap -q -, -s, -i -r, -d, postalias -q, -i) are run through a wire recorder,
// once against that version's own proxymap/proxywrite and once against ours on the same
// configuration and files; the two conversations must be the same bytes (3.11's v2 reply
// flags included, unavailable and unapproved tables too), and the clients must print the
// same. Then one serve answers 3.7 and 3.11 clients at the same time.

import assert from 'node:assert/strict'
import {test} from 'node:test'
import {POSTMAP, RunResult, instancesDestroyedAfterTests, runCommand, sleep} from '../helpers/postfix.js'
import {startWireRecorder} from '../helpers/wire-recorder.js'

const SOURCE = 'alice@example.com alice-box\nBob@Example.com bob box\ncarol carol@example.org\nécole école-box\nÉCOLE upper\n'
const KEYS = 'alice@example.com\nBOB@EXAMPLE.COM\nbob@example.com\nCarol\nx\n10.1.2.3\nÉcole\nécole\n'

const instance = instancesDestroyedAfterTests()

interface Step {label: string; run: () => Promise<RunResult>}

/**
 * Postfix's proxymap opens a table afresh after its file's mtime moved to another second
 * (postfix-restart-view.test.ts), and so does ours: each group of writes starts at the
 * beginning of a second, so that in both sessions its writes fall within one second.
 */
const startOfNextSecond = (): Promise<void> => sleep(1000 - (Date.now() % 1000) + 20)

for (const version of ['3.10', '3.11'] as const) {
  test(`real Postfix ${version} clients get from proxymap serve the bytes ${version}'s proxymap sends`, async () => {
    // One proxymap process for the whole session, as one serve: with several (or one that
    // retires after max_use clients or max_idle seconds), which process a client meets, and
    // so whether its open reply shows a fresh instance's flags, depends on timing.
    const server = await instance(version, `pm-srv${version}-`,
      {proxymapProcesses: 1, main: {max_use: '100000', max_idle: '3600'}})
    const client = await instance(version, `pm-srv${version}-client-`)
    const read = new Map<string, string>()
    read.set('texthash', await server.createTable('texthash', 'th', SOURCE, {build: false}))
    for (const type of ['lmdb', 'cdb', 'hash', 'btree']) read.set(type, await server.createTable(type, `t-${type}`, SOURCE))
    read.set('pcre', await server.createTable('pcre', 'p.pcre', '/^bob@/ pcre-bob\n/^(?i)carol$/ pcre-carol\n', {build: false}))
    read.set('cidr', await server.createTable('cidr', 'c.cidr', '10.0.0.0/8 ten\n', {build: false}))
    read.set('inline', 'inline:{alice@example.com=inline-alice, École=inline-école}')
    read.set('missing lmdb', `lmdb:${server.etc}/absent`)
    read.set('missing texthash', `texthash:${server.etc}/absent-too`)
    const write = new Map<string, string>()
    for (const type of ['lmdb', 'hash', 'btree']) write.set(type, await server.createTable(type, `${server.data}/w-${type}`, SOURCE))
    await server.approve({read: [...read.values(), ...write.values()], write: [...write.values()]})
    const unapproved = await server.createTable('lmdb', 'not-listed', SOURCE)

    const steps: Step[] = []
    const on = (table: string): string => `proxy:${table}`
    for (const [type, table] of [...read, ['unapproved', unapproved] as const]) {
      steps.push({label: `${type}: postmap -q -`, run: () => client.postmap(['-q', '-', on(table)], {input: KEYS})})
      // A real proxymap dies on a sequence of a table type that has none (pcre, cidr).
      if (type !== 'pcre' && type !== 'cidr') steps.push({label: `${type}: postmap -s`, run: () => client.postmap(['-s', on(table)])})
    }
    for (const [type, table] of write) {
      steps.push(
        {label: `${type}: postmap -i -r`, run: async () => {
          await startOfNextSecond()
          return client.postmap(['-i', '-r', on(table)], {input: 'New@Example.com new\n', asPostfix: true})
        }},
        {label: `${type}: postmap -q`, run: () => client.postmap(['-q', 'new@example.com', on(table)])},
        {label: `${type}: postmap -d`, run: () => client.postmap(['-d', 'carol', on(table)], {asPostfix: true})},
        {label: `${type}: postalias -q`, run: () => client.postalias(['-q', 'alice@example.com', on(table)])},
        {label: `${type}: postalias -i`, run: () => client.postalias(['-i', on(table)], {input: 'someone: else\n', asPostfix: true})},
      )
    }

    const recorder = await startWireRecorder((['proxymap', 'proxywrite'] as const).map(service =>
      ({service, listen: client.socketPath(service), forward: server.socketPath(service)})))
    const session = async (): Promise<{label: string; stdout: string; code: number; wire: string[]}[]> => {
      const results = []
      for (const step of steps) {
        recorder.clear()
        const r = await step.run()
        // Hash-table (texthash, inline) sequences come in a random order in every process.
        const wire = recorder.transcript().map(line => line.includes('request\\0sequence')
          ? line.split(' | ').sort().join(' | ') : line)
        // postalias -i stores a YP_LAST_MODIFIED time stamp.
        results.push({label: step.label, stdout: r.stdout.split('\n').sort().join('\n'), code: r.code,
          wire: wire.map(line => line.replace(/YP_LAST_MODIFIED\\0value\\0\d+/g, 'YP_LAST_MODIFIED\\0value\\0T'))})
      }
      return results
    }
    try {
      await server.startPostfix()
      const theirs = await session()
      const deaths = server.maillog().split('\n').filter(l => /panic|fatal|exit status|throttling/.test(l))
      assert.deepEqual(deaths, [], `no real ${version} proxymap died`)
      await server.stopPostfix()
      for (const table of write.values()) await server.createTable(table.split(':')[0]!, table.slice(table.indexOf(':') + 1), SOURCE)
      await server.startOurs()
      const ours = await session()
      for (let i = 0; i < steps.length; i++) assert.deepEqual(ours[i], theirs[i], `${version}: ${steps[i]!.label}`)
      const found = theirs.filter(r => r.code === 0 && r.stdout.trim() !== '').length
      assert.ok(found >= 10, `the steps are not vacuous (${found} of ${steps.length} answered)`)
      console.log(`# ${version}: ${steps.length} client operations, ${theirs.reduce((n, r) => n + r.wire.length, 0)} connections, byte-identical`)
    } finally {
      await recorder.close()
      await server.stopOurs()
      await server.stopPostfix()
    }
  })
}

test('one proxymap serve answers Postfix 3.7 and 3.11 clients at the same time', async () => {
  const pf = await instance('3.11', 'pm-mixed-')
  const entries = Array.from({length: 300}, (_, i) => `user${i}@example.com box-${i}`)
  const table = await pf.createTable('lmdb', 'mixed', `${entries.join('\n')}\n`)
  await pf.approve({read: [table]})
  await pf.startOurs()
  try {
    const keys = `${Array.from({length: 300}, (_, i) => (i % 2 ? `USER${i}@example.com` : `user${i}@example.com`)).join('\n')}\nnobody\n`
    const expected = Array.from({length: 300}, (_, i) => `${i % 2 ? `USER${i}@example.com` : `user${i}@example.com`}\tbox-${i}\n`).join('')
    const old37 = (): Promise<RunResult> => runCommand(POSTMAP, ['-c', pf.etc, '-q', '-', `proxy:${table}`], {input: keys, timeoutMs: 30_000})
    const new311 = (): Promise<RunResult> => pf.postmap(['-q', '-', `proxy:${table}`], {input: keys, timeoutMs: 30_000})
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all([old37(), new311(), old37(), new311()])
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, `round ${round} client ${i} (${i % 2 ? '3.11' : '3.7'}): ${r.stderr}`)
        assert.equal(r.stdout, expected, `round ${round} client ${i} (${i % 2 ? '3.11' : '3.7'})`)
      }
    }
  } finally {
    await pf.stopOurs()
  }
})
