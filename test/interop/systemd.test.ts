// The systemd service of `proxymap install-systemd`: the unit passes systemd-analyze verify,
// and its commands behave as systemd expects of them. (No systemd runs as init on these
// machines, and a systemd started in a namespace would run the host's sysinit units, which
// empty /tmp: the manager's side of sd_notify(3) is a datagram socket read by python3.)

import assert from 'node:assert/strict'
import {ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {
  PROJECT_BIN, PostfixInstance, createPostfixInstance, requirePostfix, runCommand, spawnTracked, waitFor,
} from '../helpers/postfix.js'

const NOTIFY_READER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    data, _ = s.recvfrom(65536)
    print(json.dumps({"message": data.decode()}), flush=True)
`

let pf: PostfixInstance
let scratch: string
let table: string
let unitPath: string

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-systemd-'})
  table = await pf.createTable('texthash', 'virtual', 'alice@example.com alice-box\n', {build: false})
  await pf.approve({read: [table]})
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-unit-'))
  const r = await runCommand('node', [PROJECT_BIN, 'install-systemd', '-c', pf.etc, '--unit-dir', scratch, '--apply', '--json'])
  assert.equal(r.code, 0, r.stderr)
  unitPath = (JSON.parse(r.stdout) as {path: string}).path
})

after(async () => {
  await pf?.destroy()
  if (scratch) fs.rmSync(scratch, {recursive: true, force: true})
})

/** ExecStart= and the like, split as systemd splits them (double quotes, backslash escapes). */
function unitCommand(unit: string, key: string): string[] {
  const line = unit.split('\n').find(l => l.startsWith(`${key}=`))
  assert.ok(line, `${key}= in the unit`)
  const words: string[] = []
  for (const m of line.slice(key.length + 1).matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g))
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2])
  return words
}

test('the unit passes systemd-analyze verify; a unit whose command is missing does not', async () => {
  const unit = fs.readFileSync(unitPath, 'utf8')
  assert.match(unit, /^Type=notify$/m)
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m)
  assert.match(unit, /^Restart=on-failure$/m)
  assert.match(unit, /^SyslogIdentifier=postfix\/proxymap$/m)
  // The manual page is #17's to install; verify checks it only where it is.
  const ok = await runCommand('systemd-analyze', ['verify', '--man=no', unitPath])
  assert.equal(ok.code, 0, ok.stderr)
  const broken = path.join(scratch, 'broken.service')
  fs.writeFileSync(broken, unit.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'))
  const bad = await runCommand('systemd-analyze', ['verify', '--man=no', broken])
  assert.notEqual(bad.code, 0)
  assert.match(bad.stderr, /nonexistent\/node/)
})

test('ExecStart under systemd: READY=1 once the sockets exist, ExecReload, journald lines, STOPPING=1 and exit 0 on SIGTERM', async () => {
  const notifySocket = path.join(scratch, 'notify')
  const reader = spawnTracked('python3', ['-c', NOTIFY_READER, notifySocket], {stdio: ['ignore', 'pipe', 'inherit']})
  const messages: string[] = []
  let socketsAtReady: boolean[] | undefined
  let bound = false
  let buffered = ''
  reader.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString()
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const record = JSON.parse(buffered.slice(0, nl)) as {bound?: boolean; message?: string}
      buffered = buffered.slice(nl + 1)
      if (record.bound) bound = true
      if (record.message !== undefined) {
        if (record.message.startsWith('READY=1'))
          socketsAtReady = [pf.socketPath('proxymap'), pf.socketPath('proxywrite')].map(p => fs.existsSync(p))
        messages.push(record.message)
      }
    }
  })
  let server: ChildProcess | undefined
  try {
    await waitFor(() => bound, 10_000, () => 'the notification reader did not bind')
    // journald's stream: systemd names it in $JOURNAL_STREAM as device:inode.
    const journalPath = path.join(scratch, 'journal')
    const journal = fs.openSync(journalPath, 'w')
    const st = fs.fstatSync(journal)
    const [command, ...args] = unitCommand(fs.readFileSync(unitPath, 'utf8'), 'ExecStart')
    server = spawnTracked(command, args, {
      stdio: ['ignore', 'ignore', journal],
      env: {...process.env, NOTIFY_SOCKET: notifySocket, JOURNAL_STREAM: `${st.dev}:${st.ino}`},
    })
    fs.closeSync(journal)
    const exited = new Promise<number | null>(resolve => server!.once('exit', code => resolve(code)))
    await waitFor(() => socketsAtReady, 15_000, () => `no READY=1; notifications: ${JSON.stringify(messages)}; log: ${fs.readFileSync(journalPath, 'utf8')}`)
    assert.deepEqual(socketsAtReady, [true, true], 'both sockets exist when systemd hears READY=1')
    assert.match(messages[0], new RegExp(`^READY=1\\nSTATUS=serving .*\\nMAINPID=${server.pid}$`))
    const r = await pf.postmap(['-q', 'alice@example.com', `proxy:${table}`])
    assert.deepEqual([r.code, r.stdout], [0, 'alice-box\n'])

    // systemctl reload: ExecReload as systemd runs it ($MAINPID is the server).
    const [reloadCommand, ...reloadArgs] = unitCommand(fs.readFileSync(unitPath, 'utf8'), 'ExecReload').map(w => w.replace('$MAINPID', String(server!.pid)))
    const reloaded = await runCommand(reloadCommand, reloadArgs)
    assert.equal(reloaded.code, 0, reloaded.stderr)
    await waitFor(() => messages.filter(m => m.startsWith('READY=1')).length >= 2, 10_000, () => `no READY=1 after the reload: ${JSON.stringify(messages)}`)
    assert.ok(messages.some(m => m.startsWith('RELOADING=1')), JSON.stringify(messages))
    assert.equal(server.exitCode, null, 'still running after the reload')
    const again = await pf.postmap(['-q', 'alice@example.com', `proxy:${table}`])
    assert.deepEqual([again.code, again.stdout], [0, 'alice-box\n'])

    server.kill('SIGTERM')
    assert.equal(await exited, 0)
    await waitFor(() => messages.some(m => m.startsWith('STOPPING=1')), 5_000, () => `no STOPPING=1: ${JSON.stringify(messages)}`)
    // Plain records with their priority: journald adds the date, host and tag.
    const lines = fs.readFileSync(journalPath, 'utf8').split('\n').filter(Boolean)
    assert.ok(lines.length >= 3, lines.join('\n'))
    for (const line of lines) assert.match(line, /^<[2-6]>(warning: |error: |fatal: )?[^<]/)
    assert.ok(lines.some(l => l.startsWith('<6>listening on ')), lines.join('\n'))
    assert.ok(lines.some(l => l === '<6>SIGTERM received -- shutting down'), lines.join('\n'))
  } finally {
    if (server && server.exitCode === null) server.kill('SIGKILL')
    reader.kill('SIGTERM')
  }
})

test('install-systemd --revert --apply removes the unit; an unwritable directory is a usage error with a hint', async () => {
  const r = await runCommand('node', [PROJECT_BIN, 'install-systemd', '-c', pf.etc, '--unit-dir', path.join(scratch, 'no', 'such'), '--apply'])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /^proxymap: cannot write .*no\/such\/.*\.service: .*\nproxymap: hint: /)
  const gone = await runCommand('node', [PROJECT_BIN, 'install-systemd', '-c', pf.etc, '--unit-dir', scratch, '--revert', '--apply'])
  assert.equal(gone.code, 0, gone.stderr)
  assert.equal(fs.existsSync(unitPath), false)
})

test('outside systemd a standalone serve logs to stderr and, as Postfix daemons, to maillog_file', async () => {
  const before = pf.maillog().length
  await pf.startOurs()
  try {
    const r = await pf.postmap(['-q', 'x', `proxy:texthash:${pf.etc}/not-approved`])
    assert.equal(r.code, 1)
    await pf.waitForOurStderr(/request for unapproved table/)
    const logged: string = await waitFor(() => {
      const text = pf.maillog().slice(before)
      return /proxymap\[\d+\]: warning: request for unapproved table/.test(text) ? text : undefined
    }, 5_000, () => `maillog: ${pf.maillog().slice(before)}`)
    // msg_logger.c's shape: "Dec 02 07:21:10 host syslog_name/proxymap[pid]: warning: ..."
    for (const line of logged.split('\n').filter(Boolean)) assert.match(line, /^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ \S+\/proxymap\[\d+\]: /)
    assert.match(pf.ourStderr(), /warning: request for unapproved table/)
  } finally {
    await pf.stopOurs()
  }
})
