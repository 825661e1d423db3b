export * from './connection.js'
export * from './service-client.js'
