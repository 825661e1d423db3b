import type {MainConfig} from '../config/index.js'

/**
 * The table a command-line name means: a name without "type:" takes default_database_type,
 * as postmap and postalias do ("postmap -q KEY virtual" reads hash:virtual on Postfix 3.7).
 */
export function tableWithDefaultType(table: string, config: MainConfig): string {
  return table === '' || table.includes(':') ? table : `${config.get('default_database_type')}:${table}`
}
