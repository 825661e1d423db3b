// The root of this installation, found from this module's own location. Not a fixed number
// of levels up: the build bundles the modules into shared chunks (scripts/bundle.mjs) whose
// directory is not that of the source file, and tsx runs the same code from src/.

import {existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

let root: string | undefined

/** The nearest directory above this module that holds a package.json (ours: src/, dist/ and their subdirectories have none). */
export function packageRoot(): string {
  if (root !== undefined) return root
  const start = path.dirname(fileURLToPath(import.meta.url))
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return (root = dir)
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${start}`)
  }
}
