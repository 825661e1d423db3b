import * as Args from '@oclif/core/args'
import {Command} from '@oclif/core/command'
import {bashCompletion} from '../lib/cli/completion.js'
import type {CommandManifest} from '../lib/cli/manpage.js'

export default class Completion extends Command {
  static override summary = 'Print a shell completion script (bash).'

  static override description = 'Completes command names, each command\'s flags, the values of --output, --dialect, '
    + '--postfix-version and --service, and directories for -c; anything else completes as file names. '
    + 'The package also ships the same script as completion/proxymap.bash, for /etc/bash_completion.d or '
    + '/usr/share/bash-completion/completions/proxymap.'

  static override examples = [
    {description: 'In this shell.', command: 'source <(<%= config.bin %> completion bash)'},
    {description: 'For every new bash of this user (bash-completion loads it when proxymap is first completed).',
      command: 'mkdir -p ~/.local/share/bash-completion/completions && <%= config.bin %> completion bash > ~/.local/share/bash-completion/completions/<%= config.bin %>'},
  ]

  static override args = {
    shell: Args.string({description: 'the shell', options: ['bash'], default: 'bash'}),
  }

  async run(): Promise<void> {
    await this.parse(Completion)
    // Our commands, as the shipped completion/proxymap.bash has them (built from our manifest, without plugin-help's "help").
    const ours = this.config.commands.filter(c => c.pluginName === this.config.name)
    process.stdout.write(bashCompletion(this.config.bin, ours as unknown as CommandManifest[]))
  }
}
