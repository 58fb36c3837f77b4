/** A self-signed certificate for tests over TLS, made with the openssl command. */

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** PEM files of one certificate: it is the CA, the server's and the client's. */
export interface Certificate {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/**
 * A certificate for localhost and 127.0.0.1 in `dir`, or undefined when
 * openssl is missing or fails (the tests that need it are then skipped).
 */
export function selfSigned(dir: string): Certificate | undefined {
  const certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  try {
    execFileSync(
      "openssl",
      [
        ...(
          "req -x509 -nodes -days 1 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " +
          "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        ).split(" "),
        ...["-keyout", keyFile, "-out", certFile],
      ],
      { stdio: "ignore" },
    );
  } catch {
    return undefined;
  }
  return { certFile, keyFile, cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
}
