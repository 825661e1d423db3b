// sqlite:/path.cf — SQLite tables (Postfix dict_sqlite.c; sqlite_table(5)), read-only.
//
// `dbpath` names the database; `query` (or the legacy select_field/table/where_field form)
// is expanded with %q-style quoting (single quotes doubled). Only the first column of each
// row is used. Keys that are not UTF-8 are not looked up. Known difference: Postfix prints
// a REAL column with sqlite's "%!.15g" (2.0 is "2.0"); better-sqlite3 hands us a JS number,
// which we print as JavaScript does ("2").

import Database from 'better-sqlite3'
import {OpenOptions, Table, TableError, TableType} from './table.js'
import {openSqlTable, utf8Text} from './sql/sql-table.js'
import type {SqlRow} from './sql/host-pool.js'
import {DEFAULT_SQL_POOL_LIMITS} from './sql/host-pool.js'

const sqliteQuote = (raw: string): string => raw.replaceAll("'", "''")

function cellText(v: unknown): string | null {
  if (v === null || v === undefined) return null
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  return utf8Text.toBinary(String(v))
}

export const sqliteType: TableType = {
  type: 'sqlite',
  open(name: string, options: OpenOptions): Promise<Table> {
    return openSqlTable('sqlite', name, options, {skipNonUtf8Keys: true, lookupFunction: 'dict_sqlite_lookup'}, (parser) => {
      const dbpath = parser.getStr('dbpath', '', 1)
      let db: Database.Database
      try {
        db = new Database(dbpath, {readonly: true, fileMustExist: true})
      } catch (err) {
        throw new TableError('config', `sqlite:${name}: Can't open database: ${(err as Error).message}`)
      }
      return {
        quote: sqliteQuote,
        lookupTimeoutMs: DEFAULT_SQL_POOL_LIMITS.lookupTimeoutMs,
        run: async (sql: string): Promise<readonly SqlRow[]> => {
          let stmt: Database.Statement
          try {
            stmt = db.prepare(utf8Text.fromBinary(sql))
          } catch (err) {
            // Postfix: fatal ("SQL prepare failed"): the query in the .cf file is wrong.
            throw new TableError('config', `dict_sqlite_lookup: ${name}: SQL prepare failed: ${(err as Error).message}`)
          }
          if (!stmt.reader) return []
          let rows: unknown[][]
          try {
            rows = stmt.raw(true).all() as unknown[][]
          } catch (err) {
            const message = `dict_sqlite_lookup: ${name}: SQL step failed for query '${sql}': ${(err as Error).message}`
            options.log.warning(message)
            throw new TableError('retry', message)
          }
          return rows.map((r) => [cellText(r[0])])
        },
        close: async () => { db.close() },
      }
    })
  },
}
