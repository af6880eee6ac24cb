/**
 * @module Proves the ZeroMQ addon works in this process: the libzmq
 * version, its capabilities, and a real CURVE key pair generation (which
 * fails where libsodium/CURVE is missing). Used by `xim --version --verbose`
 * and doctor.
 */
import * as zmq from "zeromq";

export interface ZmqInfo {
  libzmq: string;
  curve: boolean;
  /** Whether generating a CURVE key pair actually worked. */
  curveKeyPair: boolean;
  error?: string;
}

export function zmqInfo(): ZmqInfo {
  const curve = zmq.capability.curve === true;
  try {
    const pair = zmq.curveKeyPair();
    return {
      libzmq: zmq.version,
      curve,
      curveKeyPair: pair.publicKey.length === 40 && pair.secretKey.length === 40,
    };
  } catch (err) {
    return { libzmq: zmq.version, curve, curveKeyPair: false, error: String(err) };
  }
}
