// Running under Postfix's master(8), as multi_server.c does: master passes the listening
// socket(s) on descriptors 6, 7, ..., a status pipe on descriptor 5, GENERATION in the
// environment and the generic daemon options on the command line.

import fs from 'node:fs'
import net from 'node:net'
import {
  approvalRulesFor, choosePostfixVersion, describePostfixVersion, invalidServiceNameMessage,
  loadMainConfig, resolveConfigDir, type PostfixVersionChoice,
} from '../config/index.js'
import type {MainConfig} from '../config/index.js'
import {Logger} from '../log/logger.js'
import {daemonLogSinks} from '../log/sinks.js'
import {defaultRegistry} from '../tables/registry.js'
import {NATIVE_ADDON_FILE, chroot, nativeAvailable, setsid} from '../native/index.js'
import {becomeAccount, lookupAccount} from './privileges.js'
import {masterDaemonTitle, setProcessTitle} from './process-title.js'
import {ServiceKind} from './proxymap-service.js'
import {InputBudget} from './input-budget.js'
import {MemoryReleaser} from './memory.js'
import {approvalPolicy, createServiceServer, parseTimeMs} from './standalone.js'
import {exitDeadline, ServiceGroup} from './shutdown.js'

export const MASTER_STATUS_FD = 5
export const MASTER_LISTEN_FD = 6
export const MASTER_STAT_TAKEN = 0
export const MASTER_STAT_AVAIL = 1

export interface MasterArgs {
  chroot: boolean
  foreground: boolean
  serviceName?: string
  transport?: string
  unprivileged: boolean
  verbose: number
  overrides: Record<string, string>
  socketCount: number
  /** Ours, not Postfix's: "--postfix-version V" among the master.cf arguments. */
  postfixVersion?: string
  /** Extra master.cf arguments after the options: proxymap takes none. */
  rest: string[]
}

/** The one long option a master.cf entry may add to Postfix's own: which release's rules to follow. */
export const POSTFIX_VERSION_OPTION = '--postfix-version'

/**
 * Postfix's getopt string for multi-threaded servers: "cdDi:lm:n:o:s:St:uvVz", plus our
 * --postfix-version V (or --postfix-version=V), which master.cf can append to the command.
 */
export function parseMasterArgs(argv: string[]): MasterArgs {
  const parsed: MasterArgs = {chroot: false, foreground: false, unprivileged: false, verbose: 0, overrides: {}, socketCount: 1, rest: []}
  const withValue = new Set(['i', 'm', 'n', 'o', 's', 't'])
  let i = 0
  for (; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') { i++; break }
    if (arg === POSTFIX_VERSION_OPTION || arg.startsWith(`${POSTFIX_VERSION_OPTION}=`)) {
      const value = arg === POSTFIX_VERSION_OPTION ? argv[++i] : arg.slice(POSTFIX_VERSION_OPTION.length + 1)
      if (value === undefined) throw new Error(`option requires an argument -- ${POSTFIX_VERSION_OPTION.slice(2)}`)
      parsed.postfixVersion = value
      continue
    }
    if (!arg.startsWith('-') || arg === '-') break
    for (let j = 1; j < arg.length; j++) {
      const opt = arg[j]
      let value: string | undefined
      if (withValue.has(opt)) {
        value = j + 1 < arg.length ? arg.slice(j + 1) : argv[++i]
        if (value === undefined) throw new Error(`option requires an argument -- ${opt}`)
        j = arg.length
      }
      switch (opt) {
        case 'c': parsed.chroot = true; break
        case 'd': parsed.foreground = true; break
        case 'D': case 'l': case 'S': case 'V': case 'z': break
        case 'i': parsed.overrides.max_idle = value!; break
        case 'm': parsed.overrides.max_use = value!; break
        case 'n': parsed.serviceName = value; break
        case 'o': {
          const eq = value!.indexOf('=')
          if (eq <= 0) throw new Error(`invalid "-o ${value}" option value: missing '=' after attribute name`)
          parsed.overrides[value!.slice(0, eq).trim()] = value!.slice(eq + 1).trim()
          break
        }
        case 's': {
          const n = Number.parseInt(value!, 10)
          if (!(n > 0)) throw new Error(`invalid socket_count: ${value}`)
          parsed.socketCount = n
          break
        }
        case 't': parsed.transport = value; break
        case 'u': parsed.unprivileged = true; break
        case 'v': parsed.verbose++; break
        default: throw new Error(`invalid option: ${opt}`)
      }
    }
  }
  parsed.rest = argv.slice(i)
  return parsed
}

/** master(8) starts daemons with GENERATION set and its status channel (a socketpair) on fd 5. */
export function startedByMaster(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.GENERATION === undefined) return false
  try {
    const status = fs.fstatSync(MASTER_STATUS_FD)
    return status.isSocket() || status.isFIFO()
  } catch {
    return false
  }
}


/**
 * Serve until master goes away, max_use clients have been served, or max_idle passes
 * without a client. Resolves with the process exit code.
 */
export async function runUnderMaster(argv: string[]): Promise<number> {
  setProcessTitle(masterDaemonTitle(argv))
  const args = parseMasterArgs(argv)
  const serviceName = args.serviceName ?? 'proxymap'
  const config = loadMainConfig({configDir: resolveConfigDir(undefined), overrides: {...args.overrides, service_name: serviceName}})
  const log = new Logger(Logger.tagFor(config.get('syslog_name'), 'proxymap'), daemonLogSinks(config))
  log.verbose = args.verbose
  if (args.rest.length > 0) {
    log.fatal(`unexpected command-line argument: ${args.rest[0]}`)
    return 1
  }
  // Chosen now, while the installed postconf is reachable (before any chroot).
  let choice: PostfixVersionChoice
  try {
    choice = choosePostfixVersion({option: args.postfixVersion, env: process.env, config})
  } catch (err) {
    log.fatal((err as Error).message)
    return 1
  }
  log.debug(`following the ${describePostfixVersion(choice)}`)
  // Postfix: the service is chosen by its name, and only these two exist.
  let kind: ServiceKind
  if (serviceName === 'proxywrite') kind = 'write'
  else if (serviceName === 'proxymap') kind = 'read'
  else {
    log.fatal(invalidServiceNameMessage(choice.version, serviceName))
    return 1
  }
  if (args.chroot && !nativeAvailable()) {
    log.fatal(`chroot needs the native addon (${NATIVE_ADDON_FILE}): install libdb5.3-dev and run npm rebuild, or set the chroot column of this master.cf service to "n"`)
    return 1
  }
  // Table types are imported when first opened, and inside the jail their modules are out of
  // reach: all of them now, before the sockets accept a client that could open one.
  if (args.chroot) await defaultRegistry.loadAll()

  const generation = Number.parseInt(process.env.GENERATION ?? '0', 8) >>> 0
  const notify = (avail: number): void => {
    const status = Buffer.alloc(12)
    status.writeInt32LE(process.pid, 0)
    status.writeUInt32LE(generation, 4)
    status.writeInt32LE(avail, 8)
    try { fs.writeSync(MASTER_STATUS_FD, status) } catch { /* master is gone; the EOF watch ends us */ }
  }

  const maxUse = Number.parseInt(config.get('max_use'), 10) || 0
  const maxIdleMs = parseTimeMs(config.get('max_idle'))
  const group = new ServiceGroup()
  const budget = new InputBudget()
  const memory = new MemoryReleaser()
  const servers: net.Server[] = []
  let useCount = 0
  let idleTimer: NodeJS.Timeout | undefined
  let finish: (code: number) => void = () => undefined
  const done = new Promise<number>(resolve => { finish = resolve })

  let stopping = false
  const stop = (reason: string): void => {
    if (stopping) return
    stopping = true
    log.debug(reason)
    clearTimeout(idleTimer)
    memory.stop()
    exitDeadline(log, () => group.stillOpen(), () => finish(0))
    group.shutdown(servers).then(() => finish(0), () => finish(0))
  }
  const armIdle = (): void => {
    clearTimeout(idleTimer)
    if (maxIdleMs > 0) idleTimer = setTimeout(() => stop('idle timeout -- exiting'), maxIdleMs)
  }

  // One process, one authorization table, however many sockets master hands it.
  const policy = approvalPolicy(config, kind, approvalRulesFor(choice.version), log)
  for (let n = 0; n < args.socketCount; n++) {
    const server = createServiceServer({kind, config, log, registry: defaultRegistry, policy, budget, memory}, group, {
      onConnect: () => {
        clearTimeout(idleTimer)
        useCount++
        // One process serves every client concurrently, so it stays available to master;
        // after max_use it stops accepting and lets master start a successor.
        if (maxUse > 0 && useCount >= maxUse) {
          notify(MASTER_STAT_TAKEN)
          for (const s of servers) s.close()
        }
      },
      onClose: () => {
        if (group.connectionCount > 0 || stopping) return
        if (maxUse > 0 && useCount >= maxUse) stop('use limit -- exiting')
        else armIdle()
      },
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({fd: MASTER_LISTEN_FD + n}, () => { server.off('error', reject); resolve() })
    })
    servers.push(server)
  }

  // EOF on the status pipe: master exited or started a new generation (postfix reload).
  const statusWatch = new net.Socket({fd: MASTER_STATUS_FD, readable: true, writable: false})
  statusWatch.on('data', () => undefined)
  statusWatch.on('end', () => stop('master disconnect -- exiting'))
  statusWatch.on('error', () => stop('master disconnect -- exiting'))
  // postfix stop: master signals its process group. Postfix's daemons die at once and their
  // clients retry against a vanished server; ours answer what is in progress first.
  process.once('SIGTERM', () => stop('SIGTERM received -- exiting'))

  // Start-up as multi_server does it: look the account up while the name service is
  // still reachable, enter the jail, then give up root.
  const account = args.unprivileged && process.getuid?.() === 0 ? lookupAccount(config.get('mail_owner')) : undefined
  if (account?.uid === 0) {
    log.fatal(`mail_owner "${account.name}" has uid 0: refusing to run lookups as root`)
    return 1
  }
  if (kind === 'write') {
    // Never be killed by a signal to master's process group in the middle of an update.
    if (nativeAvailable()) { try { setsid() } catch { /* already a process group leader */ } }
    else { process.on('SIGHUP', () => undefined); process.on('SIGINT', () => undefined) }
  }
  if (args.chroot) {
    const jail = config.get('queue_directory')
    chroot(jail)
    process.chdir('/')
  }
  if (account) becomeAccount(account)
  else if (process.getuid?.() === 0) {
    log.fatal('refusing to run as root: add the -u option (unprivileged column "-" or "y" in master.cf)')
    return 1
  }
  log.debug('daemon started')
  armIdle()
  const code = await done
  statusWatch.destroy()
  return code
}
