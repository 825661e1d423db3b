// What master(8) runs must not change under it: `npm install -g` replaces the package's files
// while daemons start (a daemon started mid-upgrade found no addon), and `npm uninstall -g`
// removes them while master.cf still names us. So install-master runs a private, complete copy
// of this installation — its own files and its production dependencies — kept in
// $daemon_directory/proxymap-ts.d/VERSION-DIGEST; the launcher names that copy, and falls back
// to Postfix's own proxymap, saying so in the log, if the copy cannot be run.

import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

export const COPIES_DIR_SUFFIX = '.d'
const COMPLETE_MARK = '.complete'
/** The copy in use and the one before it (daemons of the old one run until the reload). */
const COPIES_KEPT = 2

export function packageVersion(root: string): string {
  return (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {version: string}).version
}

/** The package directories of the production dependencies, as npm resolves them. */
function productionPackages(root: string): string[] {
  let out: string
  try {
    out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
  } catch (e) {
    // npm ls exits 1 on extraneous or missing optional packages but still lists the tree.
    out = (e as {stdout?: string}).stdout ?? ''
    if (!out) throw new Error(`cannot list the production dependencies of ${root} (npm ls): ${(e as Error).message}`)
  }
  return out.split('\n').map(l => l.trim()).filter(l => l && path.resolve(l) !== path.resolve(root))
}

/** Our own files in a copy: the CLI, the compiled code, the manifest and the native addon. */
const OWN_ENTRIES = ['package.json', 'oclif.manifest.json', 'bin', 'dist', path.join('build', 'Release', 'postfix_native.node')]

function digestOf(root: string, entries: string[]): string {
  const hash = createHash('sha256')
  const walk = (p: string): void => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) walk(path.join(p, name))
    else { hash.update(path.relative(root, p)); hash.update('\0'); hash.update(fs.readFileSync(p)) }
  }
  for (const entry of entries) if (fs.existsSync(path.join(root, entry))) walk(path.join(root, entry))
  return hash.digest('hex').slice(0, 12)
}

export interface InstalledCopy {
  dir: string
  /** False when an identical copy was already there. */
  created: boolean
  removed: string[]
}

/**
 * Make (or reuse) the copy of `root` under `copiesDir`: written beside its final name and
 * renamed into place, so a daemon never starts from a half-written copy.
 */
export function installCopy(root: string, copiesDir: string): InstalledCopy {
  const version = packageVersion(root)
  const own = OWN_ENTRIES.filter(e => fs.existsSync(path.join(root, e)))
  const dir = path.join(copiesDir, `${version}-${digestOf(root, own)}`)
  fs.mkdirSync(copiesDir, {recursive: true, mode: 0o755})
  let created = false
  if (!fs.existsSync(path.join(dir, COMPLETE_MARK))) {
    const staging = `${dir}.tmp-${process.pid}`
    fs.rmSync(staging, {recursive: true, force: true})
    for (const entry of own) fs.cpSync(path.join(root, entry), path.join(staging, entry), {recursive: true, dereference: true})
    for (const pkg of productionPackages(root)) {
      const rel = path.relative(root, pkg)
      if (rel.startsWith('..')) continue // a linked package outside the tree: resolved at run time
      // Each package without its nested node_modules: npm ls lists those packages on their own.
      fs.cpSync(pkg, path.join(staging, rel), {recursive: true, dereference: true,
        filter: src => src === pkg || !path.relative(pkg, src).split(path.sep).includes('node_modules')})
    }
    fs.writeFileSync(path.join(staging, COMPLETE_MARK), `${new Date().toISOString()} from ${root}\n`)
    fs.rmSync(dir, {recursive: true, force: true})
    fs.renameSync(staging, dir)
    created = true
  }
  return {dir, created, removed: pruneCopies(copiesDir, dir)}
}

/** Oldest first beyond COPIES_KEPT, never `keep`; half-written ones of dead installs too. */
function pruneCopies(copiesDir: string, keep: string): string[] {
  const entries = fs.readdirSync(copiesDir).map(name => path.join(copiesDir, name))
    .filter(p => p !== keep && fs.statSync(p).isDirectory())
  const stale = entries.filter(p => /\.tmp-\d+$/.test(p) && !processAlive(Number(/\.tmp-(\d+)$/.exec(p)![1])))
  const complete = entries.filter(p => fs.existsSync(path.join(p, COMPLETE_MARK)))
    .sort((a, b) => fs.statSync(path.join(b, COMPLETE_MARK)).mtimeMs - fs.statSync(path.join(a, COMPLETE_MARK)).mtimeMs)
  const removed = [...stale, ...complete.slice(COPIES_KEPT - 1)]
  for (const p of removed) fs.rmSync(p, {recursive: true, force: true})
  return removed
}

function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' }
}
