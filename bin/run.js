#!/usr/bin/env node
// master(8) starts a daemon when a client is already waiting, as Postfix's proxymap answers
// within milliseconds: under master, `serve` goes straight to the daemon, without oclif's
// start-up (its configuration, plugins and command discovery), whose options would not
// apply anyway (master passes Postfix's daemon options).
if (process.argv[2] === 'serve' && process.env.GENERATION !== undefined) {
  const {runUnderMaster, startedByMaster} = await import('../dist/lib/server/master.js')
  if (startedByMaster()) {
    try {
      process.exit(await runUnderMaster(process.argv.slice(3)))
    } catch (err) {
      process.stderr.write(`proxymap: ${err?.message ?? err}\n`)
      process.exit(2) // as serve exits on an error it reports (a usage error)
    }
  }
}

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
