#!/usr/bin/env node
// The stock Yjs client (npm `yjs` + `y-websocket`'s WebsocketProvider), driven by a Rust
// test over stdin/stdout, one JSON object per line.
//
// Commands (stdin), each with a numeric `id` that its reply repeats:
//   {"id":1,"cmd":"connect","url":"ws://HOST:PORT/yjs","room":"DOC_ID",
//     "cookie":"meridian_session=...","reconnect":true}
//       -> {"id":1,"ok":true,"client_id":N}   (starts connecting; see wait_synced)
//   {"cmd":"wait_synced","timeout_ms":10000} -> {"ok":true} once the provider synced
//   {"cmd":"insert","index":0,"text":"abc"}    (attributes optional; instead of "index",
//       "codepoint":K inserts after the first K characters of the text as it is when the
//       command runs, never inside a surrogate pair, however remote edits moved it)
//   {"cmd":"delete","index":0,"length":2}
//   {"cmd":"format","index":0,"length":5,"attributes":{"bold":true}}
//   {"cmd":"text"} -> {"ok":true,"text":"...","delta":[...]}
//   {"cmd":"set_awareness","field":"user","value":{...}}   (setLocalStateField)
//   {"cmd":"set_cursor","anchor":2,"head":5}   (field "cursor": relative positions as
//       Y.relativePositionToJSON makes them) -> {"ok":true,"cursor":{"anchor":..,"head":..}}
//   {"cmd":"resolve","position":{...}} -> {"ok":true,"index":N|null}   (a relative
//       position, as JSON, resolved in this replica)
//   {"cmd":"awareness"} -> {"ok":true,"client_id":N,"states":{"<client id>":state,...}}
//   {"cmd":"disconnect"} -> {"ok":true}   (provider.destroy(): awareness null, close)
//   {"cmd":"exit"}                          (replies, then the process ends)
// A command that fails answers {"id":..,"ok":false,"error":"..."}.
//
// Events (stdout, no id): {"event":"status","status":"connected"|"disconnected"|...},
// {"event":"synced"}, {"event":"auth","reason":"..."} (the server's permission denied),
// {"event":"close","code":4403,"reason":"..."} (every close of the WebSocket).
//
// With "reconnect": false the provider stops after the first close instead of
// reconnecting with back-off (a refused viewer would otherwise retry forever).
// The process exits when stdin ends. It never prints anything else to stdout.

'use strict'

const readline = require('readline')
const WebSocket = require('ws')
const Y = require('yjs')
const { WebsocketProvider, messageAuth } = require('y-websocket')
const authProtocol = require('y-protocols/auth')

/** @type {Y.Doc|null} */
let doc = null
/** @type {WebsocketProvider|null} */
let provider = null

const emit = (object) => {
  process.stdout.write(JSON.stringify(object) + '\n')
}

const text = () => {
  if (doc === null) throw new Error('not connected: send "connect" first')
  return doc.getText('content')
}

/** The UTF-16 offset after the first `codepoints` characters of `s` (at most all). */
const utf16Offset = (s, codepoints) => Array.from(s).slice(0, codepoints).join('').length

/** A `ws` WebSocket that sends the session cookie with its upgrade request. */
const withCookie = (cookie) => class CookieWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols, cookie ? { headers: { cookie } } : {})
  }
}

const connect = (cmd) => {
  if (provider !== null) throw new Error('already connected')
  doc = new Y.Doc()
  provider = new WebsocketProvider(cmd.url, cmd.room, doc, {
    WebSocketPolyfill: withCookie(cmd.cookie),
    // Through the server only: no BroadcastChannel shortcut between processes' peers.
    disableBc: true
  })
  const p = provider
  // The stock handler only logs a warning; report the server's refusal instead.
  p.messageHandlers[messageAuth] = (_encoder, decoder) => {
    authProtocol.readAuthMessage(decoder, p.doc, (_ydoc, reason) => {
      emit({ event: 'auth', reason })
    })
  }
  p.on('status', ({ status }) => emit({ event: 'status', status }))
  p.on('sync', (synced) => { if (synced) emit({ event: 'synced' }) })
  p.on('connection-close', (event) => {
    emit({ event: 'close', code: event ? event.code : null, reason: event ? String(event.reason || '') : '' })
    if (cmd.reconnect === false) {
      // Cancels the pending reconnect: setupWS checks shouldConnect.
      p.shouldConnect = false
    }
  })
  return { client_id: doc.clientID }
}

const waitSynced = (cmd) => new Promise((resolve, reject) => {
  if (provider === null) return reject(new Error('not connected'))
  if (provider.synced) return resolve({})
  const p = provider
  const timer = setTimeout(() => {
    p.off('sync', onSync)
    reject(new Error(`not synced within ${cmd.timeout_ms || 10000} ms`))
  }, cmd.timeout_ms || 10000)
  const onSync = (synced) => {
    if (synced) {
      clearTimeout(timer)
      p.off('sync', onSync)
      resolve({})
    }
  }
  p.on('sync', onSync)
})

const awarenessStates = () => {
  if (provider === null) throw new Error('not connected')
  const states = {}
  provider.awareness.getStates().forEach((state, clientId) => {
    states[String(clientId)] = state
  })
  return { client_id: doc.clientID, states }
}

const handlers = {
  connect,
  wait_synced: waitSynced,
  insert: (cmd) => {
    const t = text()
    const index = cmd.codepoint === undefined ? cmd.index : utf16Offset(t.toString(), cmd.codepoint)
    t.insert(index, cmd.text, cmd.attributes || undefined)
    return {}
  },
  delete: (cmd) => { text().delete(cmd.index, cmd.length); return {} },
  format: (cmd) => { text().format(cmd.index, cmd.length, cmd.attributes); return {} },
  text: () => ({ text: text().toString(), delta: text().toDelta() }),
  set_awareness: (cmd) => {
    if (provider === null) throw new Error('not connected')
    provider.awareness.setLocalStateField(cmd.field, cmd.value)
    return {}
  },
  set_cursor: (cmd) => {
    if (provider === null) throw new Error('not connected')
    const at = (index) => Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text(), index))
    const cursor = { anchor: at(cmd.anchor), head: at(cmd.head) }
    provider.awareness.setLocalStateField('cursor', cursor)
    return { cursor }
  },
  resolve: (cmd) => {
    const position = Y.createRelativePositionFromJSON(cmd.position)
    const absolute = Y.createAbsolutePositionFromRelativePosition(position, text().doc)
    return { index: absolute === null ? null : absolute.index }
  },
  awareness: awarenessStates,
  disconnect: () => {
    if (provider !== null) {
      provider.destroy()
      provider = null
    }
    return {}
  },
  exit: () => {
    setImmediate(() => process.exit(0))
    return {}
  }
}

// Commands run one at a time, in order, as the test sent them.
let queue = Promise.resolve()
const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (line.trim() === '') return
  queue = queue.then(async () => {
    let cmd
    try {
      cmd = JSON.parse(line)
    } catch (e) {
      emit({ id: null, ok: false, error: `not JSON: ${e.message}` })
      return
    }
    const handler = handlers[cmd.cmd]
    try {
      if (!handler) throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`)
      const result = await handler(cmd)
      emit(Object.assign({ id: cmd.id, ok: true }, result))
    } catch (e) {
      emit({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) })
    }
  })
})
lines.on('close', () => {
  queue.then(() => {
    if (provider !== null) provider.destroy()
    process.exit(0)
  })
})
