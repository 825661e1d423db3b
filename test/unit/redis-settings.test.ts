// The pure parts of the redis: table's settings: server addresses as `hosts` and
// `sentinels` write them, and which key_format first/next can walk (and undo).
//
// Run: node --import tsx --test test/unit/redis-settings.test.ts

import assert from 'node:assert/strict'
import {test} from 'node:test'
import {keyShape, parseRedisEndpoint, REDIS_DEFAULTS} from '../../src/lib/tables/redis.js'
import {TableError} from '../../src/lib/tables/table.js'

test('server addresses: host, host:port, inet:, [IPv6]:port, unix:', () => {
  const port = REDIS_DEFAULTS.port
  assert.deepEqual(parseRedisEndpoint('localhost', port), {host: 'localhost', port: 6379})
  assert.deepEqual(parseRedisEndpoint('redis1.example.net:6380', port), {host: 'redis1.example.net', port: 6380})
  assert.deepEqual(parseRedisEndpoint('inet:127.0.0.1:7000', port), {host: '127.0.0.1', port: 7000})
  assert.deepEqual(parseRedisEndpoint('[::1]:7001', port), {host: '::1', port: 7001})
  assert.deepEqual(parseRedisEndpoint('[::1]', REDIS_DEFAULTS.sentinelPort), {host: '::1', port: 26379})
  assert.deepEqual(parseRedisEndpoint('unix:/run/redis/redis.sock', port), {path: '/run/redis/redis.sock'})
  for (const bad of ['', 'inet:', '::1', 'host:port', 'a:1:2']) assert.throws(() => parseRedisEndpoint(bad, port), TableError, bad)
})

test('first/next walks key_format PREFIX%sSUFFIX only', () => {
  assert.deepEqual(keyShape('%s'), {prefix: '', suffix: ''})
  assert.deepEqual(keyShape('psc:%s'), {prefix: 'psc:', suffix: ''})
  assert.deepEqual(keyShape('{mx}:%s:v1'), {prefix: '{mx}:', suffix: ':v1'})
  assert.deepEqual(keyShape('100%%:%s'), {prefix: '100%:', suffix: ''})
  for (const other of ['%u', 'x:%d', '%s%s', '%s@%d', 'fixed', '%1:%s', '%%s'])
    assert.equal(keyShape(other), undefined, other)
})
