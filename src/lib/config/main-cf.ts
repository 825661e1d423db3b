// Reading main.cf the way Postfix 3.7 does (src/util/readlline.c, split_nameval.c, dict.c
// dict_load_fp(), src/global/mail_conf.c), and looking parameters up with $name expansion.

import fs from 'node:fs'
import path from 'node:path'
import { HOST_COMPUTED_PARAMETERS, POSTFIX_3_7_DEFAULTS } from './defaults.js'
import { ConfigError } from './errors.js'
import { MacroExpansionError, expandMacros, type ParameterLookup } from './expand.js'
import {
  computeMyDomain,
  computeMyHostname,
  computeMyNetworks,
  listLocalAddresses,
  type LocalInterfaceAddress,
} from './host-defaults.js'
import type { MainConfig } from './index.js'

// Postfix's ISSPACE(): isascii() && isspace().
const POSTFIX_SPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r'])
const isSpace = (ch: string | undefined): boolean => ch !== undefined && POSTFIX_SPACE.has(ch)

export interface ParsedMainCf {
  /** name → value, the last setting of each name winning. */
  parameters: Map<string, string>
  /** Postfix's warnings for this text (overridden entries, lines starting with whitespace). */
  warnings: string[]
}

/** main.cf's name = value settings; throws a ConfigError where Postfix stops with a fatal error. */
export function parseMainCf(text: string): Map<string, string> {
  return parseMainCfWithWarnings(text).parameters
}

/** parseMainCf() plus the warnings Postfix would log; `fileName` appears in the messages. */
export function parseMainCfWithWarnings(text: string, fileName = 'main.cf'): ParsedMainCf {
  const parameters = new Map<string, string>()
  const warnings: string[] = []
  const reader = new LogicalLineReader(text, fileName, warnings)
  for (let line = reader.next(); line !== null; line = reader.next()) {
    const setting = splitNameValue(line.text)
    if (typeof setting === 'string') {
      throw new ConfigError(`${fileName}, line ${line.firstLineNumber}: ${setting}: "${line.text}"`)
    }
    const earlier = parameters.get(setting.name)
    if (earlier !== undefined && earlier !== setting.value) {
      warnings.push(`${fileName}, line ${line.firstLineNumber}: overriding earlier entry: ${setting.name}=${earlier}`)
    }
    parameters.set(setting.name, setting.value)
  }
  return { parameters, warnings }
}

// readllines(): a logical line is a line that does not start with whitespace plus the lines
// that follow it and do start with whitespace, joined without separator (the newline goes,
// the indentation stays). Lines whose first non-space character is '#', and all-space lines,
// are dropped wherever they are, so they neither end nor break a logical line.
class LogicalLineReader {
  private position = 0
  private lineNumber = 0

  constructor(
    private readonly text: string,
    private readonly fileName: string,
    private readonly warnings: string[],
  ) {}

  next(): { text: string; firstLineNumber: number } | null {
    for (;;) {
      let buffer = ''
      let firstLineNumber = 0
      for (;;) {
        const start = buffer.length
        const newline = this.text.indexOf('\n', this.position)
        const atEnd = newline < 0
        buffer += this.text.slice(this.position, atEnd ? this.text.length : newline)
        this.position = atEnd ? this.text.length : newline + 1
        if (!atEnd || buffer.length > start) this.lineNumber += 1
        let cursor = start
        while (cursor < buffer.length && isSpace(buffer[cursor])) cursor++
        if (cursor === buffer.length || buffer[cursor] === '#') {
          buffer = buffer.slice(0, start)
        } else if (start === 0) {
          firstLineNumber = this.lineNumber
        }
        if (atEnd) break
        if (buffer.length > 0) {
          const following = this.text[this.position]
          if (following !== '#' && !isSpace(following)) break
        }
      }
      if (buffer.length > 0 && isSpace(buffer[0])) {
        // Postfix warns and skips such text rather than stopping.
        const shown = buffer.length > 30 ? `${buffer.slice(0, 30)}...` : buffer
        this.warnings.push(`${this.fileName}: logical line must not start with whitespace: "${shown}"`)
        continue
      }
      return buffer.length > 0 ? { text: buffer, firstLineNumber } : null
    }
  }
}

// split_nameval(): "name = value" with optional whitespace around '=', value trimmed.
// Returns Postfix's error text when the line is not a setting.
function splitNameValue(line: string): { name: string; value: string } | string {
  let cursor = 0
  while (cursor < line.length && isSpace(line[cursor])) cursor++
  if (cursor === line.length || line[cursor] === '=') return 'missing attribute name'
  const nameStart = cursor
  while (cursor < line.length && !isSpace(line[cursor]) && line[cursor] !== '=') cursor++
  const name = line.slice(nameStart, cursor)
  while (cursor < line.length && isSpace(line[cursor])) cursor++
  if (line[cursor] !== '=') return "missing '=' after attribute name"
  cursor++
  while (cursor < line.length && isSpace(line[cursor])) cursor++
  let end = line.length
  while (end > cursor && isSpace(line[end - 1])) end--
  return { name, value: line.slice(cursor, end) }
}

/** What the host tells Postfix's computed defaults; replaceable in tests. */
export interface HostFacts {
  hostname?: string
  localAddresses?: LocalInterfaceAddress[]
}

export interface PostfixMainConfigOptions {
  configDir: string
  mainCfPath: string
  parameters: Map<string, string>
  /** Settings that win over main.cf, like master.cf "-o name=value". */
  overrides?: Map<string, string>
  warnings?: string[]
  host?: HostFacts
}

/** A main.cf read from disk (or text), with Postfix 3.7's defaults and $name expansion. */
export class PostfixMainConfig implements MainConfig {
  readonly configDir: string
  readonly mainCfPath: string
  readonly warnings: readonly string[]
  private readonly parameters: Map<string, string>
  private readonly overrides: Map<string, string>
  private readonly host: HostFacts
  private readonly computedDefaults = new Map<string, string>()

  constructor(options: PostfixMainConfigOptions) {
    this.configDir = options.configDir
    this.mainCfPath = options.mainCfPath
    this.parameters = options.parameters
    this.overrides = options.overrides ?? new Map()
    this.warnings = options.warnings ?? []
    this.host = options.host ?? {}
  }

  raw(name: string): string | undefined {
    return this.overrides.get(name) ?? this.parameters.get(name)
  }

  isSet(name: string): boolean {
    return this.raw(name) !== undefined
  }

  /** The names set in main.cf or the overrides, in first-seen order. */
  setNames(): string[] {
    return [...new Set([...this.parameters.keys(), ...this.overrides.keys()])]
  }

  get(name: string): string {
    return expandParameter(name, (reference) => this.raw(reference) ?? this.defaultValue(reference), this.mainCfPath)
  }

  /** See getInDaemonScope() below. */
  getInDaemonScope(name: string, daemonParameters: ReadonlySet<string>): string {
    return getInDaemonScope(this, name, daemonParameters)
  }

  expand(text: string): string {
    return expandMacros(text, (reference) => this.raw(reference) ?? this.defaultValue(reference))
  }

  defaultValue(name: string): string | undefined {
    // Postfix enters the directory it reads main.cf from as config_directory before reading it.
    if (name === 'config_directory') return this.configDir
    switch (name) {
      case 'myhostname':
      case 'mydomain':
      case 'mynetworks':
        return this.computedDefault(name)
    }
    return Object.hasOwn(POSTFIX_3_7_DEFAULTS, name) ? POSTFIX_3_7_DEFAULTS[name] : undefined
  }

  // While computing host defaults, Postfix expands a main.cf setting with main.cf settings only
  // (mail_conf_lookup_eval()), and a compiled-in default with all defaults.
  private readonly mainCfOnly: ParameterLookup = (reference) =>
    this.raw(reference) ?? (reference === 'config_directory' ? this.configDir : undefined)

  private evaluatedSetting(name: string): string | undefined {
    const setting = this.raw(name)
    return setting === undefined ? undefined : expandMacros(setting, this.mainCfOnly)
  }

  private settingOrDefault(name: string): string {
    return this.evaluatedSetting(name) ?? this.expand(POSTFIX_3_7_DEFAULTS[name] ?? '')
  }

  private computedDefault(name: 'myhostname' | 'mydomain' | 'mynetworks'): string {
    const cached = this.computedDefaults.get(name)
    if (cached !== undefined) return cached
    let value: string
    if (name === 'myhostname') {
      value = computeMyHostname(this.evaluatedSetting('mydomain'), this.host.hostname)
    } else if (name === 'mydomain') {
      value = computeMyDomain(this.evaluatedSetting('myhostname') ?? this.computedDefault('myhostname'))
    } else {
      value = computeMyNetworks(
        {
          style: this.settingOrDefault('mynetworks_style'),
          interfaces: this.settingOrDefault('inet_interfaces'),
          protocols: this.settingOrDefault('inet_protocols'),
        },
        this.host.localAddresses ?? listLocalAddresses(),
      )
    }
    this.computedDefaults.set(name, value)
    return value
  }
}

/**
 * The value of parameter `name` as a Postfix daemon that defines only `daemonParameters` sees
 * it: a parameter that neither main.cf nor the overrides set, and that the daemon does not
 * define, expands to empty there (postconf -x would show its default). Works with any
 * MainConfig: defaults come from `defaults` (a release's table, Postfix 3.7's unless told),
 * host-computed ones from config.get().
 */
export function getInDaemonScope(
  config: MainConfig, name: string, daemonParameters: ReadonlySet<string>,
  defaults: Readonly<Record<string, string>> = POSTFIX_3_7_DEFAULTS,
): string {
  return expandParameter(name, daemonScopeLookup(config, daemonParameters, defaults), path.join(config.configDir, 'main.cf'))
}

/** The lookup behind getInDaemonScope(): main.cf (and overrides), then the daemon's defaults. */
export function daemonScopeLookup(
  config: MainConfig, daemonParameters: ReadonlySet<string>,
  defaults: Readonly<Record<string, string>> = POSTFIX_3_7_DEFAULTS,
): ParameterLookup {
  const daemonDefault = (reference: string): string | undefined => {
    if (!daemonParameters.has(reference)) return undefined
    if (reference === 'config_directory') return config.configDir
    if (HOST_COMPUTED_PARAMETERS.has(reference)) return config.get(reference)
    return Object.hasOwn(defaults, reference) ? defaults[reference] : undefined
  }
  return (reference) => config.raw(reference) ?? daemonDefault(reference)
}

// Expands one parameter; an error names the parameter and the file, with Postfix's text.
function expandParameter(name: string, lookup: ParameterLookup, mainCfPath: string): string {
  const value = lookup(name)
  if (value === undefined) return ''
  try {
    return expandMacros(value, lookup)
  } catch (error) {
    if (!(error instanceof MacroExpansionError)) throw error
    const hint = error.postfixMessage.startsWith('unreasonable macro call nesting')
      ? ' (a parameter refers to itself, directly or through other parameters; for example ' +
        `"${name} = $${name} ..." is not allowed: list the entries instead)`
      : ''
    throw new MacroExpansionError(
      error.postfixMessage,
      `cannot expand parameter ${name} of ${mainCfPath}: ${error.postfixMessage}${hint}`,
    )
  }
}

export interface LoadMainConfigOptions {
  /** The directory with main.cf; default from resolveConfigDir(undefined, env). */
  configDir?: string
  env?: NodeJS.ProcessEnv
  /** Settings that win over main.cf, like master.cf "-o name=value". */
  overrides?: Record<string, string>
  host?: HostFacts
}

/** Postfix's rule for the configuration directory: -c DIR, else $MAIL_CONFIG, else /etc/postfix. */
export function resolveConfigDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag
  const fromEnvironment = env.MAIL_CONFIG
  if (fromEnvironment !== undefined && fromEnvironment !== '') return fromEnvironment
  return '/etc/postfix'
}

/** Reads DIR/main.cf; throws a ConfigError when it is missing or malformed. */
export function loadMainConfig(options: LoadMainConfigOptions = {}): PostfixMainConfig {
  const configDir = options.configDir ?? resolveConfigDir(undefined, options.env ?? process.env)
  const mainCfPath = path.join(configDir, 'main.cf')
  let text: string
  try {
    // Bytes, as Postfix reads them: table names in proxy_read_maps are compared byte for
    // byte with the names on the wire, which this project carries as latin1 strings.
    text = fs.readFileSync(mainCfPath, 'latin1')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const reason =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message
    throw new ConfigError(
      `cannot read ${mainCfPath}: ${reason}; the Postfix configuration directory must contain main.cf ` +
        '(choose another directory with -c DIR or the MAIL_CONFIG environment variable)',
    )
  }
  const parsed = parseMainCfWithWarnings(text, mainCfPath)
  return new PostfixMainConfig({
    configDir,
    mainCfPath,
    parameters: parsed.parameters,
    overrides: new Map(Object.entries(options.overrides ?? {})),
    warnings: parsed.warnings,
    host: options.host,
  })
}
