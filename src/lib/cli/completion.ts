// Shell completion from the commands' own metadata (the same that --help and the manual
// pages show): command names, each command's flags, the values of flags with fixed
// options, directories for -c; anything else falls back to file names (table paths).

import type {CommandManifest} from './manpage.js'

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** A bash completion script for `bin`: `source <(proxymap completion bash)`. */
export function bashCompletion(bin: string, commands: CommandManifest[]): string {
  const visible = commands.filter(c => !c.hidden).sort((a, b) => a.id.localeCompare(b.id))
  const fn = `_${bin.replace(/[^A-Za-z0-9_]/g, '_')}_complete`
  const valueCases: string[] = []
  const flagCases: string[] = []
  for (const command of visible) {
    const flags = Object.values(command.flags ?? {}).filter(f => !f.hidden)
    const words = flags.flatMap(f => [...(f.char ? [`-${f.char}`] : []), `--${f.name}`, ...(f.allowNo ? [`--no-${f.name}`] : [])])
    flagCases.push(`    ${shellQuote(command.id)}) words=${shellQuote(words.join(' '))} ;;`)
    for (const flag of flags) {
      if (flag.type !== 'option') continue
      const names = [...(flag.char ? [`-${flag.char}`] : []), `--${flag.name}`].map(n => shellQuote(`${command.id} ${n}`)).join('|')
      const action = flag.options ? `COMPREPLY=($(compgen -W ${shellQuote(flag.options.join(' '))} -- "$cur"))`
        : flag.name === 'config-dir' ? 'COMPREPLY=($(compgen -d -- "$cur"))' : 'COMPREPLY=()'
      valueCases.push(`    ${names}) ${action}; return ;;`)
    }
  }
  return `# bash completion for ${bin}; generated from its commands (${bin} completion bash).
# Load it with: source <(${bin} completion bash)
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" command="\${COMP_WORDS[1]}" words
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W ${shellQuote(visible.map(c => c.id).join(' '))} -- "$cur"))
    return
  fi
  case "$command $prev" in
${valueCases.join('\n')}
  esac
  case "$cur" in
    -*)
      case "$command" in
${flagCases.map(line => `    ${line}`).join('\n')}
        *) words='' ;;
      esac
      COMPREPLY=($(compgen -W "$words --help" -- "$cur"))
      return ;;
  esac
  COMPREPLY=()
}
complete -o default -o bashdefault -F ${fn} ${bin}
`
}
