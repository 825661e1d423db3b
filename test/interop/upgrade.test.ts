// Upgrading or removing the npm package never stops mail: install-master runs a private copy
// of the installation, so real postmap -q lookups every 100 ms keep being answered while the
// package's files are replaced and then removed, with master starting new daemons throughout
// (max_use 5). The way back works without the package, and a copy that cannot run hands over
// to Postfix's own proxymap, saying so in the log.

import assert from 'node:assert/strict'
import fs, {promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {
  NODE_EXECUTABLE, PROJECT_BIN, PROJECT_ROOT, PostfixInstance, createPostfixInstance, processesRunning, requirePostfix, runCommand, sleep, waitFor,
} from '../helpers/postfix.js'

const POSTFIX_SBIN = '/usr/lib/postfix/sbin'
let pf: PostfixInstance
let libexec: string
let table: string
let scratch: string

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-upgrade-', main: {max_use: '5'}})
  libexec = path.join(pf.dir, 'libexec')
  fs.mkdirSync(libexec, {mode: 0o755})
  for (const daemon of fs.readdirSync(POSTFIX_SBIN)) fs.symlinkSync(path.join(POSTFIX_SBIN, daemon), path.join(libexec, daemon))
  table = await pf.createTable('texthash', 'virtual', 'alice\talice-box\n', {build: false})
  await pf.postconf({daemon_directory: libexec})
  await pf.approve({read: [table]})
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-upgrade-pkg-'))
  fs.chmodSync(scratch, 0o755)
})

after(async () => {
  await pf?.destroy()
  if (scratch) fs.rmSync(scratch, {recursive: true, force: true})
})

/** Our daemons: node processes in the queue directory (master's daemons chdir there). */
function ourDaemons(): number[] {
  return processesRunning(NODE_EXECUTABLE, pf.spool)
}

/** An npm installation of the package: its files, as `npm install -g` leaves them. */
async function installPackage(dir: string): Promise<void> {
  fs.mkdirSync(dir, {recursive: true})
  for (const entry of ['package.json', 'oclif.manifest.json', 'bin', 'dist', 'build'])
    fs.cpSync(path.join(PROJECT_ROOT, entry), path.join(dir, entry), {recursive: true})
  // Hard links: a whole copy of node_modules would take longer than the test.
  const r = await runCommand('cp', ['-al', path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules')])
  assert.equal(r.code, 0, r.stderr)
}

interface Lookup { ok: boolean; ms: number; startedAt: number; detail: string }

/** A postmap -q started every 100 ms (not waiting for the one before) until stopped. */
function lookupsEvery100ms(): {stop: () => Promise<Lookup[]>; daemons: Set<number>} {
  const pending: Promise<Lookup>[] = []
  const daemons = new Set<number>()
  const timer = setInterval(() => {
    const startedAt = Date.now()
    pending.push(pf.postmap(['-q', 'alice', `proxy:${table}`], {timeoutMs: 10_000}).then(r =>
      ({ok: r.code === 0 && r.stdout === 'alice-box\n', ms: r.ms, startedAt, detail: `${r.code} ${JSON.stringify(r.stdout)} ${r.stderr.trim()}`})))
    for (const pid of ourDaemons()) daemons.add(pid)
  }, 100)
  return {daemons, stop: async () => { clearInterval(timer); return Promise.all(pending) }}
}

/**
 * Every lookup answered, none held up for more than 1 s beyond what a lookup took before the
 * package was touched (a loaded machine's postmap alone can take that long).
 */
function assertAllAnswered(results: Lookup[], touchedAt: number, what: string): string {
  const baseline = results.filter(r => r.startedAt < touchedAt)
  assert.ok(baseline.length >= 5, `only ${baseline.length} lookups before the package was touched`)
  const usual = Math.max(...baseline.map(r => r.ms))
  const limit = usual + 1000
  const bad = results.filter(r => !r.ok || r.ms > limit)
  assert.deepEqual(bad, [], `${what}: ${bad.length} of ${results.length} lookups failed or took over ${Math.round(limit)} ms`)
  const slowest = Math.max(...results.filter(r => r.startedAt >= touchedAt).map(r => r.ms))
  return `${results.length} lookups, all answered; slowest before ${Math.round(usual)} ms, after ${Math.round(slowest)} ms`
}

test('lookups through a master-run install survive the package being reinstalled and removed; --revert works without it', async t => {
  const pkg = path.join(scratch, 'lib', 'node_modules', 'proxymap')
  await installPackage(pkg)
  const applied = await runCommand('node', [path.join(pkg, 'bin', 'run.js'), 'install-master', '-c', pf.etc, '--apply', '--json'], {timeoutMs: 120_000})
  assert.equal(applied.code, 0, applied.stderr)
  const copy = (JSON.parse(applied.stdout) as {copy: string}).copy
  assert.ok(copy.startsWith(`${libexec}/proxymap-ts.d/`), copy)
  const logStart = pf.maillog().length

  await pf.startPostfix()
  try {
    const lookups = lookupsEvery100ms()
    await sleep(1_000)
    const touchedAt = Date.now()
    // npm replacing the package: its code and addon gone for a while, then new ones.
    // (Asynchronous file operations: this process must keep reading the lookups' answers.)
    await fsp.rm(path.join(pkg, 'dist'), {recursive: true})
    await fsp.rm(path.join(pkg, 'build'), {recursive: true})
    await sleep(1_500)
    for (const entry of ['dist', 'build']) await fsp.cp(path.join(PROJECT_ROOT, entry), path.join(pkg, entry), {recursive: true})
    await sleep(1_000)
    // npm uninstall -g.
    await fsp.rm(pkg, {recursive: true})
    await sleep(1_500)
    const results = await lookups.stop()
    assert.ok(results.length >= 30, `only ${results.length} lookups`)
    t.diagnostic(assertAllAnswered(results, touchedAt, 'during the upgrade and the removal'))
    assert.ok(lookups.daemons.size >= 3, `master started new daemons meanwhile (max_use 5): ${[...lookups.daemons].join(' ')}`)
    const log = pf.maillog().slice(logStart)
    assert.doesNotMatch(log, /bad command startup|throttling|fatal:|panic:|Postfix's proxymap serves instead/)

    // The way back, with the package gone: the launcher runs the copy's CLI.
    const reverted = await runCommand(path.join(libexec, 'proxymap-ts'), ['install-master', '-c', pf.etc, '--revert', '--apply'], {timeoutMs: 60_000})
    assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr)
    assert.match(fs.readFileSync(path.join(pf.etc, 'master.cf'), 'utf8'), /^proxymap\s+unix\s+-\s+-\s+n\s+-\s+-\s+proxymap$/m)
    assert.equal(fs.existsSync(path.join(libexec, 'proxymap-ts')), false)
    assert.equal(fs.existsSync(path.join(libexec, 'proxymap-ts.d')), false)
    await pf.reloadPostfix()
    await waitFor(() => ourDaemons().length === 0, 15_000, () => `our daemons outlived the reload: ${ourDaemons().join(' ')}`)
    const theirs = await pf.postmap(['-q', 'alice', `proxy:${table}`])
    assert.deepEqual([theirs.code, theirs.stdout], [0, 'alice-box\n'])
  } finally {
    await pf.stopPostfix()
  }
})

test('a copy that cannot run: the launcher starts Postfix\'s own proxymap and the log says why', async () => {
  const applied = await runCommand('node', [PROJECT_BIN, 'install-master', '-c', pf.etc, '--apply'], {timeoutMs: 120_000})
  assert.equal(applied.code, 0, applied.stderr)
  const logStart = pf.maillog().length
  fs.rmSync(path.join(libexec, 'proxymap-ts.d'), {recursive: true})
  await pf.startPostfix()
  try {
    const r = await pf.postmap(['-q', 'alice', `proxy:${table}`])
    assert.deepEqual([r.code, r.stdout], [0, 'alice-box\n'], r.stderr)
    await waitFor(() => /postfix-harness\/proxymap\[\d+\]: warning: cannot run .*proxymap-ts\.d.*: Postfix's proxymap serves instead/.test(pf.maillog().slice(logStart)),
      10_000, () => `maillog: ${pf.maillog().slice(logStart)}`)
    assert.doesNotMatch(pf.maillog().slice(logStart), /bad command startup|throttling/)
  } finally {
    await pf.stopPostfix()
  }
  const back = await runCommand('node', [PROJECT_BIN, 'install-master', '-c', pf.etc, '--revert', '--apply'])
  assert.equal(back.code, 0, back.stderr)
})
