// Shared by the tests that compare our proxymap with Postfix's on one instance, and by the
// SQL tests that set up the PostgreSQL test database.

import type {PostfixInstance} from './postfix.js'

/** Run `run` against Postfix's proxymap, then (Postfix stopped) against ours. */
export async function theirsThenOurs<T>(pf: PostfixInstance, run: () => Promise<T>): Promise<{theirs: T; ours: T}> {
  await pf.startPostfix()
  const theirs = await run()
  await pf.stopPostfix()
  await pf.startOurs()
  const ours = await run()
  await pf.stopOurs()
  return {theirs, ours}
}

/**
 * psql as user postgres (`psql(db, sql)`), after making sure database `test` exists.
 * `sh(command, args, input)` runs a command and returns its stdout.
 */
export async function psqlWithTestDb(sh: (command: string, args: string[], input?: string) => Promise<string>):
  Promise<(db: string, sql: string) => Promise<string>> {
  const psql = (db: string, sql: string): Promise<string> =>
    sh('runuser', ['-u', 'postgres', '--', 'psql', '-v', 'ON_ERROR_STOP=1', '-qtA', '-d', db], sql)
  if (!(await psql('postgres', "SELECT 1 FROM pg_database WHERE datname = 'test'")).includes('1'))
    await psql('postgres', 'CREATE DATABASE test')
  return psql
}
