// SIGHUP on a standalone `proxymap serve`, as `postfix reload` is to master(8): main.cf is
// read again, a table added to proxy_read_maps is approved, one removed is denied (even
// when it was open), and the process, its sockets and a client's connection carry on. A
// main.cf that cannot be read, or whose approval lists cannot be expanded, keeps the running
// configuration, with a warning. Real
// Postfix 3.7 clients (postmap) and one raw client connection held across the reload.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {POSTMAP, PostfixInstance, createPostfixInstance, requirePostfix, spawnTracked, waitFor} from '../helpers/postfix.js'

const ANNOUNCEMENT = 'protocol\0proxymap_protocol\0\0'
let pf: PostfixInstance
let first: string
let second: string
let third: string

/** One client connection speaking the ≤ 3.10 protocol, one request at a time. */
class HeldConnection {
  private buffer = ''
  private waiter?: () => void
  ended = false

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { this.buffer += d; this.waiter?.() })
    socket.on('close', () => { this.ended = true; this.waiter?.() })
    socket.on('error', () => undefined)
  }

  static async open(socketPath: string): Promise<HeldConnection> {
    const socket = net.createConnection({path: socketPath})
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const c = new HeldConnection(socket)
    assert.equal(await c.read(3), ANNOUNCEMENT)
    return c
  }

  /** Waits for `nuls` NUL bytes (a whole reply) and takes them. */
  private async read(nuls: number): Promise<string> {
    for (let i = 0; i < 500; i++) {
      let seen = 0
      for (let at = 0; at < this.buffer.length; at++) {
        if (this.buffer[at] !== '\0' || ++seen < nuls) continue
        const reply = this.buffer.slice(0, at + 1)
        this.buffer = this.buffer.slice(at + 1)
        return reply
      }
      if (this.ended) throw new Error(`the server closed the connection (buffered: ${JSON.stringify(this.buffer)})`)
      await new Promise<void>((resolve) => {
        this.waiter = resolve
        setTimeout(resolve, 20)
      })
    }
    throw new Error('no reply within 10 s')
  }

  /** A lookup as Postfix 3.7's postmap -q sends it; the reply's status and value. */
  async lookup(table: string, key: string): Promise<string> {
    this.socket.write(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0${key}\0\0`, 'latin1')
    return (await this.read(5)).replace(/\0/g, ' ').trim()
  }

  close(): void {
    this.socket.destroy()
  }
}

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-reload-'})
  first = await pf.createTable('texthash', 'first', 'a 1\n', {build: false})
  second = await pf.createTable('texthash', 'second', 'b 2\n', {build: false})
  third = await pf.createTable('texthash', 'third', 'c 3\n', {build: false})
  await pf.approve({read: [first, third], write: []})
})

after(async () => {
  await pf?.destroy()
})

const query = async (key: string, table: string): Promise<string> => {
  const r = await pf.postmap(['-q', key, `proxy:${table}`])
  return r.code === 0 ? r.stdout.trim() : /not configured for table/.test(r.stderr) ? 'DENY' : `code ${r.code}: ${r.stderr}`
}

test('SIGHUP: main.cf is read again; approvals change, the process, its sockets, open tables and connections stay', async () => {
  await pf.startOurs()
  const pid = pf.ourPid()!
  let held: HeldConnection | undefined
  try {
    held = await HeldConnection.open(pf.socketPath('proxymap'))
    assert.equal(await held.lookup(first, 'a'), 'status 0 value 1')
    assert.deepEqual([await query('b', second), await query('c', third)], ['DENY', '3'])

    await pf.approve({read: [first, second]})
    const logged = pf.ourStderr().length
    process.kill(pid, 'SIGHUP')
    await pf.waitForOurStderr(new RegExp(`proxymap\\[${pid}\\]: reload -- version \\S+, configuration ${pf.etc}\\n`))
    assert.equal(pf.ourPid(), pid, `still running after SIGHUP: ${JSON.stringify(pf.ourExit())}`)
    assert.ok(fs.existsSync(pf.socketPath('proxymap')) && fs.existsSync(pf.socketPath('proxywrite')), 'sockets kept')
    // the connection opened before the reload is still served, on the same socket
    assert.equal(await held.lookup(first, 'a'), 'status 0 value 1')
    assert.equal(held.ended, false)
    // added: approved; removed (and open before): denied, in Postfix's words
    assert.deepEqual([await query('b', second), await query('c', third), await query('a', first)], ['2', 'DENY', '1'])
    assert.match(pf.ourStderr().slice(logged), new RegExp(`warning: request for unapproved table: "${third}"`))
    assert.equal(await held.lookup(third, 'c'), 'status 4 value')

    // A main.cf the server (running as mail_owner) cannot read: the running configuration stays.
    const mainCf = path.join(pf.etc, 'main.cf')
    fs.chmodSync(mainCf, 0o600)
    try {
      process.kill(pid, 'SIGHUP')
      await pf.waitForOurStderr(/warning: cannot read .*main\.cf: permission denied.* -- keeping the current configuration/)
    } finally {
      fs.chmodSync(mainCf, 0o644)
    }
    // An approval list Postfix's proxymap would stop at (a truncated ${...}): the same.
    const stock = fs.readFileSync(mainCf, 'latin1')
    fs.writeFileSync(mainCf, `${stock}\nproxy_read_maps = proxy:${third} \${oops\n`)
    try {
      process.kill(pid, 'SIGHUP')
      await pf.waitForOurStderr(/warning: cannot expand parameter proxy_read_maps .*: truncated macro reference: .* -- keeping the current configuration/)
    } finally {
      fs.writeFileSync(mainCf, stock)
    }
    assert.equal(pf.ourPid(), pid)
    assert.deepEqual([await query('b', second), await query('c', third)], ['2', 'DENY'])
    assert.equal(await held.lookup(first, 'a'), 'status 0 value 1')
  } finally {
    held?.close()
    const stopped = await pf.stopOurs()
    assert.deepEqual({code: stopped.code, socketsLeft: stopped.socketsLeft}, {code: 0, socketsLeft: []}, pf.ourStderr())
  }
})

/** The sockets a process holds besides its stdio (which Node gives a child as socket pairs). */
function socketInodes(pid: number): string[] {
  return fs.readdirSync(`/proc/${pid}/fd`).filter(fd => Number(fd) > 2)
    .map(fd => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return '' } })
    .filter(l => l.startsWith('socket:')).sort()
}

test('a real Postfix client (postmap -q -) keeps its connection across SIGHUP and is answered on it', async () => {
  await pf.startOurs()
  const pid = pf.ourPid()!
  const client = spawnTracked(POSTMAP, ['-c', pf.etc, '-q', '-', `proxy:${first}`], {stdio: ['pipe', 'pipe', 'pipe']})
  let out = ''
  client.stdout!.on('data', d => { out += String(d) })
  const exited = new Promise<number | null>(resolve => client.once('exit', code => resolve(code)))
  try {
    // postmap connects to the service with its first request.
    client.stdin!.write('a\n')
    const before = await waitFor(() => { const s = socketInodes(client.pid!); return s.length > 0 ? s : undefined }, 10_000, () => 'postmap never connected')
    await new Promise(resolve => setTimeout(resolve, 300))
    const logged = pf.ourStderr().length
    process.kill(pid, 'SIGHUP')
    await waitFor(() => /reload -- version/.test(pf.ourStderr().slice(logged)), 10_000, () => pf.ourStderr().slice(logged))
    client.stdin!.write('nosuch\na\n')
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.deepEqual(socketInodes(client.pid!), before, 'the same connection, not a new one')
    client.stdin!.end()
    assert.equal(await exited, 0)
    // (postmap's stdout is buffered in a pipe: the answers arrive at its exit.)
    assert.equal(out, 'a\t1\na\t1\n')
    assert.equal(pf.ourPid(), pid)
  } finally {
    if (client.exitCode === null) client.kill('SIGKILL')
    await pf.stopOurs()
  }
})
