// Approval rules per Postfix release, against the real thing. One main.cf with what 3.11
// approves differently (restriction classes, /file/name elements, words 3.11 skips, its
// longer default proxy_read_maps, a default_cache_db_type that 3.7 does not know):
// - real 3.11's proxymap prints the tables it approves (-n export-proxy-proxymap /
//   export-proxy-proxywrite) and its warnings: ours under 3.11's rules, byte for byte;
// - real 3.11 clients get the same answers from 3.11's proxymap as from `serve
//   --postfix-version 3.11`, and DENY from `serve --postfix-version 3.7`;
// - real 3.7 (which cannot export) shows its decisions through postmap -q / -i: the same as
//   ours under 3.7's rules, and its list warnings are ours;
// - check-access names the rules, and explains the 3.11 cases under either rules;
// - under master(8), "--postfix-version 3.11" in master.cf reaches our daemon.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {AccessPolicy, type ProxyService} from '../../src/lib/access/index.js'
import {approvalRulesFor, loadMainConfig, type PostfixVersion} from '../../src/lib/config/index.js'
import {
  DEPRECATION_WARNINGS, PROJECT_BIN, PROJECT_ROOT, POSTFIX_SBIN, postfixVersionUnavailable, runCommand,
  instancesDestroyedAfterTests, sleep, waitFor, type PostfixInstance, type RunResult,
} from '../helpers/postfix.js'

const instance = instancesDestroyedAfterTests()

/** The tables the probes use, with a key each and its value. */
interface Layout {
  /** In virtual_alias_maps: approved by every release. */
  virtual: string
  /** In the restriction class "senders". */
  senders: string
  /** In the restriction class "helo_class", named through $extra_class. */
  helo: string
  /** In ETC/more, a /file/name element of virtual_alias_maps. */
  fromFile: string
  /** In smtpd_etrn_restrictions, which only 3.11's default proxy_read_maps lists. */
  etrn: string
  /** In ETC/more-write, a /file/name element of proxy_write_maps. */
  written: string
}

const KEYS: Record<Exclude<keyof Layout, 'written'>, [string, string]> = {
  virtual: ['alice', 'alice-box'],
  senders: ['bob', 'bob-box'],
  helo: ['helo.example', 'OK'],
  fromFile: ['carol', 'carol-box'],
  etrn: ['10.0.0.1', 'OK'],
}

/**
 * Writes the tables, the included files and main.cf (proxy_read_maps left to the release's
 * default). With `loop`, virtual_alias_maps also names a file that includes itself and a
 * directory; only for the export, where the descriptor limit is small (a real proxymap
 * recurses until open() fails).
 */
async function configure(pf: PostfixInstance, options: {loop: boolean}): Promise<Layout> {
  const {etc, data} = pf
  const layout: Layout = {
    virtual: await pf.createTable('texthash', 'virtual', 'alice alice-box\n', {build: false}),
    senders: await pf.createTable('texthash', 'senders', 'bob bob-box\n', {build: false}),
    helo: await pf.createTable('lmdb', 'helo', 'helo.example OK\n'),
    fromFile: await pf.createTable('texthash', 'from-file', 'carol carol-box\n', {build: false}),
    etrn: await pf.createTable('texthash', 'etrn', '10.0.0.1 OK\n', {build: false}),
    written: `lmdb:${data}/written`,
  }
  await pf.writeFile('more', [
    '# a comment line',
    `proxy:${layout.fromFile}`,
    `  proxy:cdb:${etc}/continued, ${etc}/nested`,
    '{proxy:bad',
    'proxy:hash:/three # proxy:hash:/four',
    '',
  ].join('\n'))
  await pf.writeFile('nested', Buffer.from(`proxy:hash:${etc}/nested-table\0 proxy:hash:${etc}/after-nul\n`, 'latin1'))
  await pf.writeFile('more-write', `proxy:${layout.written}\n`)
  await pf.writeFile('loop', `${etc}/loop\nproxy:hash:/after-loop\n`)
  fs.mkdirSync(path.join(etc, 'subdir'), {recursive: true})
  const harness = fs.readFileSync(path.join(etc, 'main.cf'), 'utf8').split('\n').filter(line => !/^proxy_(read|write)_maps\s*=/.test(line))
  await pf.writeFile('main.cf', [
    ...harness,
    'smtpd_restriction_classes = senders, $extra_class nosuch',
    'extra_class = helo_class',
    `senders = check_sender_access proxy:${layout.senders}, ${etc}/absent, permit`,
    `helo_class = check_helo_access proxy:${layout.helo}`,
    `virtual_alias_maps = proxy:${layout.virtual} ${etc}/more [proxy:hash:/bracketed] proxy:nocolon proxy: -proxy:hash:/dash` +
      (options.loop ? ` ${etc}/loop ${etc}/subdir` : ''),
    `smtpd_etrn_restrictions = check_client_access proxy:${layout.etrn}`,
    'address_verify_map = proxy:$default_cache_db_type:$data_directory/verify',
    `proxy_write_maps = $address_verify_map ${etc}/more-write {proxy:btree:${data}/w}x`,
    '',
  ].join('\n'))
  return layout
}

const policyOf = (pf: PostfixInstance, version: PostfixVersion): AccessPolicy =>
  AccessPolicy.fromConfig(loadMainConfig({configDir: pf.etc}), approvalRulesFor(version))

/** Postfix's warnings in a log or stderr text, without the release's deprecation notices. */
function warningsIn(text: string): string[] {
  return text.split('\n')
    .filter(line => !DEPRECATION_WARNINGS.some(w => w.test(line)))
    .map(line => /\bwarning: (.*)$/.exec(line)?.[1])
    .filter((w): w is string => w !== undefined)
}

const isDenialLine = (w: string): boolean => /^(request for unapproved table|to approve this table)/.test(w)

interface Answer {code: number; stdout: string; denied: boolean}
const answer = (r: RunResult): Answer => ({code: r.code, stdout: r.stdout, denied: /not configured for table/.test(r.stderr)})

/** A lookup of each probe table's key, and one delete through proxywrite, by the instance's own postmap. */
async function probe(pf: PostfixInstance, layout: Layout): Promise<Record<keyof Layout, Answer>> {
  const answers = {} as Record<keyof Layout, Answer>
  for (const [name, [key]] of Object.entries(KEYS) as [keyof typeof KEYS, [string, string]][]) {
    answers[name] = answer(await pf.postmap(['-q', key, `proxy:${layout[name]}`]))
  }
  // postmap -d reaches proxywrite in every release (3.7's postmap -i cannot: "proxy does not
  // support bulk-mode creation"); as user postfix, who owns data_directory.
  answers.written = answer(await pf.postmap(['-d', 'k', `proxy:${layout.written}`], {asPostfix: true}))
  return answers
}

function checkAccess(pf: PostfixInstance, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const clean: NodeJS.ProcessEnv = {...process.env, ...env}
  delete clean.MAIL_CONFIG
  if (!env.PROXYMAP_POSTFIX_VERSION) delete clean.PROXYMAP_POSTFIX_VERSION
  return runCommand(process.execPath, [PROJECT_BIN, 'check-access', '-c', pf.etc, ...args], {cwd: PROJECT_ROOT, env: clean, timeoutMs: 30_000})
}

interface Report {
  postfixVersion: {version: string; source: string; mailVersion?: string}
  tables: {table: string; approved: boolean; via?: string[]; problems: {code: string; message: string; hint?: string}[]}[]
}
const report = (r: RunResult): Report => {
  try {
    return JSON.parse(r.stdout) as Report
  } catch {
    throw new Error(`not JSON: ${r.stdout} ${r.stderr}`)
  }
}

describe('Postfix 3.11', () => {
  test('real proxymap -n export-proxy-*: the tables and warnings of ours under 3.11\'s rules, byte for byte', async (t) => {
    const why = await postfixVersionUnavailable('3.11')
    if (why) return t.skip(why)
    const pf = await instance('3.11', 'pm-approval-311-export-')
    const layout = await configure(pf, {loop: true})
    const ours = policyOf(pf, '3.11')
    for (const service of ['proxymap', 'proxywrite'] as const) {
      const kind: ProxyService = service === 'proxymap' ? 'read' : 'write'
      // -V: messages to stderr; -S: no master. A small descriptor limit ends the self-include early.
      // Without maillog_file: when the descriptors run out, a proxymap that logs through postlog
      // cannot connect to it for the "Too many open files" warning, and dies (fatal: unix_dgram_connect).
      const real = await pf.run('/bin/sh', ['-c', `ulimit -n 64 && exec ${POSTFIX_SBIN}/proxymap -V -S -o maillog_file= -n export-proxy-${service}`])
      assert.equal(real.code, 0, real.stderr)
      const exported = real.stdout.split('\n').slice(0, -1)
      assert.deepEqual(exported, [...ours.approvedTables(kind)].sort(), `${service}: approved tables`)
      assert.deepEqual(warningsIn(real.stderr), [...ours.listWarnings(kind)], `${service}: warnings, in order`)
    }
    // The cases mean what they say.
    const read = ours.approvedTables('read')
    for (const table of [layout.virtual, layout.senders, layout.helo, layout.fromFile, layout.etrn, `hash:${pf.etc}/nested-table`,
      'hash:/after-loop', 'hash:/four', 'nocolon', '']) assert.ok(read.has(table), `3.11 approves "${table}"`)
    for (const table of [`hash:${pf.etc}/after-nul`, 'hash:/bracketed', 'hash:/dash']) assert.ok(!read.has(table), `3.11 does not approve "${table}"`)
    assert.ok(ours.approvedTables('write').has(layout.written))
    assert.ok(ours.listWarnings('read').includes(`open ${pf.etc}/loop: Too many open files`))
    assert.ok(ours.listWarnings('read').includes(`read ${pf.etc}/subdir: Is a directory`))
    // And 3.7's rules on the same main.cf approve less.
    const older = policyOf(pf, '3.7')
    assert.deepEqual([...older.approvedTables('read')], [layout.virtual])
  })

  test('real 3.11 clients: 3.11\'s proxymap and serve --postfix-version 3.11 agree; serve --postfix-version 3.7 denies', async (t) => {
    const why = await postfixVersionUnavailable('3.11')
    if (why) return t.skip(why)
    const pf = await instance('3.11', 'pm-approval-311-serve-')
    const layout = await configure(pf, {loop: false})
    await pf.startPostfix()
    const theirs = await probe(pf, layout)
    await pf.stopPostfix()
    const theirWarnings = warningsIn(pf.maillog()).filter(w => !isDenialLine(w)).sort()

    await pf.startOurs(['--postfix-version', '3.11'])
    const ours = await probe(pf, layout)
    await pf.stopOurs()
    const ourWarnings = warningsIn(pf.ourStderr()).filter(w => !isDenialLine(w)).sort()
    assert.match(pf.ourStderr(), /approving tables by the Postfix 3\.11 rules \(chosen with --postfix-version\)/)

    assert.deepEqual(ours, theirs)
    for (const [name, [, value]] of Object.entries(KEYS)) assert.equal(theirs[name as keyof typeof KEYS].stdout, `${value}\n`, name)
    assert.equal(theirs.written.denied, false, 'a delete through 3.11\'s proxywrite: approved (the key is not there)')
    // The list warnings each process logs at start-up.
    assert.deepEqual(ourWarnings, theirWarnings)
    assert.ok(theirWarnings.includes(`open ${pf.etc}/absent: No such file or directory`), theirWarnings.join('\n'))

    await pf.startOurs(['--postfix-version', '3.7'])
    const older = await probe(pf, layout)
    await pf.stopOurs()
    assert.equal(older.virtual.stdout, 'alice-box\n')
    for (const name of ['senders', 'helo', 'fromFile', 'etrn', 'written'] as const) assert.ok(older[name].denied, `3.7 rules deny ${name}`)
  })

  test('check-access under 3.11\'s rules: approved through a class, a file; a class table is not approved for updates', async (t) => {
    const why = await postfixVersionUnavailable('3.11')
    if (why) return t.skip(why)
    const pf = await instance('3.11', 'pm-approval-311-check-')
    const layout = await configure(pf, {loop: false})
    const r = await checkAccess(pf, ['--json', `proxy:${layout.senders}`, layout.helo, layout.fromFile, layout.etrn], {PROXYMAP_POSTFIX_VERSION: '3.11'})
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const json = report(r)
    assert.deepEqual(json.postfixVersion, {version: '3.11', source: 'environment'})
    assert.deepEqual(json.tables.map(t => t.via), [
      ['smtpd_restriction_classes', 'senders'],
      ['smtpd_restriction_classes', 'helo_class'],
      ['proxy_read_maps', 'virtual_alias_maps', `${pf.etc}/more`],
      ['proxy_read_maps', 'smtpd_etrn_restrictions'],
    ])
    const text = await checkAccess(pf, ['--postfix-version', '3.11', layout.fromFile, layout.senders])
    assert.match(text.stdout, /^rules: Postfix 3\.11 rules \(chosen with --postfix-version\)$/m)
    assert.match(text.stdout, /approved: proxy:texthash:\S+\/from-file for lookups through proxymap, via \$virtual_alias_maps -> file \S+\/more in proxy_read_maps/)
    assert.match(text.stdout, /approved: proxy:texthash:\S+\/senders for lookups through proxymap, via class senders in smtpd_restriction_classes/)

    const write = report(await checkAccess(pf, ['--json', '--postfix-version', '3.11', '--write', layout.senders]))
    assert.equal(write.tables[0].approved, false)
    const wrongList = write.tables[0].problems.find(p => p.code === 'wrong-list')
    assert.match(wrongList?.message ?? '', /restriction class senders .* for lookups \(proxymap\), never for updates/)
  })
})

describe('Postfix 3.7', () => {
  test('real 3.7 (postmap -q, -d) decides as ours under 3.7\'s rules, and logs the same list warnings', async () => {
    const pf = await instance('3.7', 'pm-approval-37-')
    const layout = await configure(pf, {loop: false})
    const ours = policyOf(pf, '3.7')
    await pf.startPostfix()
    const real = await probe(pf, layout)
    await sleep(300)
    await pf.stopPostfix()
    for (const name of Object.keys(real) as (keyof Layout)[]) {
      const kind: ProxyService = name === 'written' ? 'write' : 'read'
      assert.equal(!real[name].denied, ours.isApproved(kind, layout[name]), `${name}: real 3.7 ${real[name].denied ? 'denies' : 'approves'} ${layout[name]}`)
    }
    assert.equal(real.virtual.stdout, 'alice-box\n')
    for (const name of ['senders', 'helo', 'fromFile', 'etrn', 'written'] as const) assert.ok(real[name].denied, `real 3.7 denies ${name}`)
    // The proxywrite process logged its list's syntax error in 3.7's words; the proxymap process none.
    const listWarnings = warningsIn(pf.maillog()).filter(w => !isDenialLine(w))
    assert.deepEqual(listWarnings, [...ours.listWarnings('read'), ...ours.listWarnings('write')])
    assert.deepEqual(listWarnings, [`bad proxy_write_maps parameter value: syntax error after '}' in "{proxy:btree:${pf.data}/w}x"`])

    // check-access on the host's own release: the installed 3.7 is found and says what 3.11 would do.
    const text = await checkAccess(pf, [layout.senders, layout.fromFile, layout.etrn])
    assert.equal(text.code, 3)
    assert.match(text.stdout, /^rules: Postfix 3\.7 rules \(installed Postfix 3\.7\.\d+, \/usr\/sbin\/postconf\)$/m)
    const json = report(await checkAccess(pf, ['--json', layout.senders, layout.fromFile, layout.etrn]))
    assert.equal(json.postfixVersion.source, 'installed')
    const newer = json.tables.map(t => t.problems.find(p => p.code === 'newer-release-only'))
    assert.match(newer[0]?.message ?? '', /restriction class senders \(in smtpd_restriction_classes\) lists proxy:\S+: Postfix 3\.11 approves the tables of restriction classes/)
    assert.match(newer[0]?.hint ?? '', /add \$senders to proxy_read_maps/)
    assert.match(newer[1]?.message ?? '', /\$virtual_alias_maps → \S+\/more: Postfix 3\.11 reads \/file\/name elements/)
    assert.match(newer[2]?.message ?? '', /Postfix 3\.11's proxymap approves proxy:\S+etrn here \(proxy_read_maps through \$smtpd_etrn_restrictions\)/)
  })

  test('under master(8): "--postfix-version 3.11" in master.cf reaches our daemon', async () => {
    const pf = await instance('3.7', 'pm-approval-37-master-')
    const layout = await configure(pf, {loop: false})
    // daemon_directory is a private copy, so the launcher never touches the system's.
    const libexec = path.join(pf.dir, 'libexec')
    fs.mkdirSync(libexec, {mode: 0o755})
    for (const daemon of fs.readdirSync(POSTFIX_SBIN)) fs.symlinkSync(path.join(POSTFIX_SBIN, daemon), path.join(libexec, daemon))
    await pf.postconf({daemon_directory: libexec})
    const applied = await runCommand(process.execPath, [PROJECT_BIN, 'install-master', '-c', pf.etc, '--apply'])
    assert.equal(applied.code, 0, applied.stderr)
    const masterCf = path.join(pf.etc, 'master.cf')
    const withVersion = fs.readFileSync(masterCf, 'utf8').replace(/^(proxymap\s+unix\s.*proxymap-ts)$/m, '$1 --postfix-version 3.11')
    assert.match(withVersion, /proxymap-ts --postfix-version 3\.11$/m)
    await pf.writeFile('master.cf', withVersion)

    await pf.startPostfix()
    try {
      const hit = await pf.postmap(['-q', 'bob', `proxy:${layout.senders}`])
      assert.equal(hit.stdout, 'bob-box\n', `${hit.stderr}\n${pf.maillog()}`)
      const file = await pf.postmap(['-q', 'carol', `proxy:${layout.fromFile}`])
      assert.equal(file.stdout, 'carol-box\n', file.stderr)
      // proxywrite still runs with the installed release's rules (3.7): the included file is not read.
      const update = await pf.postmap(['-d', 'k', `proxy:${layout.written}`], {asPostfix: true})
      assert.match(update.stderr, /not configured for table/)
      await waitFor(() => /to approve this table for read-write access/.test(pf.maillog()), 5000, () => pf.maillog())
      // Each daemon logged its list warnings in its own release's words.
      assert.match(pf.maillog(), /proxymap\[\d+\]: warning: bad syntax in \S+\/more content: missing '\}' in "\{proxy:bad"/)
      assert.match(pf.maillog(), /proxymap\[\d+\]: warning: bad proxy_write_maps parameter value: syntax error after '\}'/)
      assert.doesNotMatch(pf.maillog(), /proxymap\[\d+\]: fatal|bad command startup/)
    } finally {
      await pf.stopPostfix()
    }
  })
})
