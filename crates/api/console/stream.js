// The live stream: one WebSocket to /ws for the whole app (docs/streaming.md).
//
// Authenticates with a first message (browsers cannot set headers; tokens never go in the
// URL), subscribes to the entity types the console shows, and keeps the id of the last
// change it handed out: after a drop it reconnects and subscribes with `since` = that id,
// so the server replays what was missed, once and in order. A 4401 (token expired) refreshes
// the session first.

import { session, refresh, logout } from "./api.js";

const TYPES = ["execution", "inquiry", "rule"];
// Close codes after which reconnecting cannot help.
const FATAL = new Set([4400, 4403]);

export class Stream {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.lastId = null;
    this.socket = null;
    this.stopped = true;
    this.retryMs = 500;
    this.state = "offline";
  }

  /** `fn(change)` for every change; returns the unsubscribe function. */
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** `fn(state)` when the connection state changes: connecting, live, reconnecting, offline. */
  onStatus(fn) {
    this.statusListeners.add(fn);
    fn(this.state);
    return () => this.statusListeners.delete(fn);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
    this.lastId = null;
    this.setState("offline");
  }

  setState(state) {
    this.state = state;
    for (const fn of this.statusListeners) fn(state);
  }

  connect() {
    const s = session();
    if (this.stopped || !s) return;
    this.setState(this.lastId === null ? "connecting" : "reconnecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "auth", token: s.access }));
      const subscribe = { type: "subscribe", entity_types: TYPES };
      if (this.lastId !== null) subscribe.since = this.lastId;
      socket.send(JSON.stringify(subscribe));
    });
    socket.addEventListener("message", (m) => this.receive(m.data));
    socket.addEventListener("close", (e) => this.closed(socket, e.code));
  }

  receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === "subscribed") {
      // From here on nothing is missed: changes up to live_after come as the replay.
      if (this.lastId === null) this.lastId = msg.live_after;
      this.retryMs = 500;
      this.setState("live");
      this.emit({ event: "stream.subscribed", resumed: msg.since !== null && msg.since !== undefined });
      return;
    }
    if (msg.type) return; // pong, error: control messages
    if (this.lastId !== null && msg.id <= this.lastId) return;
    this.lastId = msg.id;
    this.emit(msg);
  }

  emit(change) {
    for (const fn of [...this.listeners]) {
      try {
        fn(change);
      } catch (e) {
        console.error("stream listener failed", e);
      }
    }
  }

  async closed(socket, code) {
    if (socket !== this.socket || this.stopped) return;
    this.socket = null;
    if (FATAL.has(code)) {
      this.setState("offline");
      return;
    }
    this.setState("reconnecting");
    if (code === 4401 && !(await refresh())) {
      logout();
      return;
    }
    setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 10000);
  }
}
