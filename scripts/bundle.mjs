// After `tsc`: bundles the CLI into one CommonJS file, dist/proxymap.cjs, and writes V8's
// code cache for it, dist/proxymap.cjs.cache (see src/lib/cli/bundle.ts, which bin/run.js
// loads them with). Unbundled, `proxymap query` resolved, read and compiled some 250 modules
// (oclif alone is ~160 CommonJS files) before its first lookup.
//
// The bundle exports oclif's execute(), the daemon's start under master(8), COMMANDS (every
// command of dist/commands, as oclif's "explicit" discovery reads them) and the hooks, each
// named as its file in dist/ ("hooks/command-not-found"). Every module in it runs when first
// required: a command, a table driver or the server code, only when it is used.
//
// Not bundled: the other dependencies (loaded only by the commands or tables that need
// them: chalk, ora, @inquirer/prompts, cli-table3, database clients, better-sqlite3) and
// native addons. Run by `npm run build`.

import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'
import {BUNDLE_FILE, CODE_CACHE_SUFFIX, WRITE_CODE_CACHE_ENV, bundledModuleName} from '../dist/lib/cli/bundle.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = path.join(root, 'dist')
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const outfile = path.join(dist, BUNDLE_FILE)
const BUNDLED = new Set(['@oclif/core'])

const lazyExport = (object, name, file) =>
  `Object.defineProperty(${object}, ${JSON.stringify(name)}, {enumerable: true, get: () => require(${JSON.stringify(file)}).default})`
const commandFiles = fs.readdirSync(path.join(dist, 'commands')).filter(f => f.endsWith('.js')).sort()
const hookFiles = Object.values(pkg.oclif.hooks ?? {}).flat().map(target => `${target}.js`)
const entry = [
  "Object.defineProperty(exports, 'execute', {get: () => require('@oclif/core/execute').execute})",
  "Object.defineProperty(exports, 'startedByMaster', {get: () => require('./lib/server/master.js').startedByMaster})",
  "Object.defineProperty(exports, 'runUnderMaster', {get: () => require('./lib/server/master.js').runUnderMaster})",
  'exports.COMMANDS = {}',
  ...commandFiles.map(file => lazyExport('exports.COMMANDS', file.replace(/\.js$/, ''), `./commands/${file}`)),
  ...hookFiles.map(file => lazyExport('exports', bundledModuleName(file), file.replace(/^\.\/dist\//, './'))),
].join('\n')

// The bundle runs in a vm.Script (for its code cache), where Node 20 has no import() without
// --experimental-vm-modules: the import() of a module outside the bundle (chalk, ora,
// @inquirer/prompts, ioredis; oclif's of a plugin's command, a computed name) calls the
// loader's instead, __bundleImport (src/lib/cli/bundle.ts). esbuild resolves the others.
const external = [...Object.keys(pkg.dependencies).filter(name => !BUNDLED.has(name)), 'typescript', '*.node']
const DYNAMIC_IMPORT = /(?<![\w$.'"`])import\((\s*(['"])([^'"]*)\2)?/g
const isExternal = specifier => external.some(name => specifier === name || specifier.startsWith(`${name}/`))
const importsThroughLoader = {
  name: 'imports-through-loader',
  setup(b) {
    b.onLoad({filter: /\.c?js$/}, async args => {
      const source = await fs.promises.readFile(args.path, 'utf8')
      if (source.search(DYNAMIC_IMPORT) === -1) return undefined
      const contents = source.replace(DYNAMIC_IMPORT, (call, literal, _quote, specifier) =>
        (literal === undefined || isExternal(specifier) ? `__bundleImport(${literal ?? ''}` : call))
      return {contents, loader: 'js'}
    })
  },
}

// The modules' import.meta.url is the bundle's (they find the installation from it:
// util/package-root.ts, native/index.ts). oclif reads its own __dirname only on paths that
// bin/run.js does not take (defaults when no root is given, ts-node in development).
await build({
  stdin: {contents: entry, resolveDir: dist, sourcefile: 'proxymap-entry.cjs', loader: 'js'},
  outfile,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: `node${process.versions.node.split('.')[0]}`,
  external,
  define: {'import.meta.url': '__bundleUrl'},
  banner: {js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;"},
  plugins: [importsThroughLoader],
  sourcemap: true,
  logLevel: 'warning',
})
const leftImports = fs.readFileSync(outfile, 'utf8').match(/(?<![\w$.'"`])import\(/g)
if (leftImports) throw new Error(`${outfile}: ${leftImports.length} import() that would fail in the loader's vm.Script`)

// The warm-up: one query, as `proxymap query` runs on a texthash table, from the bundle.
const cacheFile = outfile + CODE_CACHE_SUFFIX
fs.rmSync(cacheFile, {force: true})
const example = path.join(root, 'examples', 'postfix')
execFileSync(process.execPath, [path.join(root, 'bin', 'run.js'), 'query', '-c', example, `texthash:${path.join(example, 'virtual')}`, 'alice@example.com'],
  {env: {...process.env, [WRITE_CODE_CACHE_ENV]: '1'}, stdio: ['ignore', 'ignore', 'inherit']})
if (!fs.existsSync(cacheFile)) throw new Error(`the warm-up query wrote no ${cacheFile}`)
