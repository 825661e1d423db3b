// After `oclif manifest`: the manual pages (man/*.1) and the bash completion
// (completion/proxymap.bash) from the commands' metadata, the same text as --help.
// Run by `npm run build`; the package ships both (package.json "man" and "files").

import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {manualPages} from '../dist/lib/cli/manpage.js'
import {bashCompletion} from '../dist/lib/cli/completion.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8'))
const bin = pkg.oclif.bin
const commands = Object.values(manifest.commands)
// A reproducible date (SOURCE_DATE_EPOCH, as Debian's builds set it), else today.
const epoch = process.env.SOURCE_DATE_EPOCH
const date = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().slice(0, 10)

const pages = manualPages(commands, {bin, version: pkg.version, date, description: pkg.description})
fs.rmSync(path.join(root, 'man'), {recursive: true, force: true})
fs.mkdirSync(path.join(root, 'man'))
for (const page of pages) fs.writeFileSync(path.join(root, 'man', page.file), page.text)
fs.mkdirSync(path.join(root, 'completion'), {recursive: true})
fs.writeFileSync(path.join(root, 'completion', `${bin}.bash`), bashCompletion(bin, commands))

// package.json "man" must name every page: npm installs exactly those.
const listed = new Set(pkg.man ?? [])
const missing = pages.map(p => `./man/${p.file}`).filter(file => !listed.has(file))
if (missing.length > 0) {
  console.error(`build-docs: package.json "man" does not list ${missing.join(', ')}`)
  process.exit(1)
}
console.log(`build-docs: ${pages.length} manual pages in man/, completion/${bin}.bash`)
