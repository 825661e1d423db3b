// Issue #17: the CLI as a Postfix administrator expects it. Against a copy of
// examples/postfix served by our `proxymap serve` (as `npm start` serves it), and real
// postmap where it answers the same question: exit codes that tell configuration errors
// from RETRY, DENY hints that name the exact entry, list and check-access command,
// check-access on unknown types and on a running service that has not read main.cf
// again, a fix that replaces the misspelt entry, update's value words, read-only types,
// a bare table name, progress of a long dump, usage lines and "did you mean".

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {POSTMAP, PROJECT_BIN, createPostfixInstance, runCommand, type PostfixInstance, type RunResult} from '../helpers/postfix.js'
import {exampleCheckout, type ExampleCheckout} from '../helpers/example-server.js'
import {runOnTerminal} from '../helpers/terminal.js'

describe('the CLI as an administrator expects it (issue #17)', () => {
  let checkout: ExampleCheckout
  let virtual: string

  /** `proxymap ARGS` from the example checkout, in a pipe. */
  const proxymap = (args: string[], input?: string): Promise<RunResult> =>
    runCommand(process.execPath, [PROJECT_BIN, ...args], {cwd: checkout.dir, env: checkout.env, input, timeoutMs: 30_000})
  const json = (r: RunResult): Record<string, any> => {
    try {
      return JSON.parse(r.stdout) as Record<string, any>
    } catch {
      throw new Error(`not JSON (exit ${r.code}): stdout=${r.stdout} stderr=${r.stderr}`)
    }
  }
  const mainCf = (): string => path.join(checkout.configDir, 'main.cf')

  before(async () => {
    checkout = exampleCheckout('pm-polish-')
    virtual = `texthash:${checkout.configDir}/virtual`
    await checkout.serve()
  })

  after(async () => {
    await checkout?.destroy()
  })

  test('an unknown table type is a configuration error (exit 2) with the types and a suggestion, not RETRY', async () => {
    const q = await proxymap(['query', '-c', 'examples/postfix', 'nosuchtype:/x', 'k'])
    assert.equal(q.code, 2, q.stderr)
    assert.match(q.stderr, /unsupported dictionary type: nosuchtype/)
    assert.match(q.stderr, /hint: .*the table types are: .*\blmdb\b/)
    const typo = await proxymap(['dump', '-c', 'examples/postfix', '--json', `hsah:${checkout.dir}/x`])
    assert.equal(typo.code, 2, typo.stderr)
    assert.match(json(typo).error.hint, /did you mean hash\?/)
    assert.equal((await proxymap(['update', '-c', 'examples/postfix', 'nosuchtype:/x', 'k', 'v'])).code, 2)
    // postmap stops as well (fatal), it does not defer.
    const real = await runCommand(POSTMAP, ['-c', checkout.configDir, '-q', 'k', 'nosuchtype:/x'])
    assert.match(real.stderr, /fatal: unsupported dictionary type: nosuchtype/)
  })

  test('check-access: an unknown type is named, exit 2, and no fix approves it', async () => {
    const before = fs.readFileSync(mainCf(), 'utf8')
    const r = await proxymap(['check-access', '-c', 'examples/postfix', '--json', '--yes', 'proxy:nosuch:/x'])
    const report = json(r)
    assert.equal(r.code, 2)
    assert.equal(report.exitCode, 2)
    assert.deepEqual(report.tables[0].problems.map((p: {code: string}) => p.code), ['unknown-type'])
    assert.equal(report.fix, null)
    assert.equal(fs.readFileSync(mainCf(), 'utf8'), before, 'main.cf unchanged')
    const text = await proxymap(['check-access', '-c', 'examples/postfix', 'proxy:nosuch:/x'])
    assert.doesNotMatch(text.stderr, /\+proxy_read_maps/, 'no diff offered')
  })

  test('DENY hints name the exact proxy: entry, the list of the operation and the check-access command', async () => {
    const lookup = await proxymap(['query', '-c', 'examples/postfix', 'proxy:static:{other}', 'k'])
    assert.equal(lookup.code, 3, lookup.stderr)
    assert.match(lookup.stderr, /hint: list proxy:static:\{other\} in main\.cf:proxy_read_maps, then run "postfix reload".*"proxymap check-access -c examples\/postfix 'proxy:static:\{other\}'"/)
    // Approved for lookups, not for updates: the hint names proxy_write_maps and --write.
    const update = await proxymap(['update', '-c', 'examples/postfix', '--json', `proxy:${virtual}`, 'k', 'v'])
    assert.equal(update.code, 3, update.stderr)
    assert.match(json(update).error.hint, new RegExp(`list proxy:${virtual} in main\\.cf:proxy_write_maps.*check-access -c examples/postfix --write proxy:${virtual}"`))
    // The server's own log says the same entry and list.
    assert.match(checkout.serverLog(), new RegExp(`to approve this table for read-write access, list proxy:${virtual} in main\\.cf:proxy_write_maps`))
    // A relative name: the absolute one is what main.cf lists.
    const relative = await proxymap(['query', '-c', 'examples/postfix', 'proxy:texthash:examples/postfix/virtual', 'alice@example.com'])
    assert.equal(relative.code, 3)
    assert.match(relative.stderr, new RegExp(`relative file name.*use proxy:${virtual}, listed in main\\.cf:proxy_read_maps`))
  })

  test('check-access --probe says when the running service has not read main.cf since it changed', async () => {
    const original = fs.readFileSync(mainCf(), 'utf8')
    try {
      // Approved in main.cf now, but the service started with the old list: DENY, explained.
      fs.writeFileSync(mainCf(), `${original}\nproxy_write_maps = proxy:${virtual}\n`)
      const added = json(await proxymap(['check-access', '-c', 'examples/postfix', '--json', '--probe', '--write', `proxy:${virtual}`]))
      const probe = added.tables[0].probe
      assert.equal(added.tables[0].approved, true)
      assert.equal(probe.status, 'DENY')
      assert.equal(probe.staleService, true)
      assert.match(probe.meaning, /still has the lists it read when it started/)
      assert.match(probe.next, /postfix reload/)
      // Removed from main.cf, still answered: not "DENIED" and "access works" side by side.
      fs.writeFileSync(mainCf(), original.replace(/^ {4}proxy:static:\{example default\}\n/m, '\n'))
      const removed = await proxymap(['check-access', '-c', 'examples/postfix', '--probe', 'proxy:static:{example default}'])
      assert.equal(removed.code, 3)
      assert.match(removed.stdout, /DENIED: proxy:static:\{example default\}/)
      assert.doesNotMatch(removed.stdout, /access works/)
      assert.match(removed.stdout, /still answers for proxy:static:\{example default\} \(OK\).*after the next "postfix reload" it will answer DENY/)
      assert.match(removed.stdout, /next: list proxy:static:\{example default\} in main\.cf:proxy_read_maps/)
    } finally {
      fs.writeFileSync(mainCf(), original)
    }
  })

  test('the fix replaces a misspelt entry written in the list instead of keeping it next to the right one', async () => {
    const original = fs.readFileSync(mainCf(), 'utf8')
    try {
      // A relative path and a name in another case, next to a table that stays.
      fs.writeFileSync(mainCf(), `${original}\nproxy_write_maps = proxy:lmdb:examples/postfix/senders proxy:static:{kept}\n    proxy:lmdb:${checkout.configDir}/Greylist\n`)
      const r = await proxymap(['check-access', '-c', 'examples/postfix', '--json', '--yes', '--write', `proxy:lmdb:${checkout.configDir}/senders`, `proxy:lmdb:${checkout.configDir}/greylist`])
      const report = json(r)
      assert.equal(report.fix.applied, true, r.stdout)
      assert.deepEqual(report.tables.map((t: {approved: boolean}) => t.approved), [true, true])
      const edit = report.fix.edits[0]
      assert.deepEqual(edit.removed, ['proxy:lmdb:examples/postfix/senders', `proxy:lmdb:${checkout.configDir}/Greylist`])
      assert.equal(edit.after, `proxy:static:{kept} proxy:lmdb:${checkout.configDir}/senders proxy:lmdb:${checkout.configDir}/greylist`)
      assert.match(fs.readFileSync(mainCf(), 'utf8'), /^proxy_write_maps = proxy:static:\{kept\} proxy:lmdb:/m)
      // A near miss that main.cf uses is another client's table: it stays.
      fs.writeFileSync(mainCf(), original.replace(/^relocated_maps = .*$/m, 'relocated_maps = proxy:texthash:${config_directory}/Relocated')
        + '\nproxy_write_maps = proxy:texthash:${config_directory}/Relocated\n')
      const kept = json(await proxymap(['check-access', '-c', 'examples/postfix', '--json', '--write', `proxy:texthash:${checkout.configDir}/relocated`]))
      assert.deepEqual(kept.tables[0].problems.filter((p: {entry?: string}) => p.entry).map((p: {code: string}) => p.code), ['case'])
      assert.deepEqual(kept.fix.edits[0].removed, [])
    } finally {
      fs.writeFileSync(mainCf(), original)
    }
  })

  test('check-access hints quote whole default lists, not cut ones', async () => {
    const original = fs.readFileSync(mainCf(), 'utf8')
    try {
      fs.writeFileSync(mainCf(), `${original}\npostscreen_cache_map = proxy:btree:/var/lib/postfix/postscreen_cache\nproxy_write_maps = proxy:static:{x}\n`)
      const r = json(await proxymap(['check-access', '-c', 'examples/postfix', '--json', '--write', 'proxy:btree:/var/lib/postfix/postscreen_cache']))
      const hints = [...r.findings.map((f: {hint?: string}) => f.hint), ...r.tables[0].problems.map((p: {hint?: string}) => p.hint)].filter(Boolean).join('\n')
      assert.match(hints, /proxy_write_maps = \$smtp_sasl_auth_cache_name \$lmtp_sasl_auth_cache_name \$address_verify_map \$postscreen_cache_map \.\.\.your entries/)
      assert.doesNotMatch(hints, /\$lmtp_sasl_auth_cache_name \.\.\. /)
    } finally {
      fs.writeFileSync(mainCf(), original)
    }
  })

  test('update: the words after the key are the value, as postmap -i reads "key whitespace value"', async () => {
    const table = `lmdb:${checkout.dir}/senders`
    const r = await proxymap(['update', '-c', 'examples/postfix', table, 'bob@example.com', 'REJECT', 'spam', 'source'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal((await proxymap(['query', '-c', 'examples/postfix', table, 'bob@example.com'])).stdout, 'REJECT spam source\n')
    const missing = await proxymap(['update', '-c', 'examples/postfix', table, 'carol@example.com'])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /expected KEY VALUE\.\.\./)
    assert.doesNotMatch(missing.stderr, /both non-empty/)
  })

  test('update on a read-only type says so in plain words', async () => {
    const r = await proxymap(['update', '-c', 'examples/postfix', virtual, 'k', 'v'])
    assert.equal(r.code, 5)
    assert.match(r.stderr, /cannot be changed: texthash tables are read-only/)
    assert.match(r.stderr, /hint: edit the table's source/)
  })

  test('a bare table name takes default_database_type, as postmap does', async () => {
    fs.writeFileSync(path.join(checkout.dir, 'bare'), 'alice@example.com alice@mailbox.example.com\n')
    const built = await runCommand(POSTMAP, ['-c', checkout.configDir, `lmdb:${checkout.dir}/bare`])
    assert.equal(built.code, 0, built.stderr)
    const original = fs.readFileSync(mainCf(), 'utf8')
    try {
      fs.writeFileSync(mainCf(), `${original}\ndefault_database_type = lmdb\n`)
      const real = await runCommand(POSTMAP, ['-c', checkout.configDir, '-q', 'alice@example.com', 'bare'], {cwd: checkout.dir})
      assert.equal(real.stdout, 'alice@mailbox.example.com\n', real.stderr)
      const ours = await proxymap(['query', '-c', 'examples/postfix', 'bare', 'alice@example.com'])
      assert.equal(ours.stdout, real.stdout, ours.stderr)
      assert.equal(json(await proxymap(['dump', '-c', 'examples/postfix', '--json', 'bare'])).table, 'lmdb:bare')
    } finally {
      fs.writeFileSync(mainCf(), original)
    }
  })

  test('a long direct dump counts its entries on a terminal (a file table never leaves the event loop by itself)', async () => {
    const big = path.join(checkout.dir, 'big')
    fs.writeFileSync(big, Array.from({length: 200_000}, (_, i) => `key${i}@example.com value${i}\n`).join(''))
    const env: NodeJS.ProcessEnv = {...checkout.env, TERM: 'xterm-256color'}
    delete env.CI // ora draws nothing for CI
    const r = await runOnTerminal(['dump', '-c', checkout.configDir, '--output', 'table', '--max-rows', '1', `texthash:${big}`], {env})
    assert.equal(r.code, 0, r.stdout)
    assert.match(r.stdout, /\d+ entries read from texthash:/, 'the count while reading')
    assert.match(r.stdout, /200000 entries read/, 'the total at the end')
  })

  test('usage lines say TABLE KEY [KEY...], dump offers no -f, and a typo gets "did you mean"', async () => {
    const usage = (text: string): string => text.slice(text.indexOf('USAGE'), text.indexOf('\n\n', text.indexOf('USAGE')))
    const query = usage((await proxymap(['query', '--help'])).stdout)
    assert.match(query, /\$ proxymap query \[-c DIR\] \[FLAGS\] TABLE KEY \[KEY\.\.\.\]/)
    assert.match(query, /\$ proxymap query \[-c DIR\] \[FLAGS\] TABLE -/)
    assert.doesNotMatch(query, /TABLE\.\.\./)
    assert.match(usage((await proxymap(['update', '--help'])).stdout), /TABLE KEY VALUE\.\.\./)
    assert.match(usage((await proxymap(['delete', '--help'])).stdout), /TABLE KEY \[KEY\.\.\.\]/)
    const dump = await proxymap(['dump', '--help'])
    assert.doesNotMatch(dump.stdout, /-f, --no-fold/)
    assert.equal((await proxymap(['dump', '-c', 'examples/postfix', '-f', virtual])).code, 2, 'dump -f is refused')
    const typo = await proxymap(['qurey', 'x'])
    assert.notEqual(typo.code, 0)
    assert.match(typo.stderr, /Did you mean query\?/i)
  })
})

describe('--dialect v2 against a real Postfix 3.7 proxymap', () => {
  let pf: PostfixInstance

  before(async () => {
    pf = await createPostfixInstance({prefix: 'pm-polish-dialect-'})
    const virtual = await pf.createTable('hash', 'virtual', 'alice@example.com alice@mailbox.example.com\n')
    await pf.postconf({virtual_alias_maps: `proxy:${virtual}`, proxy_read_maps: '$virtual_alias_maps'})
    await pf.startPostfix()
  })

  after(async () => {
    await pf?.destroy()
  })

  test('says that the service speaks the other dialect and which flag to use', async () => {
    const table = `proxy:hash:${pf.etc}/virtual`
    const v2 = await runCommand(process.execPath, [PROJECT_BIN, 'query', '-c', pf.etc, '--dialect', 'v2', table, 'alice@example.com'], {timeoutMs: 30_000})
    assert.equal(v2.code, 5, v2.stderr)
    assert.match(v2.stderr, /as invalid in the v2 \(Postfix >= 3\.11\) dialect/)
    assert.match(v2.stderr, /hint: if the service is Postfix <= 3\.10, use --dialect legacy, or --dialect auto/)
    const auto = await runCommand(process.execPath, [PROJECT_BIN, 'query', '-c', pf.etc, table, 'alice@example.com'], {timeoutMs: 30_000})
    assert.equal(auto.stdout, 'alice@mailbox.example.com\n', auto.stderr)
  })
})
