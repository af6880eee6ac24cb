/**
 * What an eavesdropper sees of plain ZeroMQ (`--insecure-zmq`): a TCP
 * relay on loopback between a node and the router that passes every byte
 * on and records the message frames the node sends (ZMTP 3: a 64-byte
 * greeting, then frames of [flags][size: 1 or 8 bytes][body]; command
 * frames such as READY and PING are skipped).
 */
import net from "node:net";

export class ZmtpSniffer {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** Message frames sent by the node, in order, byte for byte. */
  readonly frames: Buffer[] = [];
  port = 0;

  private constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => this.#sockets.delete(s));
      }
      let pending: Buffer = Buffer.alloc(0);
      let greeted = false;
      client.on("data", (data: Buffer) => {
        upstream.write(data);
        pending = Buffer.concat([pending, data]);
        if (!greeted) {
          if (pending.length < 64) return;
          pending = pending.subarray(64);
          greeted = true;
        }
        pending = this.#frames(pending);
      });
      upstream.on("data", (data: Buffer) => client.write(data));
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }

  static async start(target: { host: string; port: number }): Promise<ZmtpSniffer> {
    const s = new ZmtpSniffer(target);
    await new Promise<void>((resolve) => s.#server.listen(0, "127.0.0.1", resolve));
    s.port = (s.#server.address() as net.AddressInfo).port;
    return s;
  }

  /** Take the complete frames off the front of `buf`; returns what is left. */
  #frames(buf: Buffer): Buffer {
    let at = 0;
    for (;;) {
      if (buf.length - at < 2) break;
      const flags = buf[at];
      const long = (flags & 0x02) !== 0;
      const head = long ? 9 : 2;
      if (buf.length - at < head) break;
      const size = long ? Number(buf.readBigUInt64BE(at + 1)) : buf[at + 1];
      if (buf.length - at < head + size) break;
      if ((flags & 0x04) === 0) this.frames.push(Buffer.from(buf.subarray(at + head, at + head + size)));
      at += head + size;
    }
    return buf.subarray(at);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
