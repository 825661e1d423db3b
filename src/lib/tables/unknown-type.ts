import {TableError} from './table.js'

/**
 * A table name whose type no map type implements (Postfix: "unsupported dictionary type").
 * A retry error to the table layer, as Postfix's surrogate answers RETRY; the CLI reports
 * it as the configuration error it is, since trying again later cannot help.
 */
export class UnknownTableTypeError extends TableError {
  constructor(readonly typeName: string) {
    super('retry', `unsupported dictionary type: ${typeName}`)
    this.name = 'UnknownTableTypeError'
  }
}
