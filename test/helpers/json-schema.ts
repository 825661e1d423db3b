/**
 * Checks documents against docs/json-output.schema.json, the machine-readable half of
 * docs/json-output.md. Only the JSON Schema keywords that file uses are understood
 * ($ref within the file, type, const, enum, oneOf, properties, required,
 * additionalProperties: false, items, minimum); an unknown keyword is an error, so the
 * schema cannot silently grow a rule that nothing checks.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {PROJECT_ROOT} from './postfix.js'

export const JSON_OUTPUT_SCHEMA_PATH = path.join(PROJECT_ROOT, 'docs', 'json-output.schema.json')

type Schema = Record<string, unknown>
interface Root {$defs: Record<string, Schema>}

const KNOWN = new Set(['$schema', '$id', 'title', 'description', '$defs', '$ref', 'type', 'const', 'enum', 'oneOf',
  'properties', 'required', 'additionalProperties', 'items', 'minimum'])

let cached: Root | undefined
function root(): Root {
  cached ??= JSON.parse(fs.readFileSync(JSON_OUTPUT_SCHEMA_PATH, 'utf8')) as Root
  return cached
}

function typeOf(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

function check(schema: Schema, value: unknown, at: string, errors: string[]): void {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`schema keyword ${k} at ${at} is not understood by the checker`)
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.replace(/^#\/\$defs\//, '')
    const target = root().$defs[name]
    if (!target) throw new Error(`unknown $ref ${schema.$ref}`)
    check(target, value, at, errors)
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type as string[] : [schema.type as string]
    const actual = typeOf(value)
    if (!types.includes(actual) && !(actual === 'integer' && types.includes('number'))) {
      errors.push(`${at}: expected ${types.join('|')}, got ${actual} ${JSON.stringify(value)?.slice(0, 80)}`)
      return
    }
  }
  if ('const' in schema && value !== schema.const) errors.push(`${at}: expected ${JSON.stringify(schema.const)}, got ${JSON.stringify(value)}`)
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`)
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) errors.push(`${at}: ${value} < ${schema.minimum}`)
  if (Array.isArray(schema.oneOf)) {
    const attempts = (schema.oneOf as Schema[]).map(s => {
      const e: string[] = []
      check(s, value, at, e)
      return e
    })
    const matching = attempts.filter(e => e.length === 0).length
    if (matching !== 1) errors.push(`${at}: matches ${matching} of the oneOf alternatives, not exactly 1 (${attempts.map(e => e.join('; ')).join(' | ')})`)
  }
  if (typeOf(value) === 'object') {
    const object = value as Record<string, unknown>
    const properties = (schema.properties ?? {}) as Record<string, Schema>
    for (const name of (schema.required ?? []) as string[]) if (!(name in object)) errors.push(`${at}: missing field "${name}"`)
    for (const [name, v] of Object.entries(object)) {
      if (properties[name]) check(properties[name], v, `${at}.${name}`, errors)
      else if (schema.additionalProperties === false) errors.push(`${at}: undocumented field "${name}"`)
    }
  }
  if (typeOf(value) === 'array' && schema.items) (value as unknown[]).forEach((v, i) => check(schema.items as Schema, v, `${at}[${i}]`, errors))
}

/** The problems of `value` against $defs[name] (empty: it matches). */
export function shapeErrors(name: string, value: unknown): string[] {
  const schema = root().$defs[name]
  if (!schema) throw new Error(`docs/json-output.schema.json has no $defs.${name}`)
  const errors: string[] = []
  check(schema, value, name, errors)
  return errors
}
