/**
 * Proves test/helpers/postfix.ts: a private real Postfix 3.7 answers real clients through
 * proxy:, denies unapproved tables as Postfix does, stops without leaving anything behind;
 * startOurs()/stopOurs() drive a server on the same sockets; the exit handler cleans up.
 *
 * Run: node --import tsx --test test/interop/harness.test.ts   (as root, Postfix installed)
 */
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {before, describe, it} from 'node:test'

import {
  BUILT_SERVE_COMMAND,
  PROJECT_ROOT,
  createPostfixInstance,
  pidAlive,
  processesUnder,
  requirePostfix,
  type PostfixInstance,
} from '../helpers/postfix.js'

const TABLE = 'alice\talice@example.com\nbob\tbob@example.com\nCarol\tcarol value with spaces\n'

/**
 * A tiny proxymap stand-in (legacy 3.7 dialect) for startOurs() tests that must not depend
 * on the project's server: argv = TABLEFILE SOCKET...; approves only texthash:TABLEFILE.
 */
const STAND_IN = String.raw`
const net = require('node:net'), fs = require('node:fs')
const [file, ...socketPaths] = process.argv.slice(1)
const table = 'texthash:' + file
const map = new Map()
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  const m = /^(\S+)\s+(.*)$/.exec(line)
  if (m) map.set(m[1].toLowerCase(), m[2])
}
const enc = (pairs) => Buffer.from(pairs.map(([k, v]) => k + '\0' + v + '\0').join('') + '\0', 'latin1')
const conns = new Set()
const servers = socketPaths.map((p) => net.createServer((c) => {
  conns.add(c); c.on('close', () => conns.delete(c)); c.on('error', () => {})
  c.write(enc([['protocol', 'proxymap_protocol']]))
  let buf = Buffer.alloc(0)
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    for (;;) {
      const f = []; let pos = 0, done = false
      for (;;) {
        const z = buf.indexOf(0, pos); if (z < 0) break
        const s = buf.toString('latin1', pos, z); pos = z + 1
        if (f.length % 2 === 0 && s === '') { done = true; break }
        f.push(s)
      }
      if (!done) return
      buf = buf.subarray(pos)
      const req = {}; for (let i = 0; i < f.length; i += 2) req[f[i]] = f[i + 1]
      const name = String(req.table).replace(/^(proxy:)+/, '')
      const ok = name === table
      if (!ok) process.stderr.write('stand-in: warning: request for unapproved table: "' + name + '"\n')
      let reply
      if (req.request === 'open') reply = [['status', ok ? 0 : 4], ['flags', ok ? 16 : 0]]
      else if (req.request === 'lookup') {
        const v = ok ? map.get(req.key) : undefined
        reply = [['status', !ok ? 4 : v === undefined ? 1 : 0], ['value', v ?? '']]
      } else reply = [['status', 3]]
      c.write(enc(reply))
    }
  })
}).listen(p))
process.stderr.write('stand-in: listening on ' + socketPaths.join(' ') + ' pid ' + process.pid + '\n')
process.on('SIGTERM', () => {
  for (const c of conns) c.destroy()
  let n = servers.length
  for (const s of servers) s.close(() => { if (--n === 0) process.exit(0) })
})
`

function standInCommand(tableFile: string) {
  return (inst: PostfixInstance): string[] => [
    process.execPath,
    '-e',
    STAND_IN,
    tableFile,
    inst.socketPath('proxymap'),
    inst.socketPath('proxywrite'),
  ]
}

describe('test/helpers/postfix.ts', () => {
  before(() => requirePostfix())

  it('runs a real Postfix proxymap: proxy: lookups, DENY, reload, proxywrite, clean stop', async () => {
    const pf = await createPostfixInstance()
    try {
      assert.equal(fs.statSync(pf.dir).mode & 0o777, 0o755)
      const th = await pf.createTable('texthash', 'th', TABLE, {build: false})
      assert.equal(th, `texthash:${pf.etc}/th`)
      await pf.approve({read: [th]})
      assert.equal(await pf.postconfGet('proxy_read_maps'), `proxy:${th}`)

      await pf.startPostfix()
      const master = pf.masterPid()
      assert.ok(master !== undefined, 'master pid')
      assert.ok(pf.pids().includes(master))
      assert.ok(await pf.isAccepting('proxymap'))
      assert.ok(await pf.isAccepting('proxywrite'))

      let r = await pf.postmap(['-q', 'alice', `proxy:${th}`])
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'alice@example.com\n', ''])
      // The client folds keys (BOB -> bob); proxymap does not fold texthash keys from the
      // file, so "Carol" in the file is never found through proxy: (a real Postfix fact).
      r = await pf.postmap(['-q', '-', `proxy:${th}`], {input: 'alice\nBOB\nCarol\nnosuch\n'})
      assert.equal(r.code, 0)
      assert.equal(r.stdout, 'alice\talice@example.com\nBOB\tbob@example.com\n')
      r = await pf.postalias(['-q', 'bob', `proxy:${th}`])
      assert.deepEqual([r.code, r.stdout], [0, 'bob@example.com\n'])
      r = await pf.postmap(['-q', 'nosuch', `proxy:${th}`])
      assert.deepEqual([r.code, r.stdout, r.stderr], [1, '', ''])

      // Not in proxy_read_maps: DENY, which real 3.7 clients turn into a fatal error.
      const denied = `texthash:${pf.etc}/notlisted`
      r = await pf.postmap(['-q', 'alice', `proxy:${denied}`])
      assert.equal(r.code, 1)
      assert.equal(r.timedOut, false)
      assert.equal(r.stdout, '')
      assert.equal(r.stderr, `postmap: fatal: proxymap service is not configured for table "${denied}"\n`)
      assert.ok(r.ms >= 900, `Postfix sleeps 1 s before a fatal exit (took ${r.ms} ms)`)
      await pf.waitForMaillog(/postfix-harness\/proxymap\[\d+\]: warning: request for unapproved table: "texthash:\S+\/notlisted"/)
      await pf.waitForMaillog(/warning: to approve this table for read-only access, list proxy:texthash:\S+\/notlisted in main\.cf:proxy_read_maps/)

      // Tables made by real postmap: read-only lmdb in etc (root), writable lmdb in data (postfix).
      const ldb = await pf.createTable('lmdb', 'ldb', TABLE)
      assert.ok(fs.existsSync(`${pf.etc}/ldb.lmdb`))
      const w = await pf.createTable('lmdb', path.join(pf.data, 'w'), 'k1 v1\nk2 v2\n')
      assert.equal(fs.statSync(`${pf.data}/w.lmdb`).uid, fs.statSync(pf.data).uid, 'w.lmdb owned by postfix')
      await pf.approve({read: [th, ldb, w], write: [w]})

      // proxymap has read the old lists: the new table is denied until a reload.
      r = await pf.postmap(['-q', 'alice', `proxy:${ldb}`])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /not configured for table/)
      await pf.reloadPostfix()
      assert.equal(pf.masterPid(), master, 'reload keeps the master')
      r = await pf.postmap(['-q', 'ALICE', `proxy:${ldb}`])
      assert.deepEqual([r.code, r.stdout], [0, 'alice@example.com\n'])

      // proxywrite: real postmap -d through proxy:
      r = await pf.postmap(['-d', 'k1', `proxy:${w}`])
      assert.deepEqual([r.code, r.stderr], [0, ''])
      r = await pf.postmap(['-q', 'k1', `proxy:${w}`])
      assert.equal(r.code, 1)
      r = await pf.postmap(['-q', 'k2', `proxy:${w}`])
      assert.deepEqual([r.code, r.stdout], [0, 'v2\n'])

      const running = pf.pids()
      assert.ok(running.length >= 3, `master + postlogd + proxymap(s): ${running.join(' ')}`)
      await pf.stopPostfix()
      assert.deepEqual(pf.pids(), [])
      for (const p of running) assert.equal(pidAlive(p), false, `pid ${p} still alive`)
      assert.equal(pf.masterPid(), undefined)
      assert.equal(fs.existsSync(pf.socketPath('proxymap')), false)
      assert.equal(fs.existsSync(pf.socketPath('proxywrite')), false)
      assert.deepEqual(processesUnder(pf.dir), [])
      assert.match(pf.maillog(), /master\[\d+\]: daemon started -- version 3\.7\./)
    } finally {
      await pf.destroy()
    }
    assert.equal(fs.existsSync(pf.dir), false)
  })

  it('runs "our" server (a stand-in via ourCommand) beside real Postfix, and in turn with it', async () => {
    // Two instances: real Postfix on one, "ours" on the other, same table names.
    const real = await createPostfixInstance()
    const th = await real.createTable('texthash', 'th', TABLE, {build: false})
    const ours = await createPostfixInstance({ourCommand: standInCommand(`${real.etc}/th`)})
    try {
      for (const inst of [real, ours]) await inst.approve({read: [th]})
      await real.startPostfix()
      await ours.startOurs()
      const ourPid = ours.ourPid()
      assert.ok(ourPid !== undefined && pidAlive(ourPid))
      // The sockets accept before the stand-in's stderr line reaches us: wait for the line.
      await ours.waitForOurStderr(/stand-in: listening on .*\/private\/proxymap .*\/private\/proxywrite/)

      for (const inst of [real, ours]) {
        const r = await inst.postmap(['-q', '-', `proxy:${th}`], {input: 'alice\nbob\nnosuch\n'})
        assert.deepEqual([r.code, r.stdout], [0, 'alice\talice@example.com\nbob\tbob@example.com\n'], inst.dir)
      }
      const denied = `texthash:${real.etc}/notlisted`
      const r = await ours.postmap(['-q', 'alice', `proxy:${denied}`])
      assert.equal(r.code, 1)
      assert.equal(r.stderr, `postmap: fatal: proxymap service is not configured for table "${denied}"\n`)
      await ours.waitForOurStderr(/request for unapproved table: "texthash:\S+\/notlisted"/)

      // One server per instance at a time.
      await assert.rejects(ours.startPostfix(), /our server is running/)
      await assert.rejects(ours.startOurs(), /already running/)
      await assert.rejects(real.startOurs(), /Postfix is running/)

      const stopped = await ours.stopOurs()
      assert.deepEqual(stopped, {code: 0, signal: null, forced: false, socketsLeft: []})
      assert.equal(ours.ourPid(), undefined)
      assert.equal(pidAlive(ourPid), false)

      // In turn on one instance: real Postfix after ours, then ours again after Postfix.
      await ours.startPostfix()
      let q = await ours.postmap(['-q', 'bob', `proxy:${th}`])
      assert.deepEqual([q.code, q.stdout], [0, 'bob@example.com\n'])
      await ours.stopPostfix()
      await ours.startOurs()
      q = await ours.postmap(['-q', 'carol', `proxy:${th}`])
      assert.deepEqual([q.code, q.stdout], [0, 'carol value with spaces\n'])
    } finally {
      await ours.destroy()
      await real.destroy()
    }
    assert.deepEqual([...processesUnder(real.dir), ...processesUnder(ours.dir)], [])
  })

  it('startOurs reports a server that dies at start-up, with its stderr', async () => {
    const inst = await createPostfixInstance({
      ourCommand: [process.execPath, '-e', 'console.error("boom: cannot listen"); process.exit(3)'],
    })
    try {
      await assert.rejects(inst.startOurs(), (e: Error) => {
        assert.match(e.message, /our server exited during start-up/)
        assert.match(e.message, /"code":3/)
        assert.match(e.message, /boom: cannot listen/)
        return true
      })
      assert.equal(inst.ourPid(), undefined)
    } finally {
      await inst.destroy()
    }
  })

  for (const how of ['exit', 'SIGTERM'] as const) {
    it(`cleans up what it started when the test process ends (${how})`, async () => {
      const helper = path.join(PROJECT_ROOT, 'test', 'helpers', 'postfix.ts')
      const script = `
        import {createPostfixInstance, runCommand} from ${JSON.stringify(helper)}
        const pf = await createPostfixInstance()
        await pf.startPostfix()
        // stands for a real client that retries forever
        void runCommand('/bin/sleep', ['600'], {cwd: pf.dir, timeoutMs: 600000})
        const listen = "const net = require('node:net'); for (const p of process.argv.slice(1)) net.createServer((c) => c.end()).listen(p)"
        const ours = await createPostfixInstance({
          ourCommand: (i) => [process.execPath, '-e', listen, i.socketPath('proxymap'), i.socketPath('proxywrite')],
        })
        await ours.startOurs()
        console.log(JSON.stringify({dir: pf.dir, pids: pf.pids(), oursDir: ours.dir, ourPid: ours.ourPid()}))
        ${how === 'exit' ? 'setTimeout(() => process.exit(0), 300)' : 'setInterval(() => {}, 1000)'}
      `
      const child = await import('node:child_process')
      const proc = child.spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: PROJECT_ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (how === 'SIGTERM' && out.includes('\n')) setTimeout(() => proc.kill('SIGTERM'), 300)
      })
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        proc.once('exit', (c, s) => resolve([c, s])),
      )
      const {dir, pids, oursDir, ourPid} = JSON.parse(out) as {dir: string; pids: number[]; oursDir: string; ourPid: number}
      if (how === 'exit') assert.equal(code, 0)
      else assert.equal(signal, 'SIGTERM')
      assert.ok(pids.length >= 2, `it had started Postfix: ${pids.join(' ')}`)
      for (const p of pids) assert.equal(pidAlive(p), false, `pid ${p} survived`)
      assert.deepEqual(processesUnder(dir), [])
      assert.equal(fs.existsSync(dir), false, `${dir} removed`)
      assert.equal(pidAlive(ourPid), false, `our server (pid ${ourPid}) survived`)
      assert.equal(fs.existsSync(oursDir), false, `${oursDir} removed`)
    })
  }

  it(
    'starts the project server (node bin/run.js serve -c ETC) by default',
    {skip: !fs.existsSync(BUILT_SERVE_COMMAND) && `${BUILT_SERVE_COMMAND} not built yet`},
    async () => {
      const inst = await createPostfixInstance()
      try {
        const th = await inst.createTable('texthash', 'th', TABLE, {build: false})
        await inst.approve({read: [th]})
        await inst.startOurs()
        const r = await inst.postmap(['-q', 'alice', `proxy:${th}`])
        assert.deepEqual([r.code, r.stdout], [0, 'alice@example.com\n'], inst.ourStderr())
        const stopped = await inst.stopOurs()
        assert.equal(stopped.forced, false, inst.ourStderr())
        assert.equal(stopped.code, 0, inst.ourStderr())
      } finally {
        await inst.destroy()
      }
    },
  )
})
