// A PRIVATE MariaDB for tests that must stop, restart or reconfigure the server (which the
// system MariaDB, shared with other tests and engineers, must never be): mariadb-install-db
// into a fresh directory, then mariadbd on a UNIX socket, and on request on a loopback TCP
// port too. Root has no password. Only the pid we started is ever signalled.

import * as fs from 'node:fs'
import * as path from 'node:path'
import type {ChildProcess} from 'node:child_process'

import {runCommand, sleep, spawnTracked} from './postfix.js'
import {freeLoopbackPort} from './ports.js'

export interface PrivateMariadbOptions {
  /** Also listen on 127.0.0.1 (a free port picked once, kept across restarts). */
  tcp?: boolean
}

export class PrivateMariadb {
  readonly socket: string
  private child?: ChildProcess

  private constructor(readonly dir: string, readonly port: number | undefined) {
    this.socket = path.join(dir, 'sock')
  }

  /** Install a data directory under `parent` and start the server (with `args`, e.g. --ssl-*). */
  static async create(parent: string, options: PrivateMariadbOptions = {}, args: string[] = []): Promise<PrivateMariadb> {
    const dir = fs.mkdtempSync(path.join(parent, 'mariadb-'))
    // mysql clients (postmap, as root or postfix) must reach the socket inside
    fs.chmodSync(dir, 0o755)
    const db = new PrivateMariadb(dir, options.tcp ? await freeLoopbackPort() : undefined)
    const install = await runCommand('mariadb-install-db', ['--no-defaults', `--datadir=${path.join(dir, 'data')}`,
      '--auth-root-authentication-method=normal', '--user=root', '--skip-test-db'], {timeoutMs: 120_000})
    if (install.code !== 0) throw new Error(`mariadb-install-db failed (${install.code}): ${install.stderr.slice(-2000)}`)
    await db.start(args)
    return db
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** Start mariadbd (stopped first if running); `args` replace those of the previous start. */
  async start(args: string[] = []): Promise<void> {
    await this.stop()
    const network = this.port !== undefined
      ? [`--port=${this.port}`, '--bind-address=127.0.0.1', '--skip-name-resolve']
      : ['--skip-networking']
    const errorLog = path.join(this.dir, 'error.log')
    const child = spawnTracked('/usr/sbin/mariadbd', [
      '--no-defaults', `--datadir=${path.join(this.dir, 'data')}`, `--socket=${this.socket}`, ...network, '--user=root',
      `--pid-file=${path.join(this.dir, 'pid')}`, `--log-error=${errorLog}`, ...args,
    ], {stdio: 'ignore'})
    this.child = child
    for (let i = 0; i < 150; i++) {
      if (!this.running) break
      if ((await runCommand('mysql', ['-S', this.socket, '-u', 'root', '-e', 'SELECT 1'], {timeoutMs: 5000})).code === 0) return
      await sleep(200)
    }
    const log = fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8').slice(-2000) : '(no error log)'
    await this.stop()
    throw new Error(`private mariadbd did not start: ${log}`)
  }

  /** SIGTERM to our mariadbd, and wait for it to exit. */
  async stop(): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  }

  /** Run SQL as root over the socket; the output of `mysql -NB`. */
  async sql(text: string): Promise<string> {
    const r = await runCommand('mysql', ['-NB', '-S', this.socket, '-u', 'root'], {input: text, timeoutMs: 60_000})
    if (r.code !== 0) throw new Error(`mysql on ${this.socket} failed (${r.code}): ${r.stderr}`)
    return r.stdout
  }
}
