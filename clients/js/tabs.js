// The tabs of one origin and user that share a queue: exactly one of them (the leader) sends
// it, and every tab hears what the others did to it.
//
// Leadership is a Web Lock held for the tab's life: the browser grants it to one tab at a
// time and hands it to a waiting tab when the holder closes, crashes or calls close(). The
// tabs talk over a BroadcastChannel; a message never reaches the tab that posted it.

export class Tabs {
  /**
   * `onLead()` runs once this tab is the leader; `onMessage(message)` for every message
   * another tab posts. `locks` and `BroadcastChannel` default to the browser's.
   */
  constructor(name, { onLead, onMessage, locks = globalThis.navigator?.locks,
                      BroadcastChannel: Channel = globalThis.BroadcastChannel } = {}) {
    this.leading = false;
    this.closed = false;
    this.channel = new Channel(`${name}:tabs`);
    this.channel.onmessage = (event) => { if (!this.closed) onMessage(event.data); };
    this.release = null;
    const held = new Promise((resolve) => { this.release = resolve; });
    locks.request(`${name}:leader`, () => {
      if (this.closed) return undefined; // granted after close(): pass it on at once
      this.leading = true;
      onLead();
      return held;
    }).catch((error) => console.warn("statesync: could not lead this origin's tabs", error));
  }

  /** Web Locks and BroadcastChannel both exist here: tabs can share a queue. */
  static available({ locks = globalThis.navigator?.locks,
                     BroadcastChannel: Channel = globalThis.BroadcastChannel } = {}) {
    return Boolean(locks && Channel);
  }

  post(message) { if (!this.closed) this.channel.postMessage(message); }

  close() {
    this.closed = true;
    this.leading = false;
    this.channel.close();
    this.release();
  }
}
