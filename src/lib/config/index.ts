// The Postfix configuration as proxymap sees it: main.cf read as Postfix 3.7 reads it, with
// Postfix 3.7's defaults and $name expansion (the approval lists use the defaults of the
// configuration's Postfix release: postfix-version.ts). Implementation in main-cf.ts:
// loadMainConfig() returns a PostfixMainConfig, which also has mainCfPath, warnings, expand(),
// defaultValue(), setNames() and getInDaemonScope().

export interface MainConfig {
  /** The directory main.cf was read from. */
  readonly configDir: string
  /**
   * A parameter's value after $name expansion, as `postconf -x -h NAME` shows it (modulo
   * postconf's whitespace folding): overrides, then main.cf, then Postfix 3.7's default
   * ('' if unknown). Throws a MacroExpansionError where Postfix could not expand it either
   * (for example "unreasonable macro call nesting" from a self-reference).
   */
  get(name: string): string
  /** The value as written in main.cf or the overrides, before expansion; undefined when not set there. */
  raw(name: string): string | undefined
  /** True when main.cf (or an override) sets the parameter. */
  isSet(name: string): boolean
}

export { ConfigError } from './errors.js'
export { MacroExpansionError, expandMacros, type ParameterLookup } from './expand.js'
export {
  POSTFIX_3_7_DEFAULTS, POSTFIX_3_10_DEFAULTS, POSTFIX_3_11_DEFAULTS, PROXYMAP_DAEMON_PARAMETERS,
  PROXYMAP_3_11_DAEMON_PARAMETERS, HOST_COMPUTED_PARAMETERS,
} from './defaults.js'
export {
  POSTFIX_VERSIONS, POSTFIX_VERSION_ENV, FALLBACK_POSTFIX_VERSION, approvalRulesFor, choosePostfixVersion,
  configPostconf, describePostfixVersion, installedMailVersion, invalidServiceNameMessage, parsePostfixVersion,
  rulesVersionOf, type ApprovalRules, type ChooseOptions, type PostfixVersion, type PostfixVersionChoice,
} from './postfix-version.js'
export {
  PostfixMainConfig,
  daemonScopeLookup,
  getInDaemonScope,
  loadMainConfig,
  parseMainCf,
  parseMainCfWithWarnings,
  resolveConfigDir,
  type HostFacts,
  type LoadMainConfigOptions,
  type ParsedMainCf,
} from './main-cf.js'
