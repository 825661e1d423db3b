/**
 * Proves that test/helpers/postfix.ts runs each real Postfix version it offers: the host's 3.7
 * and Debian's 3.10 (trixie) and 3.11 (sid) from their roots (built by .ci/postfix-roots.sh
 * when missing; PROXYMAP_SKIP_NEWER_POSTFIX=1 lets the 3.10/3.11 tests skip when that is
 * impossible). For each: that version's postmap builds the tables, that version's master and
 * proxymap answer that version's postmap through proxy:, reload works, and stop leaves nothing
 * behind. Then Postfix 3.11's clients against our server (the 3.11 wire dialect).
 *
 * Clients and servers are always of one version: 3.11 speaks another dialect than 3.7/3.10.
 *
 * Run: npm run build && node --import tsx --test test/interop/postfix-versions.test.ts   (as root)
 */
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {before, describe, it} from 'node:test'

import {
  POSTFIX_SBIN,
  POSTFIX_VERSIONS,
  PROJECT_ROOT,
  createPostfixInstance,
  pidAlive,
  postfixVersionUnavailable,
  processesUnder,
  requirePostfix,
  runCommand,
  type PostfixInstance,
  type PostfixVersion,
} from '../helpers/postfix.js'

const TABLE = 'alice\talice@example.com\nbob\tbob@example.com\nCarol\tcarol value with spaces\n'
const QUERIES = 'alice\nBOB\nCarol\nnosuch\n'

function exists(p: string): boolean {
  try {
    fs.lstatSync(p)
    return true
  } catch {
    return false
  }
}

/** The executable of every process of the instance, relative to its root (e.g. /usr/lib/postfix/sbin/master). */
function executables(pf: PostfixInstance): string[] {
  const prefix = pf.root === '/' ? '' : fs.realpathSync(pf.root)
  return pf.pids().map((p) => {
    const exe = fs.readlinkSync(`/proc/${p}/exe`)
    assert.ok(exe.startsWith(`${prefix}${POSTFIX_SBIN}/`), `pid ${p} runs ${exe}, not Postfix ${pf.version}'s`)
    return exe.slice(prefix.length)
  })
}

async function skipIfUnavailable(version: PostfixVersion, t: {skip(why: string): void}): Promise<boolean> {
  const why = await postfixVersionUnavailable(version)
  if (why) t.skip(why)
  return why !== undefined
}

describe('real Postfix 3.7, 3.10 and 3.11 (test/helpers/postfix.ts)', () => {
  before(() => requirePostfix())

  for (const version of POSTFIX_VERSIONS) {
    it(`Postfix ${version}: its postmap builds the tables, its proxymap answers, reload, clean stop`, async (t) => {
      if (await skipIfUnavailable(version, t)) return
      const pf = await createPostfixInstance({version})
      const rootReal = pf.root === '/' ? '' : fs.realpathSync(pf.root)
      try {
        assert.equal(pf.version, version)
        assert.ok(pf.mailVersion.startsWith(`${version}.`), `mailVersion ${pf.mailVersion}`)
        assert.equal(await pf.postconfGet('mail_version'), pf.mailVersion)
        const r0 = await pf.run('postconf', ['-dh', 'mail_version'])
        assert.deepEqual([r0.code, r0.stdout], [0, `${pf.mailVersion}\n`])
        if (version === '3.7') {
          assert.equal(pf.root, '/')
          assert.equal(pf.realDir, pf.dir)
          assert.equal(await pf.postconfGet('meta_directory'), '/etc/postfix')
        } else {
          assert.equal(fs.readlinkSync(pf.dir), pf.realDir, 'dir is a host symlink into the root')
          assert.equal(pf.realDir, rootReal + pf.dir)
          // main.cf leaves meta_directory alone: Debian's 3.11 has its plugins elsewhere
          assert.equal(await pf.postconfGet('meta_directory'), version === '3.11' ? '/usr/share/postfix' : '/etc/postfix')
        }
        assert.equal(fs.statSync(pf.dir).mode & 0o777, 0o755)

        const ldb = await pf.createTable('lmdb', 'ldb', TABLE)
        assert.ok(fs.existsSync(`${pf.etc}/ldb.lmdb`))
        const th = await pf.createTable('texthash', 'th', TABLE, {build: false})
        const w = await pf.createTable('lmdb', path.join(pf.data, 'w'), 'k1 v1\nk2 v2\n')
        assert.equal(fs.statSync(`${pf.data}/w.lmdb`).uid, fs.statSync(pf.data).uid, 'w.lmdb owned by postfix')
        await pf.approve({read: [ldb, th]})

        await pf.startPostfix()
        const master = pf.masterPid()
        assert.ok(master !== undefined, 'master pid')
        assert.ok(pf.pids().includes(master))
        assert.ok(executables(pf).includes(`${POSTFIX_SBIN}/master`))

        let r = await pf.postmap(['-q', 'alice', `proxy:${ldb}`])
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'alice@example.com\n', ''])
        r = await pf.postmap(['-q', 'Carol', `proxy:${ldb}`])
        assert.deepEqual([r.code, r.stdout], [0, 'carol value with spaces\n'])
        r = await pf.postmap(['-q', 'nosuch', `proxy:${ldb}`])
        assert.deepEqual([r.code, r.stdout, r.stderr], [1, '', ''])
        r = await pf.postmap(['-q', 'bob', `proxy:${th}`])
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'bob@example.com\n', ''])
        // The answers come from this version's proxymap, not from the client opening the table.
        assert.ok(executables(pf).includes(`${POSTFIX_SBIN}/proxymap`), `proxymap among ${executables(pf).join(' ')}`)
        await pf.waitForMaillog(new RegExp(`master\\[${master}\\]: daemon started -- version ${pf.mailVersion.replace(/\./g, '\\.')},`))

        // reload: a newly approved table is served by the same master afterwards
        r = await pf.postmap(['-q', 'k2', `proxy:${w}`])
        assert.equal(r.code, 1)
        assert.match(r.stderr, /not configured for table/)
        await pf.approve({read: [ldb, th, w], write: [w]})
        await pf.reloadPostfix()
        assert.equal(pf.masterPid(), master, 'reload keeps the master')
        r = await pf.postmap(['-q', 'k2', `proxy:${w}`])
        assert.deepEqual([r.code, r.stdout], [0, 'v2\n'])

        const running = pf.pids()
        assert.ok(running.length >= 3, `master + postlogd + proxymap(s): ${running.join(' ')}`)
        await pf.stopPostfix()
        assert.deepEqual(pf.pids(), [])
        assert.equal(pf.masterPid(), undefined)
        for (const p of running) assert.equal(pidAlive(p), false, `pid ${p} still alive`)
        assert.deepEqual(processesUnder(pf.dir, pf.realDir), [])
        assert.equal(fs.existsSync(pf.socketPath('proxymap')), false)
        assert.equal(fs.existsSync(pf.socketPath('proxywrite')), false)
      } finally {
        await pf.destroy()
      }
      assert.equal(exists(pf.dir), false, `${pf.dir} removed`)
      assert.equal(exists(pf.realDir), false, `${pf.realDir} removed`)
    })
  }

  it('cleans up a 3.11 instance (chrooted master, its directory in the root) when the test process exits', async (t) => {
    if (await skipIfUnavailable('3.11', t)) return
    const helper = path.join(PROJECT_ROOT, 'test', 'helpers', 'postfix.ts')
    const script = `
      import {createPostfixInstance} from ${JSON.stringify(helper)}
      const pf = await createPostfixInstance({version: '3.11'})
      await pf.startPostfix()
      console.log(JSON.stringify({dir: pf.dir, realDir: pf.realDir, pids: pf.pids()}))
      setTimeout(() => process.exit(0), 200)
    `
    const r = await runCommand(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: PROJECT_ROOT,
      timeoutMs: 60_000,
    })
    assert.equal(r.code, 0, r.stderr)
    const {dir, realDir, pids} = JSON.parse(r.stdout) as {dir: string; realDir: string; pids: number[]}
    assert.ok(pids.length >= 2, `it had started Postfix 3.11: ${pids.join(' ')}`)
    for (const p of pids) assert.equal(pidAlive(p), false, `pid ${p} survived`)
    assert.deepEqual(processesUnder(dir, realDir), [])
    assert.equal(exists(dir), false, `${dir} removed`)
    assert.equal(exists(realDir), false, `${realDir} removed`)
  })

  it("Postfix 3.11's postmap against our server (startOurs) answers as 3.11's own proxymap", async (t) => {
    if (await skipIfUnavailable('3.11', t)) return
    const pf = await createPostfixInstance({version: '3.11'})
    try {
      const ldb = await pf.createTable('lmdb', 'ldb', TABLE)
      const th = await pf.createTable('texthash', 'th', TABLE, {build: false})
      await pf.approve({read: [ldb, th]})
      const ask = async (): Promise<string[]> => {
        const out: string[] = []
        for (const table of [ldb, th]) {
          const one = await pf.postmap(['-q', 'alice', `proxy:${table}`])
          const many = await pf.postmap(['-q', '-', `proxy:${table}`], {input: QUERIES})
          out.push(JSON.stringify([one.code, one.stdout, one.stderr]), JSON.stringify([many.code, many.stdout, many.stderr]))
        }
        return out
      }

      await pf.startPostfix()
      const real = await ask()
      await pf.stopPostfix()

      await pf.startOurs()
      assert.equal(pf.pids().length, 0, 'no Postfix process while ours runs')
      const ours = await ask()
      assert.deepEqual(ours, real, `our server answers 3.11's postmap as 3.11's proxymap does\n${pf.ourStderr()}`)
      // And what that is. Unlike 3.7 (see harness.test.ts), 3.11 finds "Carol" through
      // proxy:texthash too, although the file's key is not folded (measured with 3.11.7).
      const all = 'alice\talice@example.com\nBOB\tbob@example.com\nCarol\tcarol value with spaces\n'
      assert.deepEqual(ours, [
        JSON.stringify([0, 'alice@example.com\n', '']),
        JSON.stringify([0, all, '']),
        JSON.stringify([0, 'alice@example.com\n', '']),
        JSON.stringify([0, all, '']),
      ])
      const stopped = await pf.stopOurs()
      assert.deepEqual([stopped.code, stopped.forced], [0, false], pf.ourStderr())
    } finally {
      await pf.destroy()
    }
    assert.deepEqual(processesUnder(pf.dir, pf.realDir), [])
  })
})
