// Just the parts of the `pg` and `better-sqlite3` APIs that the sql tables use (neither
// package ships its own types, and @types/* are not dependencies of this project).

declare module 'pg' {
  export interface PoolConfig {
    host?: string
    port?: number
    user?: string
    password?: string
    database?: string
    connectionString?: string
    max?: number
    idleTimeoutMillis?: number
    connectionTimeoutMillis?: number
    query_timeout?: number
    statement_timeout?: number
    allowExitOnIdle?: boolean
    types?: {getTypeParser: (oid: number, format?: string) => (value: string) => unknown}
  }
  export interface QueryConfig {
    text: string
    rowMode?: 'array'
    query_timeout?: number
  }
  export interface QueryResult {
    rows: unknown[][]
    command: string
  }
  export interface PoolClient {
    query(config: QueryConfig): Promise<QueryResult>
    release(err?: Error | boolean): void
  }
  export class Pool {
    constructor(config?: PoolConfig)
    query(config: QueryConfig): Promise<QueryResult>
    connect(): Promise<PoolClient>
    end(): Promise<void>
    /** Clients open or connecting. */
    readonly totalCount: number
    /** Requests waiting for a client. */
    readonly waitingCount: number
    on(event: 'error', listener: (err: Error) => void): this
  }
  const pg: {Pool: typeof Pool}
  export default pg
}

declare module 'better-sqlite3' {
  namespace Database {
    interface Statement {
      readonly reader: boolean
      raw(toggle?: boolean): this
      all(...params: unknown[]): unknown[]
    }
    interface Database {
      prepare(source: string): Statement
      close(): this
    }
    interface Options {
      readonly?: boolean
      fileMustExist?: boolean
      timeout?: number
    }
  }
  const Database: {
    new (filename: string, options?: Database.Options): Database.Database
  }
  export default Database
}
