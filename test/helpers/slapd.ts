// A private OpenLDAP slapd for the ldap table tests: its own slapd.conf, an mdb database
// and ldapi:// socket in a temp directory, a free loopback port, fixtures loaded with
// ldapadd. Only the pid we started is ever signalled. A missing slapd or ldapadd throws
// (the calling test FAILS, it does not skip): CI installs slapd and ldap-utils.

import {ChildProcess} from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {runCommand, sleep, spawnTracked} from './postfix.js'
import {freeLoopbackPort} from './ports.js'

export const SLAPD = '/usr/sbin/slapd'
export const LDAPADD = '/usr/bin/ldapadd'
const SCHEMA_DIR = '/etc/ldap/schema'

export interface SlapdOptions {
  suffix: string
  rootDn: string
  rootPw: string
  /** Extra slapd.conf lines for the database section (access rules, limits). */
  databaseLines?: string[]
  /** Extra global slapd.conf lines (TLS settings). */
  globalLines?: string[]
  /** Also listen on ldaps://127.0.0.1:PORT (needs TLS settings in globalLines). */
  ldaps?: boolean
  /** Log every operation (slapd's "stats" level) to `log`. */
  stats?: boolean
}

export interface Slapd {
  readonly dir: string
  readonly port: number
  readonly ldapsPort?: number
  readonly url: string
  readonly ldapiPath: string
  readonly ldapiUrl: string
  readonly pid: number
  /** What slapd wrote to stderr since it last started (every operation with `stats`). */
  readonly log: string
  /** ldapadd the LDIF as the root DN. */
  add(ldif: string): Promise<void>
  /** SIGTERM our slapd (by pid) and wait for it to exit. */
  stop(): Promise<void>
  /** Start it again on the same port and database. */
  start(): Promise<void>
  /** stop() and remove the directory. */
  destroy(): Promise<void>
}

export function requireSlapd(): void {
  for (const f of [SLAPD, LDAPADD]) {
    try {
      fs.accessSync(f, fs.constants.X_OK)
    } catch {
      throw new Error(`${f} is required for the ldap table tests: apt-get install slapd ldap-utils postfix-ldap`)
    }
  }
}

function canConnectTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.createConnection({port, host: '127.0.0.1'})
    sock.once('connect', () => { sock.destroy(); resolve(true) })
    sock.once('error', () => { sock.destroy(); resolve(false) })
  })
}

export async function startSlapd(options: SlapdOptions): Promise<Slapd> {
  requireSlapd()
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'pm-slapd-')))
  fs.chmodSync(dir, 0o755)
  const dbDir = path.join(dir, 'db')
  fs.mkdirSync(dbDir)
  const port = await freeLoopbackPort()
  const ldapsPort = options.ldaps ? await freeLoopbackPort() : undefined
  const ldapiPath = path.join(dir, 'ldapi')
  const ldapiUrl = `ldapi://${encodeURIComponent(ldapiPath)}`
  const conf = path.join(dir, 'slapd.conf')
  fs.writeFileSync(conf, [
    ...['core', 'cosine', 'inetorgperson', 'nis'].map((s) => `include ${SCHEMA_DIR}/${s}.schema`),
    `pidfile ${path.join(dir, 'slapd.pid')}`,
    `argsfile ${path.join(dir, 'slapd.args')}`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    // Lets the tables that ask for protocol version 2 (upstream Postfix's default) bind.
    'allow bind_v2',
    ...(options.globalLines ?? []),
    'database mdb',
    'maxsize 10485760',
    `suffix "${options.suffix}"`,
    `rootdn "${options.rootDn}"`,
    `rootpw ${options.rootPw}`,
    `directory ${dbDir}`,
    ...(options.databaseLines ?? []),
    '',
  ].join('\n'))
  const urls = [`ldap://127.0.0.1:${port}/`, ldapiUrl, ...(ldapsPort ? [`ldaps://127.0.0.1:${ldapsPort}/`] : [])]

  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let stderr = ''
  const start = async (): Promise<void> => {
    stderr = ''
    // -d: stay in the foreground, so the pid we hold is slapd's own. PM_SLAPD_DEBUG=256
    // (slapd's "stats" level) shows every operation on our stderr.
    const debugLevel = process.env.PM_SLAPD_DEBUG ?? (options.stats ? '256' : undefined)
    const c = spawnTracked(SLAPD, ['-d', debugLevel ?? '0', '-f', conf, '-h', urls.join(' ')], {stdio: ['ignore', 'ignore', 'pipe']})
    child = c
    c.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (process.env.PM_SLAPD_DEBUG) process.stderr.write(d)
    })
    exited = new Promise((resolve) => c.once('exit', () => resolve()))
    for (let i = 0; i < 200; i++) {
      if (c.exitCode !== null) throw new Error(`slapd exited ${c.exitCode}: ${stderr}`)
      if (await canConnectTcp(port) && fs.existsSync(ldapiPath) && (!ldapsPort || await canConnectTcp(ldapsPort))) return
      await sleep(50)
    }
    throw new Error(`slapd did not start listening on 127.0.0.1:${port}: ${stderr}`)
  }
  const stop = async (): Promise<void> => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null || c.pid === undefined) return
    process.kill(c.pid, 'SIGTERM')
    const timer = setTimeout(() => { if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL') }, 10_000)
    await exited
    clearTimeout(timer)
  }
  await start()
  return {
    dir, port, ldapsPort, ldapiPath, ldapiUrl,
    url: `ldap://127.0.0.1:${port}`,
    get pid() { return child?.pid ?? 0 },
    get log() { return stderr },
    async add(ldif: string): Promise<void> {
      const r = await runCommand(LDAPADD, ['-x', '-H', ldapiUrl, '-D', options.rootDn, '-w', options.rootPw], {input: ldif, timeoutMs: 60_000})
      if (r.code !== 0) throw new Error(`ldapadd failed (${r.code}): ${r.stderr}`)
    },
    stop,
    start,
    async destroy(): Promise<void> {
      await stop()
      fs.rmSync(dir, {recursive: true, force: true})
    },
  }
}
