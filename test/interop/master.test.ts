// proxymap serve as the proxymap and proxywrite services of a real Postfix 3.7 master(8):
// real clients get the same answers as from Postfix's own daemons, master sees no
// trouble (no "bad command startup", no throttling), max_use recycles the process,
// and stopping Postfix stops ours.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {
  NODE_EXECUTABLE, POSTFIX_SBIN, PROJECT_BIN, PostfixInstance, RunResult, backdate, createPostfixInstance, processesRunning, requirePostfix,
  runCommand, sleep, waitFor,
} from '../helpers/postfix.js'

const DAEMON_DIRECTORY = '/usr/lib/postfix/sbin'
let pf: PostfixInstance
let th: string
let launcher: string
const stockMasterCf = new Map<string, string>()

/** Our node processes of this instance: master starts daemons in the queue directory. */
function ourPids(): number[] {
  return processesRunning(NODE_EXECUTABLE, pf.spool)
}

async function useOurDaemons(options = '', chroot = false): Promise<void> {
  const file = path.join(pf.etc, 'master.cf')
  if (!stockMasterCf.has(file)) stockMasterCf.set(file, fs.readFileSync(file, 'utf8'))
  // master.cf commands are relative to daemon_directory.
  const command = path.relative(DAEMON_DIRECTORY, launcher)
  let text = stockMasterCf.get(file)!.replace(/^(proxymap|proxywrite)(\s+unix.*?)proxymap$/gm, `$1$2${command}${options}`)
  if (chroot) text = chrootColumn(text)
  fs.writeFileSync(file, text)
  await backdate(file)
}

/** The chroot column of the proxymap entry set to y. */
function chrootColumn(text: string): string {
  return text.replace(/^(proxymap\s+unix\s+\S+\s+\S+\s+)n(\s)/m, '$1y$2')
}

async function useStockDaemons(): Promise<void> {
  for (const [file, text] of stockMasterCf) { fs.writeFileSync(file, text); await backdate(file) }
}

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-master-'})
  th = await pf.createTable('texthash', 'virtual', 'alice@example.com\talice@mailbox.example.com\nbob@example.com bob\n', {build: false})
  await pf.approve({read: [th, `texthash:${pf.etc}/missing`], write: [th]})
  launcher = path.join(pf.dir, 'proxymap')
  fs.writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${PROJECT_BIN} serve "$@"\n`, {mode: 0o755})
})

after(async () => {
  await pf?.destroy()
})

async function clients(): Promise<RunResult[]> {
  return [
    await pf.postmap(['-q', 'alice@example.com', `proxy:${th}`]),
    await pf.postmap(['-q', 'nobody', `proxy:${th}`]),
    await pf.postmap(['-q', '-', `proxy:${th}`], {input: 'ALICE@example.com\nbob@example.com\nzed\n'}),
    await pf.postalias(['-q', 'bob@example.com', `proxy:${th}`]),
    await pf.postmap(['-q', 'x', `proxy:texthash:${pf.etc}/not-listed`]),
    await pf.postmap(['-q', 'x', `proxy:texthash:${pf.etc}/missing`]),
    await pf.postmap(['-d', 'bob@example.com', `proxy:${th}`]),
    await pf.postmap(['-d', 'x', `proxy:texthash:${pf.etc}/not-listed`]),
  ]
}

const masterTrouble = /bad command startup|throttling|unexpected|fatal: master|panic/

test('under real master(8), real clients get the answers Postfix\'s own daemons give', async () => {
  await useStockDaemons()
  await pf.startPostfix()
  const theirs = await clients()
  await pf.stopPostfix()
  const logBefore = pf.maillog().length

  await useOurDaemons()
  await pf.startPostfix()
  const ours = await clients()
  assert.ok(ourPids().length > 0, 'master started our daemon')
  await pf.stopPostfix()
  await waitFor(() => ourPids().length === 0, 10_000, () => `our daemons outlived master: ${ourPids()}`)

  for (let i = 0; i < theirs.length; i++)
    assert.deepEqual({out: ours[i].stdout, err: ours[i].stderr, code: ours[i].code},
      {out: theirs[i].stdout, err: theirs[i].stderr, code: theirs[i].code}, `client ${i}`)
  assert.equal(theirs[0].stdout, 'alice@mailbox.example.com\n')
  const ourLog = pf.maillog().slice(logBefore)
  assert.doesNotMatch(ourLog, masterTrouble)
  // Our daemon logs through maillog_file, in Postfix's shape.
  assert.match(ourLog, /postfix-harness\/proxymap\[\d+\]: warning: request for unapproved table: "texthash:.*not-listed"/)
  assert.match(ourLog, /postfix-harness\/proxymap\[\d+\]: warning: to approve this table for read-write access, list proxy:texthash:.*not-listed in main\.cf:proxy_write_maps/)
  // Every record, ours and master's, dated as msg_logger.c dates it ("%b %d": "Dec 02").
  for (const line of ourLog.split('\n').filter(Boolean)) assert.match(line, /^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ /)
})

/** What ps (args), /proc/PID/comm and pgrep show of each daemon, sorted by title. */
async function shownAs(pids: number[]): Promise<{args: string; comm: string; pgrep: boolean; pgrepF: boolean}[]> {
  const pgrep = (await runCommand('pgrep', ['proxymap'])).stdout.split('\n').map(Number)
  const pgrepF = (await runCommand('pgrep', ['-f', '^proxymap -'])).stdout.split('\n').map(Number)
  const shown = []
  for (const pid of pids) {
    const args = (await runCommand('ps', ['-o', 'args=', '-p', String(pid)])).stdout.trim()
    shown.push({args, comm: fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), pgrep: pgrep.includes(pid), pgrepF: pgrepF.includes(pid)})
  }
  return shown.sort((a, b) => a.args.localeCompare(b.args))
}

test('under master(8), our daemons show in ps and pgrep as Postfix\'s own do', async () => {
  const daemons = async (executable: string) => {
    // startPostfix()'s probe of both sockets has master start a proxymap and a proxywrite daemon.
    await waitFor(() => processesRunning(executable, pf.spool).length === 2, 10_000, () => `daemons: ${processesRunning(executable, pf.spool)}`)
    // Ours name themselves once started (Node loads first): bounded, then what they show is compared.
    const named = () => processesRunning(executable, pf.spool).every(pid => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'proxymap')
    for (let i = 0; i < 100 && !named(); i++) await sleep(100)
    return shownAs(processesRunning(executable, pf.spool))
  }
  await useStockDaemons()
  await pf.startPostfix()
  let theirs
  try { theirs = await daemons(`${POSTFIX_SBIN}/proxymap`) } finally { await pf.stopPostfix() }
  await useOurDaemons()
  await pf.startPostfix()
  let ours
  try { ours = await daemons(NODE_EXECUTABLE) } finally { await pf.stopPostfix() }
  assert.deepEqual(theirs, [
    {args: 'proxymap -l -n proxywrite -t unix -u', comm: 'proxymap', pgrep: true, pgrepF: true},
    {args: 'proxymap -t unix -u', comm: 'proxymap', pgrep: true, pgrepF: true},
  ])
  assert.deepEqual(ours, theirs)
})

test('max_use recycles the process and max_idle ends it, without master complaints', async () => {
  await useOurDaemons(' -o max_use=3 -o max_idle=2s')
  const logBefore = pf.maillog().length
  await pf.startPostfix()
  try {
    const seen = new Set<number>()
    for (let i = 0; i < 7; i++) {
      const r = await pf.postmap(['-q', 'alice@example.com', `proxy:${th}`])
      assert.equal(r.stdout, 'alice@mailbox.example.com\n')
      for (const pid of ourPids()) seen.add(pid)
      await sleep(150)
    }
    assert.ok(seen.size >= 3, `7 clients with max_use 3 need at least 3 processes; saw ${seen.size}`)
    await waitFor(() => ourPids().length === 0, 8_000, () => `max_idle 2s: still running ${ourPids()}`)
    assert.doesNotMatch(pf.maillog().slice(logBefore), masterTrouble)
  } finally {
    await pf.stopPostfix()
  }
})

test('chrooted (master.cf chroot column y), tables are named inside the jail, as Postfix does', async () => {
  const jailTable = 'texthash:/jail-tables/virtual'
  fs.mkdirSync(path.join(pf.spool, 'jail-tables'), {recursive: true, mode: 0o755})
  fs.writeFileSync(path.join(pf.spool, 'jail-tables', 'virtual'), 'alice@example.com jailed-alice\n')
  await backdate(path.join(pf.spool, 'jail-tables', 'virtual'))
  // A hash table needs the native addon (and libdb) in the jail; th is named outside it.
  await pf.createTable('hash', path.join(pf.spool, 'jail-tables', 'hashed'), 'alice@example.com hashed-alice\n')
  const jailHash = 'hash:/jail-tables/hashed'
  await pf.approve({read: [th, jailTable, jailHash], write: [th]})
  const file = path.join(pf.etc, 'master.cf')
  const query = async () => [
    await pf.postmap(['-q', 'alice@example.com', `proxy:${jailTable}`]),
    await pf.postmap(['-q', 'alice@example.com', `proxy:${jailHash}`]),
    await pf.postmap(['-q', 'alice@example.com', `proxy:${th}`]),
  ].map(r => ({out: r.stdout, err: r.stderr, code: r.code}))

  const stock = stockMasterCf.get(file) ?? fs.readFileSync(file, 'utf8')
  stockMasterCf.set(file, stock)
  fs.writeFileSync(file, chrootColumn(stock))
  await backdate(file)
  await pf.startPostfix()
  const theirs = await query()
  await pf.stopPostfix()

  await useOurDaemons('', true)
  assert.match(fs.readFileSync(file, 'utf8'), /^proxymap\s+unix\s+-\s+-\s+y\s/m)
  await pf.startPostfix()
  try {
    const ours = await query()
    assert.equal(theirs[0].out, 'jailed-alice\n', theirs[0].err)
    assert.equal(theirs[1].out, 'hashed-alice\n', theirs[1].err)
    assert.notEqual(theirs[2].code, 0, 'a table named outside the jail cannot be opened')
    assert.deepEqual(ours, theirs)
    const pid = ourPids()[0]
    assert.ok(pid, 'our daemon runs')
    assert.equal(fs.readlinkSync(`/proc/${pid}/root`), pf.spool, 'our daemon is inside the jail')
    assert.notEqual(fs.statSync(`/proc/${pid}`).uid, 0, 'and not root')
  } finally {
    await pf.stopPostfix()
    await useStockDaemons()
  }
})
