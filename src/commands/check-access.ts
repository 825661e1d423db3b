import path from 'node:path'
import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import type {ChalkInstance} from 'chalk'
import {BaseCommand, postfixVersionFlag} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {CliError} from '../lib/cli/errors.js'
import {EXIT} from '../lib/cli/exit-codes.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled, colorStatus, makeChalk, renderLineDiff, renderTable} from '../lib/cli/render.js'
import {DelayedSpinner} from '../lib/cli/spinner.js'
import {approvalRulesFor, describePostfixVersion, loadMainConfig, resolveConfigDir} from '../lib/config/index.js'
import {RESTRICTION_CLASSES} from '../lib/access/approval-list.js'
import {explainAccess, tablesInUse, type AccessReport, type TableCheck, type TableRequest} from '../lib/access/explain.js'
import {planListEdit, setMainCfParameter, writeMainCf, type ListEdit} from '../lib/access/main-cf-edit.js'
import {DEFAULT_PROBE_KEY, probeTable, reconcileWithMainCf, type ProbeResult} from '../lib/access/probe.js'
import type {ApprovalParameter} from '../lib/access/approval-list.js'
import fs from 'node:fs'

type CheckedTable = TableCheck & {probe?: ProbeResult}

interface FixResult {
  file: string
  edits: ListEdit[]
  applied: boolean
}

export interface CheckAccessResult extends AccessReport {
  tables: CheckedTable[]
  fix: FixResult | null
  exitCode: number
}

export default class CheckAccess extends BaseCommand {
  static override summary = 'Explain whether proxymap may open a table, why not, and offer the fix.'

  static override description = reflow(`Reads main.cf (and master.cf) of the configuration as Postfix does and says, for each
TABLE (type:name, with or without proxy:), whether the proxymap service (lookups) or, with
--write, the proxywrite service (updates) is allowed to open it, and through which parameter
(e.g. "proxy_read_maps -> $virtual_alias_maps"). For a denied table it names the near misses
(other spacing or case, missing proxy: prefix, another path or type, the other service's
list), defaults lost by overriding proxy_read_maps / proxy_write_maps, a list that refers to
itself, master.cf "-o" settings that proxymap cannot see, and what "postconf -x" shows but a
proxymap process does not. It also checks, as mail_owner, that the table's files can be read
(with --write: written). --all checks every proxy: table that main.cf (or a master.cf -o) uses.
--probe also asks the running service (Postfix's or ours): open + lookup of a probe key.

Rules: those of the configuration's Postfix release, named on the first line (JSON:
postfixVersion): --postfix-version, else $PROXYMAP_POSTFIX_VERSION, else the mail_version of
the postconf in main.cf's command_directory, else 3.7. With 3.11's rules a table may be
approved through a restriction class (smtpd_restriction_classes, lookups only) or a
/file/name element of a list; with older rules, a denied table that 3.11 would approve says
so and how to approve it for the older release.

Fixing: denied tables can be added to the right list, keeping what it approves now (when
main.cf does not set the list, Postfix's default text is written first). On a terminal the
change is shown as a diff of main.cf and confirmed; --yes applies it without asking (for
scripts); otherwise nothing is written. Run "postfix reload" afterwards.

Output (--output, -o): plain, the report as lines (the default in a pipe); table, the same
with a summary table of the verdicts when there are several tables (the default on a
terminal); json (or --json), the report as one JSON document (docs/json-output.md). The
diff of a fix and the confirmation go to stderr.

--json fields: configDir, mainCf, postfixVersion {version, source, mailVersion, postconf},
mailOwner {name, uid, gid}, findings [{code, parameter,
message, hint}], tables [{table, access (read|write), service, parameter, approved, via
[parameter chain], usedBy, problems [{code, message, hint}], files [{path, role, exists,
owner, group, mode, readable, writable, problem}], probe {service, socket, key, open, lookup,
status, meaning, next, error}}], fix {file, edits [{parameter, before, after, added}],
applied} or null, exitCode.

Exit codes: 0 every table approved (and its files usable, and the probe said OK or NOKEY),
2 usage or configuration error, 3 some table is denied (or the probe got DENY),
4 a table's files are not usable by mail_owner or the probe got RETRY, 5 the probe got BAD or
CONFIG, 6 the service could not be reached (--probe). After a fix is applied, the status
describes main.cf as written.`)

  // Run as printed from the checkout, with "npm start" serving examples/postfix in another
  // terminal, except those naming /etc/postfix (test/interop/help-examples.test.ts).
  static override examples = [
    {description: 'Whether the proxymap service may open a table, and through which parameter.',
      command: '<%= config.bin %> check-access -c examples/postfix proxy:texthash:$PWD/examples/postfix/virtual'},
    {description: 'Every proxy: table main.cf uses, and what the running service answers.',
      command: '<%= config.bin %> check-access -c examples/postfix --all --probe'},
    {description: 'A table the proxywrite service may not update: why, and the change to main.cf (shown, not written).',
      command: '<%= config.bin %> check-access -c examples/postfix --write proxy:lmdb:$PWD/examples/postfix/senders; echo "exit $?"'},
    {description: 'By the approval rules of Postfix 3.11, whatever Postfix is installed.',
      command: '<%= config.bin %> check-access -c examples/postfix --postfix-version 3.11 proxy:texthash:$PWD/examples/postfix/virtual'},
    {description: 'The report as JSON.',
      command: '<%= config.bin %> check-access -c examples/postfix --json --all'},
    {description: 'Apply the fix to a real configuration without asking, then make Postfix read it.',
      command: '<%= config.bin %> check-access -c /etc/postfix --yes proxy:lmdb:/etc/postfix/transport && postfix reload'},
  ]

  static override args = {
    table: Args.string({description: 'table(s) to check: type:name or proxy:type:name', required: false, multiple: true}),
  }

  static override flags = {
    write: Flags.boolean({char: 'w', summary: 'Check access for updates (proxywrite, proxy_write_maps) instead of lookups.', default: false}),
    all: Flags.boolean({char: 'a', summary: 'Check every proxy: table that main.cf (or a master.cf -o setting) uses.', default: false}),
    probe: Flags.boolean({summary: 'Also ask the running service: open the table and look up a probe key.', default: false}),
    'probe-key': Flags.string({summary: 'The key --probe looks up.', default: DEFAULT_PROBE_KEY}),
    yes: Flags.boolean({char: 'y', summary: 'Apply the fix (add denied tables to main.cf) without asking.', default: false}),
    output: outputFlag('table on a terminal, else plain'),
    'postfix-version': postfixVersionFlag(),
  }

  async run(): Promise<CheckAccessResult> {
    const {argv, flags} = await this.parse(CheckAccess)
    const tables = argv as string[]
    if (!flags.all && tables.length === 0) throw new CliError('name at least one TABLE, or use --all', EXIT.USAGE, 'example: proxymap check-access proxy:hash:/etc/postfix/virtual')
    const configDir = path.resolve(resolveConfigDir(flags['config-dir']))
    const format = this.outputFormat(flags.output, true)
    const json = format === 'json'
    const out = makeChalk(colorEnabled(flags.color, process.stdout))
    const err = makeChalk(colorEnabled(flags.color, process.stderr))

    const postfixVersion = this.postfixVersion(flags['postfix-version'], this.orUsageError(() => loadMainConfig({configDir})))
    const rules = approvalRulesFor(postfixVersion.version)
    const requests = (): TableRequest[] => [
      ...(flags.all ? this.orUsageError(() => tablesInUse(configDir, rules)) : []),
      ...tables.map(table => ({table, access: (flags.write ? 'write' : 'read') as 'read' | 'write'})),
    ]
    const wanted = requests()
    let report: CheckAccessResult = {...this.orUsageError(() => explainAccess({configDir, postfixVersion}, wanted)), fix: null, exitCode: 0}

    // What the service answered, before it is set against main.cf (which a fix changes).
    const probes = new Map<string, ProbeResult>()
    if (flags.probe) {
      const config = this.orUsageError(() => loadMainConfig({configDir}))
      const spinner = DelayedSpinner.forStderr(flags.color)
      for (const table of report.tables) {
        const probe = await spinner.during(`asking the ${table.access === 'read' ? 'proxymap' : 'proxywrite'} service about proxy:${table.table}`,
          probeTable(config, table.table, table.access, flags['probe-key']))
        probes.set(`${table.access} ${table.table}`, probe)
        table.probe = reconcileWithMainCf(probe, table.approved, `proxy:${table.table}`, table.parameter)
      }
    }
    if (!json) process.stdout.write(renderReport(report, out, flags.all && wanted.length === 0, format === 'table'))

    const fix = await this.offerFix(report, flags.yes, json, err)
    if (fix?.applied) {
      // Report main.cf as it is now; the probe results describe the service before the fix.
      report = {...explainAccess({configDir, postfixVersion}, wanted), fix, exitCode: 0}
      for (const t of report.tables) {
        const probe = probes.get(`${t.access} ${t.table}`)
        if (probe) t.probe = reconcileWithMainCf(probe, t.approved, `proxy:${t.table}`, t.parameter)
      }
      if (!json) {
        for (const t of report.tables.filter(t => fix.edits.some(e => e.added.includes(`proxy:${t.table}`)))) {
          process.stdout.write(`${colorStatus(out, t.approved ? 'approved' : 'denied', t.approved ? 'now approved' : 'still DENIED')}: proxy:${t.table}${t.via ? ` via ${describeVia(t.via)}` : ''}\n`)
        }
      }
      process.stderr.write(`${err.yellow('proxymap: main.cf changed: run "postfix reload" (or restart "proxymap serve") so that the running service reads it')}\n`)
    } else if (fix) {
      report.fix = fix
    }
    report.exitCode = exitCodeOf(report, fix?.applied === true)
    // Not this.exit(): with --json, oclif would print its exit "error" after the report.
    process.exitCode = report.exitCode
    return report
  }

  private orUsageError<T>(fn: () => T): T {
    try {
      return fn()
    } catch (e) {
      throw new CliError((e as Error).message, EXIT.USAGE)
    }
  }

  /** Offers (on a terminal), applies (--yes) or only shows the change that approves the denied tables. */
  private async offerFix(report: AccessReport, yes: boolean, json: boolean, c: ChalkInstance): Promise<FixResult | null> {
    // Listing a table of an unknown type would approve a table that no service can open.
    const denied = report.tables.filter(t => !t.approved && !t.problems.some(p => p.code === 'unknown-type'))
    if (denied.length === 0) return null
    const config = loadMainConfig({configDir: report.configDir})
    const rules = approvalRulesFor(report.postfixVersion.version)
    // A near miss that main.cf uses is another client's table, not a misspelling: it stays.
    const inUse = new Set(tablesInUse(report.configDir, rules).map(use => `proxy:${use.table}`))
    const byParameter = new Map<ApprovalParameter, {names: string[]; wrong: string[]}>()
    for (const t of denied) {
      const plan = byParameter.get(t.parameter) ?? {names: [], wrong: []}
      plan.names.push(`proxy:${t.table}`)
      for (const p of t.problems) if (p.entry !== undefined && !inUse.has(p.entry)) plan.wrong.push(p.entry)
      byParameter.set(t.parameter, plan)
    }
    const edits = [...byParameter].map(([parameter, {names, wrong}]) => planListEdit(parameter, config.raw(parameter), names, rules.defaults, wrong))
    const before = fs.readFileSync(report.mainCf, 'latin1')
    let after = before
    for (const edit of edits) after = setMainCfParameter(after, edit.parameter, edit.after)
    const fix: FixResult = {file: report.mainCf, edits, applied: false}
    const interactive = !yes && !json && process.stdin.isTTY === true && process.stderr.isTTY === true
    if (!json || yes) process.stderr.write(`${renderLineDiff(before, after, c, {from: `${report.mainCf} (now)`, to: `${report.mainCf} (fixed)`})}\n`)
    let apply = yes
    if (interactive) {
      try {
        const {confirm} = await import('@inquirer/prompts')
        apply = await confirm({message: `Write this change to ${report.mainCf}?`, default: false}, {input: process.stdin, output: process.stderr})
      } catch {
        apply = false // Ctrl-C / closed input: write nothing
      }
    } else if (!yes && !json) {
      process.stderr.write('proxymap: nothing written; run again with --yes to apply this change (or on a terminal to be asked)\n')
    }
    if (!apply) return fix
    writeMainCf(report.mainCf, after)
    fix.applied = true
    return fix
  }
}

/**
 * "$virtual_alias_maps -> /etc/postfix/more in proxy_read_maps"; with 3.11's restriction
 * classes "class my_class -> $x in smtpd_restriction_classes".
 */
function describeVia(via: string[]): string {
  if (via.length <= 1) return `${via[0]} (listed there)`
  const steps = via.slice(1).map((name, i) => {
    if (name.startsWith('/')) return `file ${name}`
    return i === 0 && via[0] === RESTRICTION_CLASSES ? `class ${name}` : `$${name}`
  })
  return `${steps.join(' -> ')} in ${via[0]}`
}

function exitCodeOf(report: CheckAccessResult, fixed: boolean): number {
  if (report.tables.some(t => t.problems.some(p => p.code === 'unknown-type'))) return EXIT.USAGE
  if (report.tables.some(t => !t.approved)) return EXIT.DENY
  const probes = fixed ? [] : report.tables.map(t => t.probe?.status).filter(s => s !== undefined)
  if (probes.includes('DENY')) return EXIT.DENY
  if (probes.includes('UNREACHABLE')) return EXIT.UNAVAILABLE
  if (probes.includes('BAD') || probes.includes('CONFIG')) return EXIT.BAD
  if (probes.includes('RETRY') || report.tables.some(t => t.files.some(f => f.problem))) return EXIT.RETRY
  return EXIT.OK
}

function renderReport(report: CheckAccessResult, c: ChalkInstance, emptyAll: boolean, withTable: boolean): string {
  const lines: string[] = [c.dim(`rules: ${describePostfixVersion(report.postfixVersion)}`)]
  for (const f of report.findings) {
    lines.push(`${c.yellow('main.cf:')} ${f.message}`)
    if (f.hint) lines.push(`  ${c.dim('fix:')} ${f.hint}`)
  }
  if (emptyAll) lines.push('main.cf uses no proxy: tables')
  // The per-table lines below say the same: the summary table is for people only.
  if (withTable && report.tables.length > 1) {
    const rows = report.tables.map(t => [
      `proxy:${t.table}`,
      t.access === 'read' ? `lookups (${t.service})` : `updates (${t.service})`,
      colorStatus(c, t.approved ? 'approved' : 'denied'),
      t.via ? describeVia(t.via) : '',
      ...(t.probe ? [colorStatus(c, t.probe.status)] : []),
    ])
    const head = ['table', 'access', 'verdict', 'approved through', ...(report.tables.some(t => t.probe) ? ['probe'] : [])]
    lines.push(renderTable(rows, {head, color: c.level > 0}))
  }
  for (const t of report.tables) {
    const what = t.access === 'read' ? `lookups through ${t.service}` : `updates through ${t.service}`
    if (t.approved) lines.push(`${colorStatus(c, 'approved')}: proxy:${t.table} for ${what}, via ${describeVia(t.via ?? [t.parameter])}`)
    else lines.push(`${colorStatus(c, 'denied', 'DENIED')}: proxy:${t.table} for ${what}`)
    if (t.usedBy?.length) lines.push(`  used by: ${t.usedBy.join(', ')}`)
    for (const p of t.problems) {
      lines.push(`  - ${p.code === 'not-listed' ? '' : `${c.bold(p.code)}: `}${p.message}`)
      if (p.hint) lines.push(`    ${c.dim('next:')} ${p.hint}`)
    }
    for (const f of t.files) {
      if (!f.problem) lines.push(`  file ${f.path}: ${t.access === 'write' ? (f.exists ? 'readable and writable' : 'will be created') : 'readable'} by ${report.mailOwner.name}`)
    }
    if (t.probe) {
      const p = t.probe
      const statuses = p.open === undefined ? colorStatus(c, 'unreachable', 'unreachable') : `open ${colorStatus(c, p.open)}${p.lookup ? `, lookup "${p.key}" ${colorStatus(c, p.lookup)}` : ''}`
      lines.push(`  probe (${p.service}): ${statuses}: ${p.meaning}`)
      if (p.error) lines.push(`    ${p.error}`)
      if ((p.status !== 'OK' && p.status !== 'NOKEY') || p.staleService) lines.push(`    ${c.dim('next:')} ${p.next}`)
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`
}
