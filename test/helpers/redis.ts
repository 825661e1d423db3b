// Private redis-server (and Sentinel) processes for outage and failover tests: loopback
// ports, no persistence, started and stopped by pid (the machine's Redis on 6379 is shared
// and never touched here).

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {ChildProcess} from 'node:child_process'
import {Redis} from 'ioredis'
import {runCommand, sleep, spawnTracked} from './postfix.js'

export const REDIS_SERVER = '/usr/bin/redis-server'

export function requireRedisServer(): void {
  if (!fs.existsSync(REDIS_SERVER)) throw new Error('redis-server is required for this test: apt-get install redis-server')
}

/** One raw command through redis-cli (a real client of its own), its output trimmed. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const r = await runCommand('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {timeoutMs: 10_000})
  if (r.code !== 0) throw new Error(`redis-cli -p ${port} ${args.join(' ')}: exit ${r.code}: ${r.stderr}`)
  return r.stdout.trim()
}

/** PEM files for a TLS-only server: it asks for a client certificate signed by `ca`. */
export interface RedisTlsFiles {ca: string; cert: string; key: string}

/** A CA, a server certificate for localhost/127.0.0.1 and a client certificate, made by openssl. */
export async function makeTlsFiles(dir: string): Promise<{server: RedisTlsFiles; client: RedisTlsFiles}> {
  const f = (name: string): string => path.join(dir, name)
  const openssl = async (...args: string[]): Promise<void> => {
    const r = await runCommand('openssl', args, {timeoutMs: 60_000})
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
  }
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=proxymap test CA')
  fs.writeFileSync(f('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  for (const who of ['server', 'client']) {
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=${who === 'server' ? 'localhost' : 'proxymap'}`)
    await openssl('x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${who}.pem`), '-days', '2', '-extfile', f('san.ext'))
  }
  // our serve reads them after it has become mail_owner (test keys, nothing secret)
  for (const name of fs.readdirSync(dir)) if (/\.(key|pem)$/.test(name)) fs.chmodSync(f(name), 0o644)
  const files = (who: string): RedisTlsFiles => ({ca: f('ca.pem'), cert: f(`${who}.pem`), key: f(`${who}.key`)})
  return {server: files('server'), client: files('client')}
}

export class PrivateRedis {
  private child?: ChildProcess
  /** Its working directory: a replica writes the master's snapshot there (dump.rdb). */
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-redis-'))

  /** `sentinelConfig`: run as a Sentinel with this configuration file (it rewrites it). */
  constructor(readonly port: number, private readonly extraArgs: string[] = [], private readonly sentinelConfig?: string,
    private readonly tls?: {server: RedisTlsFiles; client: RedisTlsFiles}) {}

  get pid(): number | undefined {
    return this.child?.pid
  }

  async start(): Promise<void> {
    const args = this.sentinelConfig
      ? [this.sentinelConfig, '--sentinel', '--port', String(this.port), '--bind', '127.0.0.1', '--save', '']
      : [...(this.tls
        ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.tls.server.cert, '--tls-key-file', this.tls.server.key,
          '--tls-ca-cert-file', this.tls.server.ca, '--tls-auth-clients', 'yes']
        : ['--port', String(this.port)]), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.extraArgs]
    const child = spawnTracked(REDIS_SERVER, [...args, '--dir', this.dir], {cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe']})
    this.child = child
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    const tls = this.tls && {ca: fs.readFileSync(this.tls.client.ca), cert: fs.readFileSync(this.tls.client.cert),
      key: fs.readFileSync(this.tls.client.key), servername: 'localhost'}
    const passwordAt = this.extraArgs.indexOf('--requirepass')
    const password = passwordAt >= 0 ? this.extraArgs[passwordAt + 1] : undefined
    const client = new Redis({host: '127.0.0.1', port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, tls, password})
    client.on('error', () => {}) // refused until it listens
    try {
      for (let i = 0; i < 200; i++) {
        if (child.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited: ${stderr}`)
        try {
          if (client.status !== 'ready') await client.connect()
          if ((await client.ping()) === 'PONG') return
        } catch {
          client.disconnect()
        }
        await sleep(25)
      }
      throw new Error(`redis-server on port ${this.port} did not answer PING`)
    } finally {
      client.disconnect()
    }
  }

  /** SIGKILL (an abrupt outage) or SIGTERM to our child only; waits until it has exited. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    await Promise.race([exited, sleep(10_000)])
  }

  /** Stopped for good: its directory goes too. */
  async destroy(): Promise<void> {
    await this.stop()
    fs.rmSync(this.dir, {recursive: true, force: true})
  }
}

/** A Sentinel configuration watching `master` on `masterPort` with quick failover. */
export function writeSentinelConfig(dir: string, master: string, masterPort: number): string {
  const file = path.join(dir, `sentinel-${masterPort}.conf`)
  fs.writeFileSync(file, [
    `sentinel monitor ${master} 127.0.0.1 ${masterPort} 1`,
    `sentinel down-after-milliseconds ${master} 500`,
    `sentinel failover-timeout ${master} 2000`,
    `sentinel parallel-syncs ${master} 1`,
    '',
  ].join('\n'))
  return file
}
