// The administrator's path: "proxymap install-master --apply" puts our daemon into
// master.cf; a table added with postconf -e is approved after "postfix reload"; our log
// lines in maillog_file are Postfix's for the same events; --revert brings Postfix's own
// proxymap back. daemon_directory is a private copy (symlinks to Postfix's daemons), so the
// launcher never touches the system's /usr/lib/postfix/sbin.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {NODE_EXECUTABLE, PROJECT_BIN, PostfixInstance, createPostfixInstance, processesRunning, requirePostfix, runCommand, sleep, waitFor} from '../helpers/postfix.js'
import {freshBundle} from '../../src/lib/cli/bundle.js'

const POSTFIX_SBIN = '/usr/lib/postfix/sbin'
let pf: PostfixInstance
let th: string
let extra: string
let libexec: string

function ourPids(): number[] {
  return processesRunning(NODE_EXECUTABLE, pf.spool)
}

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-install-'})
  libexec = path.join(pf.dir, 'libexec')
  fs.mkdirSync(libexec, {mode: 0o755})
  for (const daemon of fs.readdirSync(POSTFIX_SBIN)) fs.symlinkSync(path.join(POSTFIX_SBIN, daemon), path.join(libexec, daemon))
  th = await pf.createTable('texthash', 'virtual', 'alice\talice-box\n', {build: false})
  extra = await pf.createTable('texthash', 'extra', 'carol\tcarol-box\n', {build: false})
  await pf.postconf({daemon_directory: libexec})
  await pf.approve({read: [th, `texthash:${pf.etc}/missing`], write: [th]})
})

after(async () => {
  await pf?.destroy()
})

function rawRequest(service: 'proxymap' | 'proxywrite', request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const s = net.createConnection({path: pf.socketPath(service)})
    s.on('data', d => {
      got += d.toString('latin1')
      if (/status\0\d\0(?:[^\0]*\0[^\0]*\0)*\0$/.test(got.replace(/^protocol\0proxymap_protocol\0\0/, ''))) { s.destroy(); resolve(got) }
    })
    s.on('error', reject)
    s.write(Buffer.from(request, 'latin1'))
  })
}

/** The same events, made by real clients (and one raw update on the read-only service). */
async function events(): Promise<void> {
  await pf.postmap(['-q', 'alice', `proxy:texthash:${pf.etc}/not-listed`])
  await pf.postmap(['-q', 'alice', `proxy:texthash:${pf.etc}/missing`])
  await rawRequest('proxymap', `request\0update\0table\0${th}\0flags\x000\0key\0k\0value\0v\0\0`)
  await pf.postmap(['-d', 'alice', `proxy:texthash:${pf.etc}/not-listed`])
}

function warnings(log: string): string[] {
  return log.split('\n').map(l => /\/proxymap\[\d+\]: ((?:warning|error): .*)$/.exec(l)?.[1])
    .filter((w): w is string => !!w).sort()
}

test('install-master, reload picks up a new table, Postfix-identical log lines, and revert', async () => {
  // Postfix's own daemon first: the reference log lines.
  await pf.startPostfix()
  await events()
  await pf.stopPostfix()
  const theirs = warnings(pf.maillog())
  assert.ok(theirs.length >= 5, theirs.join('\n'))

  const plan = await runCommand('node', [PROJECT_BIN, 'install-master', '-c', pf.etc])
  assert.match(plan.stdout, /would run .*proxymap-ts/)
  assert.equal(fs.existsSync(path.join(libexec, 'proxymap-ts')), false, 'nothing written without --apply')
  const applied = await runCommand('node', [PROJECT_BIN, 'install-master', '-c', pf.etc, '--apply'])
  assert.equal(applied.code, 0, applied.stderr)
  assert.match(fs.readFileSync(path.join(pf.etc, 'master.cf'), 'utf8'), /^proxywrite\s+unix\s+-\s+-\s+n\s+-\s+1\s+proxymap-ts$/m)
  const copies = fs.readdirSync(path.join(libexec, 'proxymap-ts.d')).map(name => path.join(libexec, 'proxymap-ts.d', name))
  assert.ok(copies.length > 0 && copies.every(copy => freshBundle(copy) !== undefined), `the private copy runs from its bundle: ${copies.join(' ')}`)
  const logStart = pf.maillog().length

  await pf.startPostfix()
  try {
    const hit = await pf.postmap(['-q', 'alice', `proxy:${th}`])
    assert.equal(hit.stdout, 'alice-box\n', hit.stderr)
    assert.ok(ourPids().length > 0, 'our daemon serves')
    await events()
    await sleep(300)
    assert.deepEqual(warnings(pf.maillog().slice(logStart)), theirs, 'same warnings and errors in maillog_file')

    // A new table is approved after postconf -e and postfix reload, with no other step.
    const denied = await pf.postmap(['-q', 'carol', `proxy:${extra}`])
    assert.match(denied.stderr, /not configured/)
    await pf.approve({read: [th, extra, `texthash:${pf.etc}/missing`], write: [th]})
    const before = ourPids()
    await pf.reloadPostfix()
    await waitFor(() => ourPids().every(p => !before.includes(p)), 10_000, () => `old daemons ${before} still run after reload`)
    const approved = await pf.postmap(['-q', 'carol', `proxy:${extra}`])
    assert.equal(approved.stdout, 'carol-box\n', approved.stderr)
    assert.doesNotMatch(pf.maillog().slice(logStart), /bad command startup|throttling/)
  } finally {
    await pf.stopPostfix()
  }
  await waitFor(() => ourPids().length === 0, 10_000, () => 'our daemons outlived postfix stop')

  const reverted = await runCommand('node', [PROJECT_BIN, 'install-master', '-c', pf.etc, '--revert', '--apply'])
  assert.equal(reverted.code, 0, reverted.stderr)
  assert.equal(fs.existsSync(path.join(libexec, 'proxymap-ts')), false)
  assert.equal(fs.existsSync(path.join(libexec, 'proxymap-ts.d')), false, 'the private copy goes too')
  assert.match(fs.readFileSync(path.join(pf.etc, 'master.cf'), 'utf8'), /^proxywrite\s+unix\s+-\s+-\s+n\s+-\s+1\s+proxymap$/m)
  await pf.startPostfix()
  try {
    const hit = await pf.postmap(['-q', 'alice', `proxy:${th}`])
    assert.equal(hit.stdout, 'alice-box\n')
    assert.equal(ourPids().length, 0, 'Postfix\'s own proxymap answers again')
  } finally {
    await pf.stopPostfix()
  }
})
