// environ:anything — the process environment as a table (Postfix 3.7 dict_env.c).

import {DICT_FLAG} from '../protocol/constants.js'
import type {MainConfig} from '../config/index.js'
import {activateUtf8, isValidUtf8, allAscii, lowercaseAscii, needUtf8Activation} from './fold.js'
import {splitOutsideBraces, extractBraced, splitNameValue} from '../util/postfix-strings.js'
import {OpenOptions, Table, TableError, TableType} from './table.js'

/** Postfix 3.7's default import_environment. */
const DEFAULT_IMPORT_ENVIRONMENT =
  'MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME'

/** Postfix's own default configuration directory. */
const DEFAULT_CONFIG_DIR = '/etc/postfix'

/**
 * Variables set through environ tables (Postfix: setenv() in the process), shared by all
 * environ tables of this process, as the environment is. Names and values are byte strings.
 */
const updates = new Map<string, string>()

const toText = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')
const toBytes = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')

/**
 * The elements of import_environment as Postfix's mail_parm_split() gives them: separated
 * by commas or whitespace outside braces, a `{...}` element stripped of its braces.
 * Elements Postfix would reject (fatal) are left out.
 */
function importEnvironmentElements(config: MainConfig): string[] {
  let list: string
  try {
    list = config.get('import_environment')
  } catch {
    list = ''
  }
  if (list === '' && !config.isSet('import_environment')) list = DEFAULT_IMPORT_ENVIRONMENT
  const elements: string[] = []
  for (const element of splitOutsideBraces(list)) {
    if (element[0] !== '{') {
      elements.push(element)
      continue
    }
    const inner = extractBraced(element)
    if (inner.error === undefined) elements.push(inner.text)
  }
  return elements
}

/** The `name = value` elements of import_environment (trimmed), as update_env() sets them. */
export function importEnvironmentOverrides(config: MainConfig): Map<string, string> {
  const overrides = new Map<string, string>()
  for (const element of importEnvironmentElements(config)) {
    if (!element.includes('=')) continue
    const pair = splitNameValue(element)
    if ('error' in pair) continue
    overrides.set(toBytes(pair.key), toBytes(pair.value))
  }
  return overrides
}

/**
 * What master(8) does before it starts any daemon (Postfix clean_env()): keep only the
 * variables that import_environment names, and set its `name=value` elements. A standalone
 * server calls this so that its tables see the environment Postfix's proxymap would, not
 * the administrator's shell (HOME, ~/.my.cnf, PGSSL*, ...).
 */
export function cleanEnvironment(config: MainConfig): void {
  const keep = new Set(importEnvironmentElements(config).filter(element => !element.includes('=')))
  for (const name of Object.keys(process.env)) if (!keep.has(name)) delete process.env[name]
  for (const [name, value] of importEnvironmentOverrides(config)) process.env[toText(name)] = toText(value)
}

/**
 * FIXED; lookup and update (no delete, no sequence). Keys are lowercase()d (ASCII only)
 * when the flags at call time include FOLD_FIX; with the UTF-8 layer active that layer
 * casefolds them instead. Environment variable names are case-sensitive, so with folding
 * on only lowercase names can be found (postmap -q folds by default; -f does not).
 *
 * What a lookup sees is what postmap(1) sees: the caller's environment, with the
 * import_environment `name=value` settings applied (postmap runs update_env()), and
 * MAIL_CONFIG set to the configuration directory when one was chosen (postmap -c sets it;
 * here: a directory other than /etc/postfix, or MAIL_CONFIG already set). Variables set
 * through `update` (any environ table of this process) come first. A key that is not
 * valid UTF-8 cannot name a variable of this process (Node decodes the environment as
 * UTF-8) and is not found.
 */
export class EnvironTable implements Table {
  readonly type = 'environ'
  flags: number

  constructor(readonly name: string, private readonly overrides: ReadonlyMap<string, string>, dictFlags: number) {
    this.flags = dictFlags | DICT_FLAG.FIXED
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  lookup(key: string): string | undefined {
    const name = this.fold(cString(key))
    const updated = updates.get(name)
    if (updated !== undefined) return updated
    const override = this.overrides.get(name)
    if (override !== undefined) return override
    if (name === '' || (!allAscii(name) && !isValidUtf8(name))) return undefined
    const value = process.env[toText(name)]
    return value === undefined ? undefined : toBytes(value)
  }

  /** Postfix setenv(name, value, 1); an empty name or one with `=` is refused (EINVAL). */
  update(key: string, value: string): boolean {
    const name = this.fold(cString(key))
    if (name === '' || name.includes('='))
      throw new TableError('config', `setenv: Invalid argument`)
    const v = cString(value)
    updates.set(name, v)
    if (isValidUtf8(name) && isValidUtf8(v)) process.env[toText(name)] = toText(v)
    return true
  }
}

function cString(s: string): string {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}

/** The settings postmap makes before opening any table (see EnvironTable). */
function environmentOverrides(config: MainConfig): Map<string, string> {
  // postmap sets MAIL_CONFIG (-c) first, then applies import_environment, which may override it.
  const overrides = new Map<string, string>()
  if (config.configDir !== DEFAULT_CONFIG_DIR || process.env.MAIL_CONFIG !== undefined)
    overrides.set('MAIL_CONFIG', toBytes(config.configDir))
  for (const [name, value] of importEnvironmentOverrides(config)) overrides.set(name, value)
  return overrides
}

/** Open as dict_env_open() does: any name, any access mode. */
export const environType: TableType = {
  type: 'environ',
  open(name: string, options: OpenOptions): Table {
    const table = new EnvironTable(name, environmentOverrides(options.config), options.dictFlags)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
