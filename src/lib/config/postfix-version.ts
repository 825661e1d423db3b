// The "postfix compatibility version" of a configuration: which Postfix release's rules
// `serve` and `check-access` follow. Postfix's proxymap approves tables differently from one
// release to the next (3.11 also reads smtpd_restriction_classes and /file/name elements,
// and lists more parameters in proxy_read_maps by default), so the configuration's own
// release decides, chosen in this order:
//   1. an explicit choice: the --postfix-version option, else $PROXYMAP_POSTFIX_VERSION;
//   2. the Postfix installed here: mail_version of the postconf(1) in main.cf's
//      command_directory (else /usr/sbin/postconf), asked once per process;
//   3. else 3.7's rules, the release this project was first measured against.

import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {
  POSTFIX_3_7_DEFAULTS, POSTFIX_3_10_DEFAULTS, POSTFIX_3_11_DEFAULTS, PROXYMAP_3_11_DAEMON_PARAMETERS,
  PROXYMAP_DAEMON_PARAMETERS,
} from './defaults.js'
import {ConfigError} from './errors.js'
import type {MainConfig} from './index.js'

/** The releases whose rules this project knows, oldest first. */
export const POSTFIX_VERSIONS = ['3.7', '3.10', '3.11'] as const
export type PostfixVersion = (typeof POSTFIX_VERSIONS)[number]

/** The rules used when neither a choice nor an installed Postfix says otherwise. */
export const FALLBACK_POSTFIX_VERSION: PostfixVersion = '3.7'
/** The environment variable that chooses the rules when no option does. */
export const POSTFIX_VERSION_ENV = 'PROXYMAP_POSTFIX_VERSION'
/** Where postconf is looked for when main.cf's command_directory has none. */
export const FALLBACK_POSTCONF = '/usr/sbin/postconf'

export interface PostfixVersionChoice {
  version: PostfixVersion
  /** option: --postfix-version; environment: $PROXYMAP_POSTFIX_VERSION; installed: postconf said so; fallback: nothing did. */
  source: 'option' | 'environment' | 'installed' | 'fallback'
  /** With source "installed": the installed release's mail_version, e.g. "3.11.7". */
  mailVersion?: string
  /** With source "installed" or "fallback": the postconf that was (or would have been) asked. */
  postconf?: string
}

/** One of the rule versions exactly as written ("3.7", "3.10", "3.11"), else undefined. */
export function parsePostfixVersion(text: string): PostfixVersion | undefined {
  return (POSTFIX_VERSIONS as readonly string[]).includes(text.trim()) ? (text.trim() as PostfixVersion) : undefined
}

/**
 * The rules a Postfix release follows, from its mail_version ("3.11.7", "3.8.0-RC1", ...):
 * releases before 3.9 have 3.7's proxymap, 3.9 and 3.10 have 3.10's (the same approval code,
 * another fatal text), 3.11 and later 3.11's (the newest this project knows).
 */
export function rulesVersionOf(mailVersion: string): PostfixVersion | undefined {
  const match = /^(\d+)\.(\d+)/.exec(mailVersion.trim())
  if (!match) return undefined
  const major = Number(match[1])
  const minor = Number(match[2])
  if (major < 3 || (major === 3 && minor < 9)) return '3.7'
  if (major === 3 && minor < 11) return '3.10'
  return '3.11'
}

const installedVersions = new Map<string, string | undefined>()

/** `postconf -d -h mail_version` of this postconf, once per process; undefined when it cannot say. */
export function installedMailVersion(postconf: string, configDir?: string): string | undefined {
  if (installedVersions.has(postconf)) return installedVersions.get(postconf)
  let version: string | undefined
  try {
    const args = [...(configDir ? ['-c', configDir] : []), '-d', '-h', 'mail_version']
    const out = execFileSync(postconf, args, {encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore']})
    version = out.trim() || undefined
  } catch {
    version = undefined
  }
  installedVersions.set(postconf, version)
  return version
}

/** The postconf that belongs to the configuration: in its command_directory, else /usr/sbin's. */
export function configPostconf(config?: MainConfig): string {
  let directory: string | undefined
  try {
    directory = config?.get('command_directory')
  } catch {
    directory = undefined
  }
  if (directory) {
    const candidate = path.join(directory, 'postconf')
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch { /* not there: the usual place */ }
  }
  return FALLBACK_POSTCONF
}

export interface ChooseOptions {
  /** The --postfix-version value, if given. */
  option?: string
  /** The environment to read $PROXYMAP_POSTFIX_VERSION from (read before it is cleaned). */
  env?: NodeJS.ProcessEnv
  /** The configuration: its command_directory names the installed postconf. */
  config?: MainConfig
}

/** Chooses the rules (see the top of this file). Throws a ConfigError for a bad explicit value. */
export function choosePostfixVersion(options: ChooseOptions = {}): PostfixVersionChoice {
  const expected = `expected one of ${POSTFIX_VERSIONS.join(', ')}`
  if (options.option !== undefined) {
    const version = parsePostfixVersion(options.option)
    if (!version) throw new ConfigError(`bad --postfix-version value "${options.option}": ${expected}`)
    return {version, source: 'option'}
  }
  const fromEnv = options.env?.[POSTFIX_VERSION_ENV]
  if (fromEnv !== undefined && fromEnv !== '') {
    const version = parsePostfixVersion(fromEnv)
    if (!version) throw new ConfigError(`bad ${POSTFIX_VERSION_ENV} value "${fromEnv}": ${expected}`)
    return {version, source: 'environment'}
  }
  const postconf = configPostconf(options.config)
  const mailVersion = installedMailVersion(postconf, options.config?.configDir)
  const version = mailVersion === undefined ? undefined : rulesVersionOf(mailVersion)
  if (version) return {version, source: 'installed', mailVersion, postconf}
  return {version: FALLBACK_POSTFIX_VERSION, source: 'fallback', postconf}
}

/** For people: "Postfix 3.11 rules (installed Postfix 3.11.7, /usr/sbin/postconf)". */
export function describePostfixVersion(choice: PostfixVersionChoice): string {
  const why = {
    option: 'chosen with --postfix-version',
    environment: `chosen with ${POSTFIX_VERSION_ENV}`,
    installed: `installed Postfix ${choice.mailVersion}, ${choice.postconf}`,
    fallback: `no installed Postfix answered${choice.postconf ? ` (${choice.postconf})` : ''}`,
  }[choice.source]
  return `Postfix ${choice.version} rules (${why})`
}

/** How a release's proxymap approves tables (authorize_proxied_maps() and its callers). */
export interface ApprovalRules {
  version: PostfixVersion
  /** The release's compiled-in defaults (postconf -d) of the parameters this project reads. */
  defaults: Readonly<Record<string, string>>
  /** The parameters a proxymap process of the release defines: only these have defaults there. */
  daemonParameters: ReadonlySet<string>
  /**
   * How a list is walked. '3.7': proxy: words (and groups, unionmap/pipemap) only; a syntax
   * error warns "bad PARAMETER parameter value: ...". '3.11': also reads /file/name words
   * (their logical lines, recursively), skips words that do not start with a letter or digit
   * or have no ':', and warns "bad syntax in ORIGIN content: ..." (ORIGIN: the parameter,
   * smtpd_restriction_classes or the file).
   */
  listWalk: '3.7' | '3.11'
  /** 3.11: the values of the classes in smtpd_restriction_classes approve tables for proxymap (not proxywrite). */
  restrictionClasses: boolean
}

const RULES: Record<PostfixVersion, ApprovalRules> = {
  '3.7': {version: '3.7', defaults: POSTFIX_3_7_DEFAULTS, daemonParameters: PROXYMAP_DAEMON_PARAMETERS, listWalk: '3.7', restrictionClasses: false},
  '3.10': {version: '3.10', defaults: POSTFIX_3_10_DEFAULTS, daemonParameters: PROXYMAP_DAEMON_PARAMETERS, listWalk: '3.7', restrictionClasses: false},
  '3.11': {version: '3.11', defaults: POSTFIX_3_11_DEFAULTS, daemonParameters: PROXYMAP_3_11_DAEMON_PARAMETERS, listWalk: '3.11', restrictionClasses: true},
}

export function approvalRulesFor(version: PostfixVersion): ApprovalRules {
  return RULES[version]
}

/** proxymap's fatal error for a service name other than proxymap or proxywrite, in the release's words. */
export function invalidServiceNameMessage(version: PostfixVersion, serviceName: string): string {
  // 3.7 (and 3.8) really name proxymap twice.
  return version === '3.7'
    ? 'service name must be one of proxymap or proxymap'
    : `invalid service name: "${serviceName}" - service name must be "proxywrite" or "proxymap"`
}
