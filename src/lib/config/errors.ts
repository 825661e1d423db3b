/** A problem with the Postfix configuration (main.cf missing or malformed, bad $name expansion). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}
