/**
 * Root filesystems holding real Postfix releases newer than the host's 3.7, for
 * createPostfixInstance({version}) in ./postfix.ts.
 *
 * Postfix 3.10 is Debian trixie's package, 3.11 Debian sid's. Each lives in a debootstrapped
 * root, PROXYMAP_POSTFIX_ROOTS/<suite> (default /var/tmp/proxymap-roots/trixie and .../sid),
 * built by .ci/postfix-roots.sh (about a minute and ~200 MB each; CI builds them before
 * `npm test`). A test that needs a missing root builds it through that script, which holds a
 * per-suite flock, so test files running in parallel wait for one build instead of racing.
 *
 * A root that cannot be provided (no network, no debootstrap) makes the test FAIL with the
 * script's reason. Set PROXYMAP_SKIP_NEWER_POSTFIX=1 to let such tests skip instead (see
 * postfixVersionUnavailable); the host's 3.7 is never skipped.
 */
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {fileURLToPath} from 'node:url'

/** Postfix versions that run from a root filesystem, and the Debian suite providing each. */
export const ROOT_SUITES = {'3.10': 'trixie', '3.11': 'sid'} as const
export type RootedPostfixVersion = keyof typeof ROOT_SUITES

/** The script that builds the roots (also run by .ci/run). */
export const ROOTS_SCRIPT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '.ci', 'postfix-roots.sh')
/** Written last by ROOTS_SCRIPT, as key=value lines. */
export const ROOT_MARKER = '.proxymap-root-ready'
/** PATH for programs run inside a root. */
export const ROOT_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'
const BUILD_TIMEOUT_MS = 40 * 60_000

export interface PostfixRoot {
  version: RootedPostfixVersion
  suite: string
  /** The root as configured (PROXYMAP_POSTFIX_ROOTS/<suite>). */
  dir: string
  /** realpath(dir): how /proc/PID/{cwd,exe} of processes inside the root begin. */
  realDir: string
  /** Postfix's mail_version in this root, from the marker (e.g. 3.11.7). */
  mailVersion: string
  /** The marker's fields (suite, mail_version, postfix_uid, ..., how, seconds, date). */
  marker: Record<string, string>
}

export function postfixRootsDir(): string {
  return process.env.PROXYMAP_POSTFIX_ROOTS || '/var/tmp/proxymap-roots'
}

export function isRootedVersion(version: string): version is RootedPostfixVersion {
  return Object.hasOwn(ROOT_SUITES, version)
}

function readMarker(root: string): Record<string, string> | undefined {
  let text: string
  try {
    text = fs.readFileSync(path.join(root, ROOT_MARKER), 'utf8')
  } catch {
    return undefined
  }
  const fields: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return fields
}

function runScript(suite: string): Promise<{code: number; output: string}> {
  return new Promise((resolve) => {
    execFile(
      '/bin/bash',
      [ROOTS_SCRIPT, suite],
      {timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8'},
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
        resolve({code, output: `${stdout}${stderr}${error?.killed ? '\n(killed: build timeout)' : ''}`})
      },
    )
  })
}

const ensured = new Map<RootedPostfixVersion, Promise<PostfixRoot>>()

/**
 * The root for `version`, built first (by ROOTS_SCRIPT) when its marker is missing. Throws a
 * clear error when it cannot be built or does not hold that version. `hostIds` are the host's
 * postfix uid/gid and postdrop gid, which the root must share.
 */
export function ensurePostfixRoot(
  version: RootedPostfixVersion,
  hostIds: {uid: number; gid: number; postdropGid: number},
): Promise<PostfixRoot> {
  let p = ensured.get(version)
  if (!p) {
    p = ensureUncached(version, hostIds)
    ensured.set(version, p) // a failure too: one failed build per process, not one per test
  }
  return p
}

async function ensureUncached(
  version: RootedPostfixVersion,
  hostIds: {uid: number; gid: number; postdropGid: number},
): Promise<PostfixRoot> {
  const suite = ROOT_SUITES[version]
  const dir = path.join(postfixRootsDir(), suite)
  let marker = readMarker(dir)
  if (!marker) {
    const r = await runScript(suite)
    marker = readMarker(dir)
    if (r.code !== 0 || !marker) {
      throw new Error(
        `real Postfix ${version} (Debian ${suite}) is required for this test, but its root ${dir} ` +
          `could not be built by ${ROOTS_SCRIPT} (exit ${r.code}; it needs root and network access to the ` +
          `Debian mirror; log: ${dir}.log). Set PROXYMAP_SKIP_NEWER_POSTFIX=1 to skip the tests of ` +
          `Postfix 3.10/3.11 instead.\n${r.output.trim()}`,
      )
    }
  }
  const mailVersion = marker.mail_version ?? ''
  if (!mailVersion.startsWith(`${version}.`)) {
    throw new Error(
      `${dir} holds Postfix ${mailVersion || '(unknown)'}, not ${version}: Debian ${suite} has moved on. ` +
        `Update ROOT_SUITES in test/helpers/postfix-roots.ts, or remove ${dir} to rebuild it.`,
    )
  }
  const ids = `${marker.postfix_uid}:${marker.postfix_gid}:${marker.postdrop_gid}`
  const want = `${hostIds.uid}:${hostIds.gid}:${hostIds.postdropGid}`
  if (ids !== want) {
    throw new Error(
      `${dir} was built for postfix uid:gid:postdrop ${ids}, the host has ${want}: remove ${dir} to rebuild it`,
    )
  }
  for (const f of ['usr/lib/postfix/sbin/master', 'usr/sbin/postmap', 'usr/sbin/postconf']) {
    if (!fs.existsSync(path.join(dir, f))) throw new Error(`${dir}/${f} is missing: remove ${dir} to rebuild it`)
  }
  return {version, suite, dir, realDir: fs.realpathSync(dir), mailVersion, marker}
}

/** Is PROXYMAP_SKIP_NEWER_POSTFIX=1 set? */
export function skipNewerPostfixAllowed(): boolean {
  return process.env.PROXYMAP_SKIP_NEWER_POSTFIX === '1'
}
