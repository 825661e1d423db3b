/**
 * A private, throwaway REAL Postfix instance for tests and benchmarks: the host's 3.7 by
 * default, or Debian's 3.10 (trixie) or 3.11 (sid) with {version: '3.10' | '3.11'}.
 *
 * The TypeScript twin of /work/shared/postfix-harness/pf-instance.sh + mk-tables.sh:
 *
 *   DIR/etc      main.cf, master.cf (only proxymap, proxywrite, postlog), table files (root, 0644)
 *   DIR/spool    queue_directory: private/{proxymap,proxywrite} sockets, public/postlog, pid/
 *   DIR/data     data_directory, owned by postfix: writable tables live here
 *   DIR/maillog  maillog_file, written by postlogd while master runs
 *
 * Either real Postfix (master(8) + proxymap(8)) or our server (`proxymap serve -c DIR/etc`)
 * listens on the instance's sockets, never both. To compare the two side by side, create two
 * instances, keep the table files in one of them (absolute paths are part of the table name on
 * the wire, so both servers must see the same names) and give both the same proxy_read_maps /
 * proxy_write_maps; or start and stop them in turn on one instance.
 *
 * What real Postfix taught (see the shared harness README):
 * - DIR and all its parents must be traversable by user postfix (mkdtemp gives 0700).
 * - meta_directory = /etc/postfix, or the lmdb/cdb/pcre/sqlite plugins are not found.
 * - proxymap reads proxy_read_maps/proxy_write_maps once per process: reload after postconf.
 * - Real clients retry forever on errors (~100 s on a missing socket): always run them under a
 *   timeout (postmap()/postalias()/runCommand() do).
 * - A killed server leaves its socket file behind: sockets are removed before every start.
 * - A DENY makes a real 3.7 client exit 1 after sleeping 1 s.
 * - Postfix waits (300 ms steps, up to ~2 s) before reading a file modified less than ~2 s ago:
 *   main.cf in every Postfix program, texthash sources in proxymap and postmap. writeFile() and
 *   postconf() therefore backdate the mtime by BACKDATE_SECONDS (order of writes is kept);
 *   pass {backdate: false} to observe the real delay.
 * - master -w daemonizes: the real master is not our child; it and its daemons are found by
 *   their cwd (== DIR/spool) and executable (under /usr/lib/postfix/sbin).
 *
 * Postfix 3.10 and 3.11 run from debootstrapped Debian roots (./postfix-roots.ts builds them
 * with .ci/postfix-roots.sh when missing; PROXYMAP_SKIP_NEWER_POSTFIX=1 lets their tests skip
 * when a root cannot be built, see postfixVersionUnavailable). Such an instance's DIR is a host
 * symlink to ROOT+DIR, so DIR/... names the same files on the host and inside the root: the
 * root's programs run with chroot(8) and name DIR as the host does, and our server (startOurs)
 * still runs on the host against DIR/etc. Seen from the host, the root's processes have
 * /proc/PID/cwd = realpath(ROOT)+DIR/spool and exe = realpath(ROOT)/usr/lib/postfix/sbin/...
 * For 3.10/3.11, main.cf leaves meta_directory to the version's default (3.11: /usr/share/postfix).
 * Postfix 3.11 speaks another wire dialect than 3.7 and 3.10: never point the host's 3.7
 * clients (POSTMAP, runCommand) at a 3.11 proxymap; use the instance's postmap()/run().
 *
 * Cleanup: every process started here (master, our server, client commands) is remembered by
 * pid and killed from a process 'exit' handler (and SIGINT/SIGTERM/SIGHUP), so a failing test
 * does not leave servers or forever-retrying clients behind. Set PFX_KEEP=1 to keep the
 * directories of destroyed instances for inspection.
 */
import {spawn, execFileSync, type ChildProcess, type SpawnOptions} from 'node:child_process'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {after} from 'node:test'
import {fileURLToPath} from 'node:url'

import {
  ROOT_PATH,
  ensurePostfixRoot,
  isRootedVersion,
  skipNewerPostfixAllowed,
  type PostfixRoot,
} from './postfix-roots.js'

export {postfixRootsDir, ROOTS_SCRIPT} from './postfix-roots.js'

export const POSTFIX_SBIN = '/usr/lib/postfix/sbin'
export const MASTER = `${POSTFIX_SBIN}/master`
export const POSTMAP = '/usr/sbin/postmap'
export const POSTALIAS = '/usr/sbin/postalias'
export const POSTCONF = '/usr/sbin/postconf'
const CHROOT = '/usr/sbin/chroot'

/**
 * The real Postfix versions an instance can run: the host's (3.7, the default) and Debian's
 * 3.10 and 3.11 from their roots. The paths above are the same inside the roots.
 */
export const POSTFIX_VERSIONS = ['3.7', '3.10', '3.11'] as const
export type PostfixVersion = (typeof POSTFIX_VERSIONS)[number]

/** The project root (/work/main), found relative to this file. */
export const PROJECT_ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')
/** The project's CLI entry point. */
export const PROJECT_BIN = path.join(PROJECT_ROOT, 'bin', 'run.js')
/** Exists once `npm run build` has compiled src/commands/serve.ts. */
export const BUILT_SERVE_COMMAND = path.join(PROJECT_ROOT, 'dist', 'commands', 'serve.js')

export type Service = 'proxymap' | 'proxywrite'
export const SERVICES: readonly Service[] = ['proxymap', 'proxywrite']

const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000
const DEFAULT_CLIENT_TIMEOUT_MS = 20_000
const MAX_CAPTURE = 16 * 1024 * 1024
/** How far writeFile()/postconf() move mtimes into the past (see the header comment). */
export const BACKDATE_SECONDS = 10

/** Sets a file's mtime/atime BACKDATE_SECONDS into the past. */
export async function backdate(file: string): Promise<void> {
  const t = Date.now() / 1000 - BACKDATE_SECONDS
  await fsp.utimes(file, t, t)
}

// ---------------------------------------------------------------------------- prerequisites

/**
 * Throws (making the calling test FAIL, never skip) when real Postfix is not installed or
 * we are not root.
 */
export function requirePostfix(): void {
  const missing = [MASTER, POSTMAP, POSTALIAS, POSTCONF].filter((f) => !isExecutable(f))
  if (missing.length > 0) {
    throw new Error(
      `real Postfix 3.7 is required for this test but ${missing.join(', ')} is missing. ` +
        'Run the suite through .ci/run, or install it: apt-get install postfix postfix-lmdb ' +
        'postfix-cdb postfix-pcre postfix-sqlite (see /work/shared/postfix-harness/install-postfix.sh)',
    )
  }
  if (process.getuid?.() !== 0) {
    throw new Error('tests against real Postfix must run as root (master(8) and the daemons need it)')
  }
  postfixIds() // throws when the postfix user / postdrop group are missing
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

export interface PostfixIds {
  uid: number
  gid: number
  postdropGid: number
}

let cachedIds: PostfixIds | undefined

/** uid/gid of user postfix and gid of group postdrop (via getent, so NSS is honoured). */
export function postfixIds(): PostfixIds {
  if (cachedIds) return cachedIds
  const field = (db: string, name: string, index: number): number => {
    let line: string
    try {
      line = execFileSync('getent', [db, name], {encoding: 'utf8'}).trim()
    } catch {
      throw new Error(`${db} entry "${name}" missing: install the postfix package (apt-get install postfix)`)
    }
    const value = Number(line.split(':')[index])
    if (!Number.isInteger(value)) throw new Error(`cannot parse getent ${db} ${name}: ${line}`)
    return value
  }
  cachedIds = {uid: field('passwd', 'postfix', 2), gid: field('passwd', 'postfix', 3), postdropGid: field('group', 'postdrop', 2)}
  return cachedIds
}

/**
 * Why `version` cannot run here, as a skip reason, when PROXYMAP_SKIP_NEWER_POSTFIX=1 allows
 * its tests to skip; otherwise undefined (then createPostfixInstance fails with the reason).
 * Builds the version's root if needed. Never skips 3.7. Use as
 * `const why = await postfixVersionUnavailable(v); if (why) return t.skip(why)`.
 */
export async function postfixVersionUnavailable(version: PostfixVersion): Promise<string | undefined> {
  if (!isRootedVersion(version) || !skipNewerPostfixAllowed()) return undefined
  try {
    await ensurePostfixRoot(version, postfixIds())
    return undefined
  } catch (e) {
    const reason = (e as Error).message.split('\n')[0]!.replace(/ Set PROXYMAP_SKIP_NEWER_POSTFIX=1 .*/, '')
    return `PROXYMAP_SKIP_NEWER_POSTFIX=1 and Postfix ${version} is unavailable: ${reason}`
  }
}

// ---------------------------------------------------------------------------- running commands

export interface RunOptions {
  /** Written to the command's stdin (otherwise stdin is /dev/null). */
  input?: string | Buffer
  /** Kill (SIGKILL) after this long; default 20 s. Real Postfix clients retry forever. */
  timeoutMs?: number
  /** Run as user postfix (uid/gid postfix, no supplementary groups). */
  asPostfix?: boolean
  cwd?: string
  env?: NodeJS.ProcessEnv
}

export interface RunResult {
  stdout: string
  stderr: string
  /** Exit status; 128 + signal number when killed by a signal (as a shell reports it). */
  code: number
  signal: NodeJS.Signals | null
  timedOut: boolean
  ms: number
}

/** Children that must not outlive the test process (killed by the exit handler). */
const liveChildren = new Set<ChildProcess>()

/**
 * Spawns a command, remembered for emergency cleanup, and forgotten when it exits. Only the
 * pid of what we started is ever signalled.
 */
export function spawnTracked(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
): ChildProcess {
  installExitHandlers()
  const child = spawn(command, args, options)
  liveChildren.add(child)
  child.once('exit', () => liveChildren.delete(child))
  child.once('error', () => liveChildren.delete(child))
  return child
}

/** Runs a command to completion under a timeout and collects its output. */
export function runCommand(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS
  const ids = opts.asPostfix ? postfixIds() : undefined
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawnTracked(command, args, {
      cwd: opts.cwd ?? '/',
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      ...(ids ? {uid: ids.uid, gid: ids.gid} : {}), // libuv also clears supplementary groups
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (d: Buffer) => out.push(d))
    child.stderr?.on('data', (d: Buffer) => err.push(d))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.once('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${command}: ${e.message}`))
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0),
        signal,
        timedOut,
        ms: performance.now() - started,
      })
    })
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {}) // the command may exit without reading everything
      child.stdin.end(opts.input)
    }
  })
}

function describeRun(what: string, r: RunResult): string {
  return `${what} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}; stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`
}

// ---------------------------------------------------------------------------- small utilities

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Polls `probe` until it returns a truthy value; throws `describe()` after timeoutMs. */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  timeoutMs: number,
  describe: () => string,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v) return v as NonNullable<T>
    if (Date.now() >= deadline) throw new Error(describe())
    await sleep(intervalMs)
  }
}

/** Does a UNIX stream socket accept a connection? (The connection is closed at once.) */
export function canConnect(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.createConnection(socketPath)
    const timer = setTimeout(() => {
      sock.destroy()
      resolve(false)
    }, timeoutMs)
    sock.once('connect', () => {
      clearTimeout(timer)
      sock.destroy()
      resolve(true)
    })
    sock.once('error', () => {
      clearTimeout(timer)
      sock.destroy()
      resolve(false)
    })
  })
}

/** Is pid alive and not a zombie? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // A zombie still answers kill(0); it has no exe any more.
  try {
    fs.readlinkSync(`/proc/${pid}/exe`)
    return true
  } catch {
    return false
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

function readlinkOrUndefined(p: string): string | undefined {
  try {
    return fs.readlinkSync(p)
  } catch {
    return undefined
  }
}

/**
 * Live processes running `executable` with `dir` as their current directory (master starts
 * its daemons in the queue directory). By executable, not command line: daemons set their
 * process titles, ours as Postfix's own.
 */
export function processesRunning(executable: string, dir: string): number[] {
  const found: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    if (readlinkOrUndefined(`/proc/${entry}/cwd`) === dir && readlinkOrUndefined(`/proc/${entry}/exe`) === executable) found.push(Number(entry))
  }
  return found
}

/** The executable of our daemons, as /proc/PID/exe names it. */
export const NODE_EXECUTABLE = fs.realpathSync(process.execPath)

/** Every live process whose cwd or executable lies inside one of dirs (as /proc names them). */
export function processesUnder(...dirs: string[]): number[] {
  const found: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const inside = ['cwd', 'exe'].some((link) => {
      const target = readlinkOrUndefined(`/proc/${entry}/${link}`)
      return target !== undefined && dirs.some((d) => target === d || target.startsWith(`${d}/`))
    })
    if (inside) found.push(Number(entry))
  }
  return found
}

export interface ProcMemory {
  pid: number
  /** Peak resident set size (VmHWM), kB. */
  peakRssKb: number
  /** Current resident set size (VmRSS), kB. */
  rssKb: number
}

/** VmHWM/VmRSS of a live process from /proc/PID/status (undefined once it has exited). */
export function procMemory(pid: number): ProcMemory | undefined {
  let status: string
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  const peakRssKb = kb('VmHWM')
  if (Number.isNaN(peakRssKb)) return undefined
  return {pid, peakRssKb, rssKb: kb('VmRSS')}
}

/** Direct and indirect children of pid (from /proc/N/stat). */
export function descendantPids(pid: number): number[] {
  const parentOf = new Map<number, number>()
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid ... ; comm may contain spaces and parentheses
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parentOf.set(Number(entry), ppid)
    } catch {
      // exited meanwhile
    }
  }
  const result: number[] = []
  const frontier = [pid]
  while (frontier.length > 0) {
    const p = frontier.pop()!
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        result.push(child)
        frontier.push(child)
      }
    }
  }
  return result
}

// ---------------------------------------------------------------------------- the instance

export interface StopResult {
  code: number | null
  signal: NodeJS.Signals | null
  /** SIGKILL was needed: the server ignored SIGTERM for 10 s. */
  forced: boolean
  /** Socket files that were still present after the server exited (then removed). */
  socketsLeft: string[]
}

export interface CommandOptions {
  input?: string | Buffer
  timeoutMs?: number
  asPostfix?: boolean
  cwd?: string
}

export interface PostfixInstance {
  /**
   * Instance directory (absolute, 0755). For 3.7 a canonical path; for 3.10/3.11 a host
   * symlink (canonical parent) to realDir, so that it names the same files inside the root.
   */
  readonly dir: string
  /** Where dir's files really are, as /proc names them (dir itself for 3.7). */
  readonly realDir: string
  /** The Postfix version this instance runs ('3.7' is the host's). */
  readonly version: PostfixVersion
  /** That version's full mail_version (postconf -d mail_version), e.g. 3.11.7. */
  readonly mailVersion: string
  /** The root filesystem of that version's programs: '/' for 3.7, else its Debian root. */
  readonly root: string
  /** config_directory: main.cf, master.cf, read-only table files. */
  readonly etc: string
  /** queue_directory. */
  readonly spool: string
  /** data_directory, owned by postfix: writable tables. */
  readonly data: string
  /** Path of maillog_file (written by postlogd while real Postfix runs). */
  readonly maillogPath: string

  socketPath(service: Service): string
  isAccepting(service: Service): Promise<boolean>

  /** `postconf -c etc -e 'name = value' ...` (running servers need a reload/restart). */
  postconf(settings: Record<string, string>): Promise<void>
  /** `postconf -c etc -h name`. */
  postconfGet(name: string): Promise<string>
  /**
   * Sets proxy_read_maps / proxy_write_maps (replacing them); `proxy:` is prepended to each
   * name that lacks it. Omitted lists are left unchanged.
   */
  approve(tables: {read?: string[]; write?: string[]}): Promise<void>

  /**
   * Writes a file with the ownership Postfix needs. A relative path is taken inside etc. Default
   * owner: postfix inside data (proxywrite writes there), root elsewhere; default mode 0644.
   * The mtime is backdated (see BACKDATE_SECONDS) unless backdate is false.
   */
  writeFile(
    file: string,
    content: string | Buffer,
    opts?: {owner?: 'root' | 'postfix'; mode?: number; backdate?: boolean},
  ): Promise<string>
  /**
   * Creates a table with real Postfix: writes `content` (if given) to `file` and runs
   * `postmap -c etc TYPE:FILE` (or postalias), as user postfix for files inside data.
   * For source-only types (texthash, regexp, pcre, ...) pass `build: false`.
   * Returns the table name `TYPE:ABSOLUTE_FILE`.
   */
  createTable(
    type: string,
    file: string,
    content?: string | Buffer,
    opts?: {build?: boolean; command?: 'postmap' | 'postalias'},
  ): Promise<string>

  /** Starts the real master(8); resolves once both sockets accept connections. */
  startPostfix(): Promise<void>
  /** SIGTERM to this instance's master, waits until none of its processes remain; removes sockets. */
  stopPostfix(): Promise<void>
  /** SIGHUP to master; waits for the reload log line and for the old proxymap processes to exit. */
  reloadPostfix(): Promise<void>
  /** Pid of this instance's running master, if any. */
  masterPid(): number | undefined
  /** Pids of every real Postfix process of this instance (master and its daemons). */
  pids(): number[]

  /**
   * Starts our server (default `node bin/run.js serve -c ETC`, see `ourCommand`) plus
   * extraArgs; resolves once both sockets accept. Its stdout/stderr are kept.
   */
  startOurs(extraArgs?: string[]): Promise<void>
  /** SIGTERM to our server by pid, waits for it to exit (SIGKILL after 10 s); removes leftover sockets. */
  stopOurs(): Promise<StopResult>
  /** Pid of our running server, if any. */
  ourPid(): number | undefined
  ourStderr(): string
  /** Characters our server has written to stderr since it started (ourStderr() keeps the last 16 MiB). */
  ourStderrLength(): number
  ourStdout(): string
  /** Exit status of the last server started by startOurs, once it has exited. */
  ourExit(): {code: number | null; signal: NodeJS.Signals | null} | undefined
  /** Waits until our server's stderr (accumulated since start) matches. */
  waitForOurStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>

  /** `postmap -c etc ARGS` under a timeout (default 20 s). */
  postmap(args: string[], opts?: CommandOptions): Promise<RunResult>
  /** `postalias -c etc ARGS` under a timeout (default 20 s). */
  postalias(args: string[], opts?: CommandOptions): Promise<RunResult>
  /**
   * Runs a program of this instance's Postfix version ('postmap', 'postconf',
   * '/usr/lib/postfix/sbin/proxymap', or anything else in its root, found by name in
   * /usr/sbin:/usr/bin:/sbin:/bin there) with args as given (no -c is added) and
   * MAIL_CONFIG=etc, under a timeout (default 20 s). cwd (default: data when asPostfix, else
   * dir) names a directory as the program sees it, which for instance paths is the same.
   * For 3.10/3.11 the environment is only PATH, MAIL_CONFIG and opts.env.
   */
  run(command: string, args?: readonly string[], opts?: InstanceRunOptions): Promise<RunResult>

  /** Contents of maillog_file. */
  maillog(): string
  /** Waits until maillog matches. */
  waitForMaillog(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>

  /** Stops everything this instance started and removes its directory (unless PFX_KEEP=1). */
  destroy(): Promise<void>
}

export interface InstanceRunOptions extends CommandOptions {
  /** Extra environment variables. */
  env?: Record<string, string>
}

export interface PostfixInstanceOptions {
  /** The Postfix version to run: '3.7' (the host's, default), '3.10' or '3.11' (Debian roots). */
  version?: PostfixVersion
  /** Extra main.cf settings, applied with postconf -e after the defaults. */
  main?: Record<string, string>
  /**
   * argv of "our" server, before startOurs' extraArgs. Default:
   * [node, PROJECT_ROOT/bin/run.js, 'serve', '-c', etc]. A function receives the instance
   * (for socket paths). The command must listen on both sockets and exit on SIGTERM.
   */
  ourCommand?: string[] | ((instance: PostfixInstance) => string[])
  /** Prefix of the directory name under os.tmpdir(). */
  prefix?: string
  /** Keep the directory on destroy() (also PFX_KEEP=1). */
  keep?: boolean
  /**
   * maxproc of the proxymap service (default '-', master's default_process_limit). 1 makes
   * every client meet the same proxymap process and so the same open table instances, as
   * with one proxymap serve: a second process opens its tables afresh and answers their
   * flags as a first open does.
   */
  proxymapProcesses?: number
}

/**
 * The last MAX_CAPTURE characters of a server's output, kept as chunks and joined when read:
 * a server that logs hundreds of MB costs its bytes, not a 16 MiB copy per chunk.
 */
class OutputTail {
  private chunks: string[] = []
  private kept = 0
  /** Characters received in all. */
  total = 0

  push(text: string): void {
    this.chunks.push(text)
    this.kept += text.length
    this.total += text.length
    while (this.chunks.length > 1 && this.kept - this.chunks[0]!.length >= MAX_CAPTURE) this.kept -= this.chunks.shift()!.length
  }

  get text(): string {
    let all = this.chunks.join('')
    if (all.length > MAX_CAPTURE) all = all.slice(all.length - MAX_CAPTURE)
    this.chunks = [all]
    this.kept = all.length
    return all
  }
}

const liveInstances = new Set<Instance>()

/**
 * Debian's 3.11 prints these two lines (stderr and maillog) on every hash/btree use;
 * postconf() ignores them for 3.10/3.11.
 */
export const DEPRECATION_WARNINGS = [
  /warning: .*: hash\/btree support is deprecated\.\s+Please switch to cdb or lmdb\./,
  /warning: See \/usr\/share\/doc\/postfix\/NON_BERKELEYDB_README\.gz for more info\./,
]

const mailVersions = new Map<PostfixVersion, Promise<string>>()

interface ExecOptions {
  input?: string | Buffer
  timeoutMs?: number
  asPostfix?: boolean
  /** Working directory as the program sees it (default '/'). */
  cwd?: string
  /** Set MAIL_CONFIG=etc. */
  mailConfig?: boolean
  env?: Record<string, string>
}

class Instance implements PostfixInstance {
  readonly etc: string
  readonly spool: string
  readonly data: string
  readonly maillogPath: string
  readonly realDir: string
  readonly root: string
  private mailVersionValue = ''
  /** How /proc/PID/{cwd,exe} of this version's processes begin ('' for the host's). */
  private readonly procPrefix: string
  private readonly procSpool: string
  private readonly procSbin: string
  private readonly procMaster: string
  private ours: ChildProcess | undefined
  private oursExit: {code: number | null; signal: NodeJS.Signals | null} | undefined
  private oursStdout = new OutputTail()
  private oursStderr = new OutputTail()
  /** Master pids we started (the real master daemonizes, so it is not our child). */
  private startedMasters = new Set<number>()
  private destroyed = false

  constructor(
    readonly dir: string,
    private readonly options: PostfixInstanceOptions,
    readonly version: PostfixVersion,
    /** The Debian root of 3.10/3.11; undefined for the host's 3.7. */
    private readonly rootFs: PostfixRoot | undefined,
  ) {
    this.etc = path.join(dir, 'etc')
    this.spool = path.join(dir, 'spool')
    this.data = path.join(dir, 'data')
    this.maillogPath = path.join(dir, 'maillog')
    this.root = rootFs?.dir ?? '/'
    this.procPrefix = rootFs?.realDir ?? ''
    this.realDir = this.procPrefix + dir
    this.procSpool = this.procPrefix + this.spool
    this.procSbin = this.procPrefix + POSTFIX_SBIN
    this.procMaster = this.procPrefix + MASTER
  }

  get mailVersion(): string {
    return this.mailVersionValue
  }

  /**
   * Runs a program of this instance's version: directly for the host's 3.7, else with
   * chroot(8) into its root (as root: the spawn uid option cannot be used, chroot needs
   * root; chroot and sh exec, so the pid we time out and kill is the program's).
   */
  private exec(command: string, args: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    const extraEnv = {...(opts.mailConfig ? {MAIL_CONFIG: this.etc} : {}), ...opts.env}
    if (!this.rootFs) {
      return runCommand(command, args, {
        input: opts.input,
        timeoutMs: opts.timeoutMs,
        asPostfix: opts.asPostfix,
        cwd: opts.cwd,
        env: Object.keys(extraEnv).length > 0 ? {...process.env, ...extraEnv} : undefined,
      })
    }
    const {uid, gid} = postfixIds()
    const argv = [
      ...(opts.asPostfix ? [`--userspec=${uid}:${gid}`, `--groups=${gid}`] : []),
      this.rootFs.dir,
      // chroot changes to /: change to cwd inside the root
      ...(opts.cwd !== undefined && opts.cwd !== '/' ? ['/bin/sh', '-c', 'cd "$1" && shift && exec "$@"', 'sh', opts.cwd] : []),
      command,
      ...args,
    ]
    return runCommand(CHROOT, argv, {
      input: opts.input,
      timeoutMs: opts.timeoutMs,
      cwd: '/',
      env: {PATH: ROOT_PATH, ...extraEnv},
    })
  }

  // -------------------------------------------------------------- layout and configuration

  async init(): Promise<void> {
    const {uid, gid, postdropGid} = postfixIds()
    await fsp.chmod(this.dir, 0o755)
    const mkdir = async (d: string, mode: number, owner: number, group: number): Promise<void> => {
      await fsp.mkdir(d, {recursive: true})
      await fsp.chown(d, owner, group)
      await fsp.chmod(d, mode) // after chown: chown clears setgid
    }
    await mkdir(this.etc, 0o755, 0, 0)
    await mkdir(this.spool, 0o755, 0, 0)
    await mkdir(path.join(this.spool, 'pid'), 0o755, 0, 0)
    await mkdir(path.join(this.spool, 'private'), 0o700, uid, 0)
    await mkdir(path.join(this.spool, 'public'), 0o2710, uid, postdropGid)
    await mkdir(this.data, 0o700, uid, 0)
    await this.writeFile(path.join(this.etc, 'main.cf'), this.mainCf(), {owner: 'root', mode: 0o644})
    await this.writeFile(path.join(this.etc, 'master.cf'), masterCf(this.options.proxymapProcesses), {owner: 'root', mode: 0o644})
    await this.writeFile(this.maillogPath, '', {owner: 'root', mode: 0o644})
    // proxymap runs as postfix and opens config and tables by absolute path (and so may our
    // server on the host, for an instance in a root too).
    const testArgs = ['-x', this.etc, '-a', '-r', path.join(this.etc, 'main.cf')]
    const check = await runCommand('/usr/bin/test', testArgs, {asPostfix: true})
    if (check.code !== 0) {
      throw new Error(`user postfix cannot traverse ${this.etc}: a parent directory of ${this.dir} is not o+x`)
    }
    if (this.rootFs) {
      const inRoot = await this.exec('/usr/bin/test', testArgs, {asPostfix: true})
      if (inRoot.code !== 0) {
        throw new Error(`user postfix cannot traverse ${this.etc} inside ${this.root}: ${describeRun('test', inRoot)}`)
      }
    }
    if (this.options.main && Object.keys(this.options.main).length > 0) await this.postconf(this.options.main)
    const version = await this.exec(POSTCONF, ['-c', this.etc, '-h', 'mail_version'])
    if (version.code !== 0) throw new Error(describeRun(`postconf -c ${this.etc}`, version))
    let defaultVersion = mailVersions.get(this.version)
    if (!defaultVersion) {
      defaultVersion = this.exec(POSTCONF, ['-dh', 'mail_version']).then((r) => {
        if (r.code !== 0 || r.stdout.trim() === '') throw new Error(describeRun('postconf -dh mail_version', r))
        return r.stdout.trim()
      })
      mailVersions.set(this.version, defaultVersion)
      defaultVersion.catch(() => mailVersions.delete(this.version))
    }
    this.mailVersionValue = await defaultVersion
  }

  private mainCf(): string {
    // 3.10/3.11 find dynamicmaps.cf in their default meta_directory (/usr/share/postfix for 3.11).
    const metaDirectory = this.rootFs
      ? ''
      : `# dynamicmaps.cf (lmdb/cdb/pcre/sqlite/... plugins) is in the system meta_directory
meta_directory = /etc/postfix
`
    return `# Private throwaway Postfix ${this.rootFs ? `${this.version} (${this.root}) ` : ''}instance for proxymap tests (test/helpers/postfix.ts).
compatibility_level = 3.6
config_directory = ${this.etc}
queue_directory = ${this.spool}
data_directory = ${this.data}
${metaDirectory}shlib_directory = /usr/lib/postfix
daemon_directory = ${POSTFIX_SBIN}
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
# No network at all: master.cf defines no inet services.
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = pf-harness.localdomain
mydomain = localdomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
# Logging without syslog: postlogd (master.cf 'postlog') appends to this file.
maillog_file = ${this.maillogPath}
maillog_file_prefixes = ${this.dir}
syslog_name = postfix-harness
# Tables the proxymap(8)/proxywrite services may open.
proxy_read_maps =
proxy_write_maps =
`
  }

  socketPath(service: Service): string {
    return path.join(this.spool, 'private', service)
  }

  isAccepting(service: Service): Promise<boolean> {
    return canConnect(this.socketPath(service))
  }

  async postconf(settings: Record<string, string>): Promise<void> {
    const assignments = Object.entries(settings).map(([k, v]) => `${k} = ${v}`)
    if (assignments.length === 0) return
    const r = await this.exec(POSTCONF, ['-c', this.etc, '-e', ...assignments])
    const warnings = r.stderr
      .split('\n')
      .filter((line) => line.includes('warning') && !(this.rootFs && DEPRECATION_WARNINGS.some((w) => w.test(line))))
    if (r.code !== 0 || warnings.length > 0) throw new Error(describeRun('postconf -e', r))
    await backdate(path.join(this.etc, 'main.cf'))
  }

  async postconfGet(name: string): Promise<string> {
    const r = await this.exec(POSTCONF, ['-c', this.etc, '-h', name])
    if (r.code !== 0) throw new Error(describeRun(`postconf -h ${name}`, r))
    return r.stdout.replace(/\n$/, '')
  }

  async approve(tables: {read?: string[]; write?: string[]}): Promise<void> {
    const list = (names: string[]): string => names.map((n) => (n.startsWith('proxy:') ? n : `proxy:${n}`)).join(' ')
    const settings: Record<string, string> = {}
    if (tables.read) settings.proxy_read_maps = list(tables.read)
    if (tables.write) settings.proxy_write_maps = list(tables.write)
    await this.postconf(settings)
  }

  private resolveFile(file: string): string {
    return path.isAbsolute(file) ? file : path.join(this.etc, file)
  }

  private inData(file: string): boolean {
    return file.startsWith(this.data + path.sep)
  }

  async writeFile(
    file: string,
    content: string | Buffer,
    opts: {owner?: 'root' | 'postfix'; mode?: number; backdate?: boolean} = {},
  ): Promise<string> {
    const abs = this.resolveFile(file)
    const owner = opts.owner ?? (this.inData(abs) ? 'postfix' : 'root')
    const {uid, gid} = postfixIds()
    await fsp.mkdir(path.dirname(abs), {recursive: true})
    await fsp.writeFile(abs, content)
    if (owner === 'postfix') await fsp.chown(abs, uid, gid)
    else await fsp.chown(abs, 0, 0)
    await fsp.chmod(abs, opts.mode ?? 0o644)
    if (opts.backdate !== false) await backdate(abs)
    return abs
  }

  async createTable(
    type: string,
    file: string,
    content?: string | Buffer,
    opts: {build?: boolean; command?: 'postmap' | 'postalias'} = {},
  ): Promise<string> {
    const abs = this.resolveFile(file)
    if (content !== undefined) await this.writeFile(abs, content)
    const name = `${type}:${abs}`
    if (opts.build === false) return name
    const asPostfix = this.inData(abs)
    const run = opts.command === 'postalias' ? this.postalias.bind(this) : this.postmap.bind(this)
    const r = await run([name], {asPostfix, cwd: path.dirname(abs), timeoutMs: 120_000})
    if (r.code !== 0) throw new Error(describeRun(`${opts.command ?? 'postmap'} ${name}`, r))
    if (!asPostfix) {
      // postmap honours our umask; proxymap (user postfix) must be able to read the result.
      const base = path.basename(abs)
      for (const f of await fsp.readdir(path.dirname(abs))) {
        if (f.startsWith(`${base}.`)) {
          const full = path.join(path.dirname(abs), f)
          const st = await fsp.stat(full)
          if (st.isFile()) await fsp.chmod(full, st.mode | 0o444)
        }
      }
    }
    return name
  }

  // -------------------------------------------------------------- real Postfix

  masterPid(): number | undefined {
    let text: string
    try {
      text = fs.readFileSync(path.join(this.spool, 'pid', 'master.pid'), 'utf8')
    } catch {
      return undefined
    }
    const pid = Number(text.trim())
    if (!Number.isInteger(pid) || pid <= 0) return undefined
    // The pid file may be stale and the pid reused: check it is a master working for us.
    if (readlinkOrUndefined(`/proc/${pid}/exe`) !== this.procMaster) return undefined
    if (readlinkOrUndefined(`/proc/${pid}/cwd`) !== this.procSpool) return undefined
    return pid
  }

  pids(): number[] {
    const result: number[] = []
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      if (readlinkOrUndefined(`/proc/${entry}/cwd`) !== this.procSpool) continue
      const exe = readlinkOrUndefined(`/proc/${entry}/exe`)
      if (exe?.startsWith(this.procSbin + '/')) result.push(Number(entry))
    }
    return result
  }

  private removeSockets(): string[] {
    const removed: string[] = []
    for (const s of [...SERVICES.map((svc) => this.socketPath(svc)), path.join(this.spool, 'public', 'postlog')]) {
      try {
        fs.unlinkSync(s)
        removed.push(s)
      } catch {
        // not there
      }
    }
    return removed
  }

  /** Refuses to start a server when something already listens on our sockets. */
  private async assertSocketsFree(who: string): Promise<void> {
    for (const svc of SERVICES) {
      if (await this.isAccepting(svc)) {
        throw new Error(`cannot start ${who}: something already listens on ${this.socketPath(svc)}`)
      }
    }
  }

  private async waitUntilAccepting(alive: () => boolean, who: string): Promise<void> {
    await waitFor(
      async () => {
        if (!alive()) throw new Error(`${who} exited during start-up`)
        for (const svc of SERVICES) if (!(await this.isAccepting(svc))) return false
        return true
      },
      START_TIMEOUT_MS,
      () => `${who} not accepting on ${SERVICES.map((s) => this.socketPath(s)).join(' and ')} after ${START_TIMEOUT_MS} ms`,
    )
  }

  async startPostfix(): Promise<void> {
    this.assertUsable()
    if (this.masterPid() !== undefined) return
    if (this.ourPid() !== undefined) throw new Error('cannot start Postfix: our server is running on this instance (stopOurs first)')
    await this.assertSocketsFree('Postfix')
    this.removeSockets() // stale files make master fail ("address in use")
    // -w: a foreground process waits until the daemonized master has initialized.
    const r = await this.exec(MASTER, ['-c', this.etc, '-w'], {mailConfig: true, timeoutMs: START_TIMEOUT_MS})
    const pid = this.masterPid()
    if (pid !== undefined) this.startedMasters.add(pid)
    if (r.code !== 0) throw new Error(`${describeRun('master -w', r)}\nmaillog:\n${this.maillog()}`)
    try {
      await this.waitUntilAccepting(() => this.masterPid() !== undefined, 'Postfix master')
    } catch (e) {
      throw new Error(`${(e as Error).message}\nmaillog:\n${this.maillog()}`)
    }
    const started = this.masterPid()
    if (started !== undefined) this.startedMasters.add(started)
  }

  async stopPostfix(): Promise<void> {
    const pid = this.masterPid()
    if (pid !== undefined) signalPid(pid, 'SIGTERM') // master stops its daemons itself
    const deadline = Date.now() + STOP_TIMEOUT_MS
    let left = this.pids()
    while (left.length > 0 && Date.now() < deadline) {
      await sleep(25)
      left = this.pids()
    }
    if (left.length > 0) {
      for (const p of left) signalPid(p, 'SIGKILL')
      await waitFor(() => this.pids().length === 0, 5000, () => `Postfix processes survive SIGKILL: ${this.pids().join(' ')}`)
    }
    if (pid !== undefined) this.startedMasters.delete(pid)
    this.removeSockets()
  }

  async reloadPostfix(): Promise<void> {
    const pid = this.masterPid()
    if (pid === undefined) throw new Error('reloadPostfix: Postfix is not running on this instance')
    const reloadLine = new RegExp(`/master\\[${pid}\\]: reload `, 'g')
    const before = (this.maillog().match(reloadLine) ?? []).length
    const oldWorkers = this.pids().filter((p) => readlinkOrUndefined(`/proc/${p}/exe`) === `${this.procSbin}/proxymap`)
    signalPid(pid, 'SIGHUP')
    await waitFor(
      () => (this.maillog().match(reloadLine) ?? []).length > before,
      10_000,
      () => `no reload line from master[${pid}] in ${this.maillogPath}`,
    )
    // Old proxymap processes keep their old table lists until they notice the new generation
    // (they exit when idle). One that still serves a connected client may linger: don't wait
    // forever for it.
    const deadline = Date.now() + 5000
    while (oldWorkers.some(pidAlive) && Date.now() < deadline) await sleep(25)
    await this.waitUntilAccepting(() => this.masterPid() !== undefined, 'Postfix master (after reload)')
  }

  // -------------------------------------------------------------- our server

  private ourArgv(): string[] {
    const c = this.options.ourCommand
    if (c === undefined) {
      if (!fs.existsSync(BUILT_SERVE_COMMAND)) {
        throw new Error(`${BUILT_SERVE_COMMAND} is missing: run "npm run build" first (startOurs runs the built CLI)`)
      }
      return [process.execPath, PROJECT_BIN, 'serve', '-c', this.etc]
    }
    return typeof c === 'function' ? c(this) : [...c]
  }

  ourPid(): number | undefined {
    return this.ours && this.oursExit === undefined ? this.ours.pid : undefined
  }

  ourStderr(): string {
    return this.oursStderr.text
  }

  ourStderrLength(): number {
    return this.oursStderr.total
  }

  ourStdout(): string {
    return this.oursStdout.text
  }

  ourExit(): {code: number | null; signal: NodeJS.Signals | null} | undefined {
    return this.oursExit
  }

  async startOurs(extraArgs: string[] = []): Promise<void> {
    this.assertUsable()
    if (this.ourPid() !== undefined) throw new Error('startOurs: our server is already running on this instance')
    if (this.masterPid() !== undefined) throw new Error('cannot start our server: Postfix is running on this instance (stopPostfix first)')
    await this.assertSocketsFree('our server')
    this.removeSockets() // a killed server leaves its socket files behind
    const [command, ...args] = [...this.ourArgv(), ...extraArgs]
    if (command === undefined) throw new Error('ourCommand is empty')
    this.oursStdout = new OutputTail()
    this.oursStderr = new OutputTail()
    this.oursExit = undefined
    const child = spawnTracked(command, args, {cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe']})
    this.ours = child
    const stdout = this.oursStdout
    const stderr = this.oursStderr
    child.stdout?.on('data', (d: Buffer) => stdout.push(d.toString('utf8')))
    child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString('utf8')))
    let spawnError: Error | undefined
    child.once('error', (e) => {
      spawnError = e
      this.oursExit ??= {code: null, signal: null}
    })
    child.once('exit', (code, signal) => (this.oursExit = {code, signal}))
    try {
      await this.waitUntilAccepting(() => this.oursExit === undefined, 'our server')
    } catch (e) {
      if (this.oursExit === undefined) await this.stopOurs()
      const how = spawnError ? `spawn error: ${spawnError.message}` : `exit: ${JSON.stringify(this.oursExit)}`
      throw new Error(
        `${(e as Error).message}\ncommand: ${[command, ...args].join(' ')}\n${how}\nstderr:\n${this.oursStderr.text}`,
      )
    }
  }

  async stopOurs(): Promise<StopResult> {
    const child = this.ours
    let forced = false
    if (child && this.oursExit === undefined && child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => {
        if (this.oursExit !== undefined) resolve()
        else child.once('exit', () => resolve())
      })
      signalPid(child.pid, 'SIGTERM')
      const killTimer = setTimeout(() => {
        forced = true
        if (child.pid !== undefined) signalPid(child.pid, 'SIGKILL')
      }, 10_000)
      await exited
      clearTimeout(killTimer)
    }
    // give the 'exit' listener registered in startOurs a chance to run first
    await new Promise((r) => setImmediate(r))
    const socketsLeft = SERVICES.map((s) => this.socketPath(s)).filter((p) => fs.existsSync(p))
    this.removeSockets()
    return {code: this.oursExit?.code ?? null, signal: this.oursExit?.signal ?? null, forced, socketsLeft}
  }

  async waitForOurStderr(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return waitFor(
      () => new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(this.oursStderr.text),
      timeoutMs,
      () => `our server's stderr does not match ${pattern} after ${timeoutMs} ms:\n${this.oursStderr.text}`,
    )
  }

  // -------------------------------------------------------------- clients and logs

  postmap(args: string[], opts: CommandOptions = {}): Promise<RunResult> {
    return this.client(POSTMAP, args, opts)
  }

  postalias(args: string[], opts: CommandOptions = {}): Promise<RunResult> {
    return this.client(POSTALIAS, args, opts)
  }

  private client(command: string, args: string[], opts: CommandOptions): Promise<RunResult> {
    return this.run(command, ['-c', this.etc, ...args], opts)
  }

  run(command: string, args: readonly string[] = [], opts: InstanceRunOptions = {}): Promise<RunResult> {
    return this.exec(command, args, {
      input: opts.input,
      timeoutMs: opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS,
      asPostfix: opts.asPostfix,
      cwd: opts.cwd ?? (opts.asPostfix ? this.data : this.dir),
      mailConfig: true,
      env: opts.env,
    })
  }

  maillog(): string {
    try {
      return fs.readFileSync(this.maillogPath, 'utf8')
    } catch {
      return ''
    }
  }

  async waitForMaillog(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return waitFor(
      () => new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(this.maillog()),
      timeoutMs,
      () => `${this.maillogPath} does not match ${pattern} after ${timeoutMs} ms:\n${this.maillog()}`,
    )
  }

  // -------------------------------------------------------------- teardown

  private assertUsable(): void {
    if (this.destroyed) throw new Error(`instance ${this.dir} was destroyed`)
  }

  private keepDir(): boolean {
    return this.options.keep === true || process.env.PFX_KEEP === '1'
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return
    try {
      await this.stopOurs()
      await this.stopPostfix()
    } finally {
      this.destroyed = true
      liveInstances.delete(this)
      if (!this.keepDir()) {
        await fsp.rm(this.realDir, {recursive: true, force: true})
        if (this.rootFs) await fsp.rm(this.dir, {force: true}) // the host symlink
      }
    }
  }

  /** Synchronous last-resort cleanup from the process 'exit' handler. */
  emergencyCleanupSync(): void {
    const ourPid = this.ourPid()
    if (ourPid !== undefined) signalPid(ourPid, 'SIGTERM')
    const master = this.masterPid()
    if (master !== undefined) signalPid(master, 'SIGTERM')
    for (const p of this.startedMasters) {
      // (the pid file may be gone; never signal a reused pid that is not a master)
      if (p !== master && readlinkOrUndefined(`/proc/${p}/exe`) === this.procMaster) signalPid(p, 'SIGTERM')
    }
    const deadline = Date.now() + 3000
    const remaining = (): number[] => [...this.pids(), ...(ourPid !== undefined && pidAlive(ourPid) ? [ourPid] : [])]
    while (remaining().length > 0 && Date.now() < deadline) sleepSync(20)
    for (const p of remaining()) signalPid(p, 'SIGKILL')
    this.destroyed = true
    if (!this.keepDir()) {
      fs.rmSync(this.realDir, {recursive: true, force: true})
      if (this.rootFs) fs.rmSync(this.dir, {force: true})
    }
  }
}

const masterCf = (proxymapProcesses?: number): string => `# service type  private unpriv  chroot  wakeup  maxproc command + args
proxymap  unix  -       -       n       -       ${String(proxymapProcesses ?? '-').padEnd(7)} proxymap
proxywrite unix -       -       n       -       1       proxymap
postlog   unix-dgram n  -       n       -       1       postlogd
`

/**
 * For test files that make instances as they go: `instance(version, prefix)` creates one,
 * and every one made is destroyed when the file's tests are over.
 */
export function instancesDestroyedAfterTests(): (version: PostfixVersion, prefix: string, options?: PostfixInstanceOptions) => Promise<PostfixInstance> {
  const made: PostfixInstance[] = []
  after(async () => {
    for (const pf of made) await pf.destroy()
  })
  return async (version, prefix, options = {}) => {
    const pf = await createPostfixInstance({...options, version, prefix})
    made.push(pf)
    return pf
  }
}

/** Creates and initializes a private Postfix instance (nothing is started yet). */
export async function createPostfixInstance(options: PostfixInstanceOptions = {}): Promise<PostfixInstance> {
  const version = options.version ?? '3.7'
  if (!POSTFIX_VERSIONS.includes(version)) {
    throw new Error(`unknown Postfix version ${JSON.stringify(version)}: one of ${POSTFIX_VERSIONS.join(', ')}`)
  }
  requirePostfix() // 3.10/3.11 too: their roots share the host's postfix ids
  installExitHandlers()
  const prefix = options.prefix ?? 'proxymap-pf-'
  let dir: string
  let root: PostfixRoot | undefined
  if (isRootedVersion(version)) {
    root = await ensurePostfixRoot(version, postfixIds())
    dir = await makeRootedDir(root, prefix)
  } else {
    // realpath: /proc/PID/cwd of the daemons is canonical, and tables are named by absolute path.
    dir = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), prefix)))
  }
  const instance = new Instance(dir, options, version, root)
  liveInstances.add(instance)
  try {
    await instance.init()
  } catch (e) {
    await instance.destroy()
    throw e
  }
  return instance
}

/**
 * A fresh directory ROOT+D plus the host symlink D -> ROOT+D (D under the canonical
 * os.tmpdir()), so that D names the same directory on the host and inside the root.
 */
async function makeRootedDir(root: PostfixRoot, prefix: string): Promise<string> {
  const parent = await fsp.realpath(os.tmpdir())
  const parentInRoot = path.join(root.realDir, parent)
  await fsp.mkdir(parentInRoot, {recursive: true})
  for (let attempt = 0; ; attempt++) {
    const real = await fsp.mkdtemp(path.join(parentInRoot, prefix))
    const dir = path.join(parent, path.basename(real))
    try {
      await fsp.symlink(real, dir)
      return dir
    } catch (e) {
      await fsp.rmdir(real)
      // the name is unique inside the root, but may be taken on the host
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 20) throw e
    }
  }
}

// ---------------------------------------------------------------------------- exit handling

let exitHandlersInstalled = false

function cleanupAllSync(): void {
  // Servers first (SIGTERM, a grace period, then SIGKILL), then whatever else we spawned.
  for (const instance of liveInstances) {
    try {
      instance.emergencyCleanupSync()
    } catch {
      // best effort
    }
  }
  liveInstances.clear()
  for (const child of liveChildren) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) signalPid(child.pid, 'SIGKILL')
  }
  liveChildren.clear()
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return
  exitHandlersInstalled = true
  process.on('exit', cleanupAllSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupAllSync()
      // Nobody else handles it: die of the signal as we would have without this handler.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
    })
  }
}
