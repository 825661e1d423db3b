// bin/run.js runs the CLI from its bundle, dist/proxymap.cjs (scripts/bundle.mjs): one file
// instead of some 250 modules, compiled from V8's code cache. Node 20 keeps no compiled code
// between runs (module.enableCompileCache() is Node 22's), and compiling oclif and the
// commands was most of what `proxymap query` spent before its first lookup. The build runs
// one query with PROXYMAP_WRITE_CODE_CACHE set, which writes what V8 compiled for it to
// dist/proxymap.cjs.cache; every later run starts from that. V8 refuses a cache made by
// another V8 version or with other V8 flags (the bundle is then compiled as usual); the
// build writes the bundle and its cache together.

import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import Module, {createRequire} from 'node:module'
import path from 'node:path'
import vm from 'node:vm'

export const BUNDLE_FILE = 'proxymap.cjs'
export const CODE_CACHE_SUFFIX = '.cache'
export const WRITE_CODE_CACHE_ENV = 'PROXYMAP_WRITE_CODE_CACHE'

type Compile = (this: Module, content: string, filename: string) => unknown
interface CompilingModule { _compile: Compile; exports: unknown }

/** The exports of dist/proxymap.cjs (scripts/bundle.mjs writes its entry). */
export interface Bundle {
  execute: (options: {loadOptions: {root: string; pjson: PackageJson}}) => Promise<unknown>
  startedByMaster: () => boolean
  runUnderMaster: (argv: string[]) => Promise<number>
}

type HookTarget = string | {target: string; identifier?: string}
export interface PackageJson { oclif: {commands: unknown; hooks?: Record<string, HookTarget | HookTarget[]>} }

/** The export of the bundle that is the module dist/NAME.js: a command or hook (scripts/bundle.mjs). */
export function bundledModuleName(distFile: string): string {
  return distFile.replace(/^\.\/dist\//, '').replace(/\.js$/, '')
}

/**
 * package.json as oclif reads it, with the commands and hooks taken from the bundle
 * (oclif's "explicit" command discovery) instead of from the files in dist/commands/.
 */
export function bundledPackageJson(pjson: PackageJson): PackageJson {
  const target = `./dist/${BUNDLE_FILE}`
  const hook = (file: HookTarget): HookTarget => (typeof file === 'string' ? {target, identifier: bundledModuleName(file)} : file)
  const hooks = Object.fromEntries(Object.entries(pjson.oclif.hooks ?? {}).map(([event, files]) =>
    [event, Array.isArray(files) ? files.map(hook) : hook(files)]))
  return {...pjson, oclif: {...pjson.oclif, commands: {strategy: 'explicit', target, identifier: 'COMMANDS'}, hooks}}
}

/**
 * dist/proxymap.cjs, unless a plain `tsc` rewrote dist/'s modules after the build made it:
 * in a checkout (tsconfig.json beside package.json) the bundle must not be older than them.
 * An installed package has no sources to compile, and npm gives its files the times of
 * their unpacking, in any order: it always runs its bundle.
 */
export function freshBundle(root: string): string | undefined {
  const bundle = path.join(root, 'dist', BUNDLE_FILE)
  try {
    const built = statSync(bundle).mtimeMs
    if (!existsSync(path.join(root, 'tsconfig.json'))) return bundle
    return built >= statSync(path.join(root, 'dist', 'commands', 'query.js')).mtimeMs ? bundle : undefined
  } catch {
    return undefined
  }
}

/** require(file), compiled from file + ".cache" when V8 accepts it. */
export function requireWithCodeCache(file: string): Bundle {
  const cacheFile = file + CODE_CACHE_SUFFIX
  const prototype = Module.prototype as unknown as CompilingModule
  const compile = prototype._compile
  let script: vm.Script | undefined
  prototype._compile = function (this: Module, content: string, filename: string) {
    if (filename !== file) return compile.call(this, content, filename)
    prototype._compile = compile
    let cachedData: Buffer | undefined
    try {
      cachedData = readFileSync(cacheFile)
    } catch { /* not built: compiled as usual */ }
    // Module.wrap()'s parameters and __bundleImport, the import() of the bundle (scripts/bundle.mjs).
    script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __bundleImport) {${content}\n})`, {filename, cachedData})
    const wrapper = script.runInThisContext() as (...args: unknown[]) => unknown
    const bundleImport = (specifier: string): Promise<unknown> => import(specifier)
    return wrapper.call(this.exports, this.exports, createRequire(filename), this, filename, path.dirname(filename), bundleImport)
  }
  // The build's warm-up run: what V8 compiled until the end of the command.
  if (process.env[WRITE_CODE_CACHE_ENV]) {
    delete process.env[WRITE_CODE_CACHE_ENV]
    process.on('exit', () => { if (script) writeFileSync(cacheFile, script.createCachedData()) })
  }
  try {
    return createRequire(import.meta.url)(file) as Bundle
  } finally {
    prototype._compile = compile
  }
}
