/**
 * @module The router's identity: its CURVE key pair (kept in the state
 * database) and its TLS certificate and key (`tls.crt`, `tls.key` in the
 * state folder, self-signed by `xim router init`, or any certificate given
 * by flags). Join keys pin the SHA-256 of that certificate and of the CURVE
 * public key.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic-file.ts";
import { XimError } from "../core/errors.ts";
import { sha256Hex } from "../core/sha256.ts";
import { type CurveKeyPair, curveKeyFingerprint, generateCurveKeyPair } from "../transport/curve.ts";
import type { RouterStore } from "./store.ts";

export const TLS_CERT_FILE = "tls.crt";
export const TLS_KEY_FILE = "tls.key";

export interface TlsFiles {
  cert?: string;
  key?: string;
}

export interface RouterIdentity {
  curve: CurveKeyPair;
  curvePin: string;
  tls: { cert: string; key: string; certPath: string; keyPath: string };
  tlsPin: string;
  createdAt: string;
}

export interface InitResult {
  created: boolean;
  stateDir: string;
  curvePublicKey: string;
  curvePin: string;
  tlsCertPath: string;
  tlsPin: string;
}

/** SHA-256 (hex) of a PEM certificate's DER bytes: the pin a join key carries. */
export function certificatePin(pem: string): string {
  return sha256Hex(new X509Certificate(pem).raw);
}

/** Create the identity if the state has none; an existing identity is kept. */
export async function initRouter(
  store: RouterStore,
  options: { hosts?: string[] } = {},
): Promise<InitResult> {
  let created = false;
  if (!store.getMeta("curve_public_key")) {
    const pair = generateCurveKeyPair();
    store.setMeta("curve_public_key", pair.publicKey);
    store.setMeta("curve_secret_key", pair.secretKey);
    store.setMeta("created_at", new Date().toISOString());
    created = true;
  }
  const certPath = join(store.dir, TLS_CERT_FILE);
  const keyPath = join(store.dir, TLS_KEY_FILE);
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    const names = [...new Set(["localhost", hostname(), ...(options.hosts ?? [])])];
    const ips = ["127.0.0.1", "::1"];
    const altNames = [
      ...names.filter((n) => !/^[0-9.:]+$/.test(n)).map((value) => ({ type: 2 as const, value })),
      ...[...ips, ...names.filter((n) => /^[0-9.:]+$/.test(n))].map((ip) => ({ type: 7 as const, ip })),
    ];
    const now = new Date();
    // Loaded here, not at the top: the X.509 library is most of the CLI's
    // start-up cost and only `xim router init` needs it.
    const { generate } = await import("selfsigned");
    const pems = await generate([{ name: "commonName", value: `xim-router ${hostname()}` }], {
      keyType: "ec",
      curve: "P-256",
      algorithm: "sha256",
      notBeforeDate: new Date(now.getTime() - 60_000),
      notAfterDate: new Date(now.getTime() + 10 * 365 * 86_400_000),
      extensions: [
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
        { name: "extKeyUsage", serverAuth: true },
        { name: "subjectAltName", altNames },
      ],
    });
    await writeFileAtomic(keyPath, pems.private);
    await writeFileAtomic(certPath, pems.cert, { mode: 0o644 });
    created = true;
  }
  const identity = loadIdentity(store);
  return {
    created,
    stateDir: store.dir,
    curvePublicKey: identity.curve.publicKey,
    curvePin: identity.curvePin,
    tlsCertPath: identity.tls.certPath,
    tlsPin: identity.tlsPin,
  };
}

export function loadIdentity(store: RouterStore, files: TlsFiles = {}): RouterIdentity {
  const publicKey = store.getMeta("curve_public_key");
  const secretKey = store.getMeta("curve_secret_key");
  if (!publicKey || !secretKey) {
    throw new XimError("XIM_ROUTER_NOT_INITIALIZED", `the router state in ${store.dir} has no identity`, {
      hint: `Run 'xim router init --state ${store.dir}' first.`,
    });
  }
  const certPath = files.cert ?? join(store.dir, TLS_CERT_FILE);
  const keyPath = files.key ?? join(store.dir, TLS_KEY_FILE);
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certPath, "utf8");
    key = readFileSync(keyPath, "utf8");
  } catch (err) {
    throw new XimError(
      "XIM_ROUTER_TLS",
      `cannot read the TLS certificate or key (${certPath}, ${keyPath}): ${(err as Error).message}`,
      {
        hint: `Run 'xim router init --state ${store.dir}' to create a self-signed certificate, or pass --tls-cert and --tls-key.`,
        cause: err,
      },
    );
  }
  let tlsPin: string;
  try {
    tlsPin = certificatePin(cert);
  } catch (err) {
    throw new XimError("XIM_ROUTER_TLS", `${certPath} is not a PEM certificate: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return {
    curve: { publicKey, secretKey },
    curvePin: curveKeyFingerprint(publicKey),
    tls: { cert, key, certPath, keyPath },
    tlsPin,
    createdAt: store.getMeta("created_at") ?? "",
  };
}
