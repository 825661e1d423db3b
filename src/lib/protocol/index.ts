export * from './attr.js'
export * from './constants.js'
export * from './messages.js'
