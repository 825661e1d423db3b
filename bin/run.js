#!/usr/bin/env node
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {bundledPackageJson, freshBundle, requireWithCodeCache} from '../dist/lib/cli/bundle.js'

// Built (npm run build), the CLI runs from dist/proxymap.cjs; after a plain `tsc`, from the
// modules in dist/ as oclif finds them through package.json.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bundleFile = freshBundle(root)
const bundle = bundleFile === undefined ? undefined : requireWithCodeCache(bundleFile)

// master(8) starts a daemon when a client is already waiting, as Postfix's proxymap answers
// within milliseconds: under master, `serve` goes straight to the daemon, without oclif's
// start-up (its configuration, plugins and command discovery), whose options would not
// apply anyway (master passes Postfix's daemon options).
if (process.argv[2] === 'serve' && process.env.GENERATION !== undefined) {
  const {runUnderMaster, startedByMaster} = bundle ?? await import('../dist/lib/server/master.js')
  if (startedByMaster()) {
    try {
      process.exit(await runUnderMaster(process.argv.slice(3)))
    } catch (err) {
      process.stderr.write(`proxymap: ${err?.message ?? err}\n`)
      process.exit(2) // as serve exits on an error it reports (a usage error)
    }
  }
}

if (bundle) {
  const pjson = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
  await bundle.execute({loadOptions: {root, pjson: bundledPackageJson(pjson)}})
} else {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
