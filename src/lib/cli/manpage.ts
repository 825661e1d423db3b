// Manual pages from the same text as --help: the command metadata oclif writes to
// oclif.manifest.json (summary, usage, description, arguments, flags, examples), as roff
// for man(1). proxymap(1) lists the commands; proxymap-COMMAND(1) is each one's --help.

import {EXIT} from './exit-codes.js'

/** What oclif.manifest.json holds for one command (the fields used here). */
export interface CommandManifest {
  id: string
  summary?: string
  description?: string
  hidden?: boolean
  usage?: string | string[]
  examples?: (string | {description?: string; command: string})[]
  args?: Record<string, {name: string; description?: string; required?: boolean; multiple?: boolean}>
  flags?: Record<string, {
    name: string; char?: string; type: 'boolean' | 'option'; summary?: string; description?: string
    options?: string[]; default?: unknown; allowNo?: boolean; hidden?: boolean; helpGroup?: string
  }>
}

export interface ManualPage {
  /** proxymap.1, proxymap-query.1, ... */
  file: string
  text: string
}

export interface ManualOptions {
  bin: string
  version: string
  /** The date on the pages' footer: the release's, so that a rebuild gives the same bytes. */
  date: string
  /** One line for proxymap(1)'s NAME. */
  description: string
}

/** Text for roff: backslashes kept, minus signs as \-, and no line read as a request. */
export function roffEscape(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/-/g, '\\-')
    .split('\n').map(line => (/^[.']/.test(line) ? `\\&${line}` : line)).join('\n')
}

/** Escaped text in which a long word (a JSON shape, a path) may break after its commas and slashes (\\: is roff's break point). */
const breakable = (text: string): string => roffEscape(text).replace(/\S{40,}/g, word => word.replace(/([,/])(?=\S)/g, '$1\\:'))

const template = (text: string, bin: string, id: string): string =>
  text.replace(/<%=\s*config\.bin\s*%>/g, bin).replace(/<%=\s*command\.id\s*%>/g, id)

/** A flag as in the synopsis of a man page: \fB\-c\fR, \fB\-\-config\-dir\fR=\fIvalue\fR. */
function flagHeading(flag: NonNullable<CommandManifest['flags']>[string]): string {
  const long = flag.allowNo ? `--[no-]${flag.name}` : `--${flag.name}`
  const names = [...(flag.char ? [`\\fB${roffEscape(`-${flag.char}`)}\\fR`] : []), `\\fB${roffEscape(long)}\\fR`].join(', ')
  if (flag.type === 'boolean') return names
  return `${names}=\\fI${flag.options ? roffEscape(flag.options.join('|')) : 'value'}\\fR`
}

/**
 * A description as --help shows it: paragraphs separated by blank lines; within one, each
 * line is a line of its own (reflow() keeps them), and a line "word   text" (a word, then
 * a gap of two spaces or more) is a list item, as --help aligns them: a tagged paragraph.
 */
function paragraphs(text: string): string[] {
  const out: string[] = []
  for (const paragraph of text.split(/\n\s*\n/)) {
    const lines = paragraph.split('\n').map(line => line.trim()).filter(line => line !== '')
    if (lines.length === 0) continue
    out.push('.PP')
    let inList = false
    lines.forEach((line, i) => {
      const item = /^(\S+) {2,}(.+)$/.exec(line)
      if (item) out.push('.TP 8', `\\fB${roffEscape(item[1])}\\fR`, breakable(item[2]))
      else out.push(...(inList ? ['.PP'] : i > 0 ? ['.br'] : []), breakable(line))
      inList = item !== null
    })
  }
  return out
}

function header(name: string, options: ManualOptions): string[] {
  return [
    `.\\" Generated from the command's --help text by scripts/build-docs.mjs; do not edit.`,
    `.TH ${roffEscape(name.toUpperCase())} 1 "${options.date}" "${roffEscape(`${options.bin} ${options.version}`)}" "User Commands"`,
    // Table names, JSON shapes and paths are long words: left-aligned, never hyphenated.
    '.ad l',
    '.nh',
  ]
}

export function commandPage(command: CommandManifest, all: CommandManifest[], options: ManualOptions): ManualPage {
  const {bin} = options
  const name = `${bin}-${command.id}`
  const lines = [...header(name, options), '.SH NAME', `${roffEscape(name)} \\- ${roffEscape(command.summary ?? '')}`]
  lines.push('.SH SYNOPSIS')
  const usage = command.usage === undefined ? [] : Array.isArray(command.usage) ? command.usage : [command.usage]
  const synopsis = usage.length > 0 ? usage.map(u => `${bin} ${template(u, bin, command.id)}`) : [defaultUsage(command, bin)]
  lines.push(synopsis.map(u => `.B ${roffEscape(u.split(' ').slice(0, 2).join(' '))}\n${roffEscape(u.split(' ').slice(2).join(' '))}`).join('\n.br\n'))
  if (command.description) lines.push('.SH DESCRIPTION', ...paragraphs(template(command.description, bin, command.id)))
  const args = Object.values(command.args ?? {})
  if (args.length > 0) {
    lines.push('.SH ARGUMENTS')
    for (const arg of args) lines.push('.TP', `\\fI${roffEscape(arg.name.toUpperCase())}${arg.multiple ? '...' : ''}\\fR`, roffEscape(arg.description ?? ''))
  }
  const flags = Object.values(command.flags ?? {}).filter(f => !f.hidden)
  if (flags.length > 0) {
    lines.push('.SH OPTIONS')
    for (const flag of flags) {
      const text = [flag.summary ?? '', flag.description ?? ''].filter(t => t !== '').join(' ')
      const defaults = flag.default !== undefined && flag.type === 'option' ? ` (default: ${String(flag.default)})` : ''
      lines.push('.TP', flagHeading(flag), roffEscape(`${text}${defaults}`))
    }
  }
  const examples = command.examples ?? []
  if (examples.length > 0) {
    lines.push('.SH EXAMPLES')
    for (const example of examples) {
      const {description, command: text} = typeof example === 'string' ? {description: undefined, command: example} : example
      if (description) lines.push('.PP', roffEscape(template(description, bin, command.id)))
      lines.push('.PP', '.RS 4', '.nf', roffEscape(`$ ${template(text, bin, command.id)}`), '.fi', '.RE')
    }
  }
  lines.push('.SH SEE ALSO', seeAlso([bin, ...all.filter(c => c.id !== command.id).map(c => `${bin}-${c.id}`)], command))
  return {file: `${name}.1`, text: `${lines.join('\n')}\n`}
}

function defaultUsage(command: CommandManifest, bin: string): string {
  const args = Object.values(command.args ?? {}).map(a => `${a.required ? '' : '['}${a.name.toUpperCase()}${a.multiple ? '...' : ''}${a.required ? '' : ']'}`)
  return [bin, command.id, '[OPTIONS]', ...args].join(' ')
}

/** Our pages, and Postfix's that the command stands next to. */
function seeAlso(ours: string[], command?: CommandManifest): string {
  const postfix = command === undefined ? ['postmap(1)', 'postconf(5)', 'proxymap(8)', 'master(5)']
    : command.id === 'serve' || command.id === 'install-master' ? ['proxymap(8)', 'master(5)', 'postconf(5)'] : ['postmap(1)', 'postconf(5)', 'proxymap(8)']
  return [...ours.map(page => `\\fB${roffEscape(page)}\\fR(1)`), ...postfix.map(page => page.replace(/^([^(]+)/, (m: string) => `\\fB${roffEscape(m)}\\fR`))].join(',\n')
}

export function mainPage(commands: CommandManifest[], options: ManualOptions): ManualPage {
  const {bin} = options
  const lines = [...header(bin, options), '.SH NAME', `${roffEscape(bin)} \\- ${roffEscape(options.description)}`]
  lines.push('.SH SYNOPSIS', `.B ${roffEscape(bin)}`, '\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]', '.br', `.B ${roffEscape(bin)}`, '\\fICOMMAND\\fR \\fB\\-\\-help\\fR')
  lines.push('.SH COMMANDS')
  for (const command of commands) lines.push('.TP', `\\fB${roffEscape(command.id)}\\fR`, `${roffEscape(command.summary ?? '')} See \\fB${roffEscape(`${bin}-${command.id}`)}\\fR(1).`)
  lines.push('.SH EXIT STATUS', '.PP', 'The same for every command and output format:')
  for (const [code, meaning] of EXIT_STATUS) lines.push('.TP', `\\fB${code}\\fR`, roffEscape(meaning))
  lines.push('.SH ENVIRONMENT',
    '.TP', '\\fBMAIL_CONFIG\\fR', roffEscape('The Postfix configuration directory when -c is not given (else /etc/postfix).'),
    '.TP', '\\fBPROXYMAP_POSTFIX_VERSION\\fR', roffEscape('The Postfix release (3.7, 3.10 or 3.11) whose rules and dialect to follow, when --postfix-version is not given.'),
    '.TP', '\\fBNO_COLOR\\fR', roffEscape('Set (non-empty): no colours, as --no-color.'))
  lines.push('.SH FILES', '.TP', `\\fI${roffEscape('$config_directory/main.cf')}\\fR`, roffEscape('proxy_read_maps, proxy_write_maps, mail_owner, queue_directory and the tables\' parameters.'),
    '.TP', `\\fI${roffEscape('$queue_directory/private/proxymap')}\\fR, \\fI${roffEscape('$queue_directory/private/proxywrite')}\\fR`, roffEscape('The service sockets (serve listens there; the proxy: tables of the other commands connect there).'))
  lines.push('.SH SEE ALSO', seeAlso(commands.map(c => `${bin}-${c.id}`)))
  return {file: `${bin}.1`, text: `${lines.join('\n')}\n`}
}

/** README "Exit codes", for proxymap(1). */
const EXIT_STATUS: [number, string][] = [
  [EXIT.OK, 'found (at least one key) / done'],
  [EXIT.NOT_FOUND, 'not found'],
  [EXIT.USAGE, 'usage or configuration error (also an unknown command or table type)'],
  [EXIT.DENY, 'DENY: the service is not configured for the table'],
  [EXIT.RETRY, 'RETRY: the table or its backend is unavailable'],
  [EXIT.BAD, 'BAD or CONFIG: invalid request, or the table is misconfigured'],
  [EXIT.UNAVAILABLE, 'the service could not be reached (no socket, refused, not a proxymap service)'],
]

/** Every page: proxymap.1 and one per visible command, in command order. */
export function manualPages(commands: CommandManifest[], options: ManualOptions): ManualPage[] {
  const visible = commands.filter(c => !c.hidden).sort((a, b) => a.id.localeCompare(b.id))
  return [mainPage(visible, options), ...visible.map(c => commandPage(c, visible, options))]
}
