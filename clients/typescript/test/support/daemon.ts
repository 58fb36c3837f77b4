/** A real tokenpool daemon in a child process, for tests against the real thing. */

import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protobuf from "protobufjs";

// The repository root: this package lives in clients/typescript.
const REPO_ROOT = path.resolve(
  path.dirname(require.resolve("@tokenpool/client/package.json")),
  "..",
  "..",
);

// The daemon `make venv` installs; TOKENPOOL_BIN points elsewhere.
const DAEMON_BIN = process.env.TOKENPOOL_BIN ?? path.join(REPO_ROOT, ".venv", "bin", "tokenpool");

// How long the daemon may take to import, open its ledger and serve.
const START_TIMEOUT_MS = 20_000;

// How long a SIGTERM may take (the config's grace_seconds is 2) before SIGKILL.
const STOP_TIMEOUT_MS = 10_000;

// grpc.health.v1.HealthCheckResponse: only its status field is read.
const HealthCheckResponse = new protobuf.Type("HealthCheckResponse").add(
  new protobuf.Field("status", 1, "int32"),
);
const SERVING = 1;

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A `[[budgets]]` table: one basic pool holding all of capacity_tokens. */
export function basicBudget(name: string, capacityTokens: number): string {
  // A day-long window refills about one token a minute per 1440 of capacity,
  // so figures read back right after a call are exact.
  return [
    "[[budgets]]",
    `name = "${name}"`,
    `capacity_tokens = ${capacityTokens}`,
    "window_seconds = 86400",
    "[budgets.shares]",
    "basic = 100",
    "priority = 0",
    "burst = 0",
    "",
  ].join("\n");
}

/** What a test daemon runs with beyond its budgets. */
export interface DaemonOptions {
  /** TOML keys and tables of [server], e.g. a `[server.tls]` table. */
  server?: string;
  /** More TOML tables, e.g. `[auth]` and `[[auth.tenant_keys]]`. */
  tables?: string;
  /** How the start-up health check connects; plaintext by default. */
  healthCredentials?: grpc.ChannelCredentials;
}

function healthCheck(
  address: string,
  timeoutMs: number,
  credentials: grpc.ChannelCredentials,
): Promise<boolean> {
  const client = new grpc.Client(address, credentials);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (request: Buffer) => request,
      (response: Buffer) => response,
      Buffer.alloc(0),
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        client.close();
        if (error || response === undefined) {
          resolve(false);
          return;
        }
        const answer = HealthCheckResponse.toObject(HealthCheckResponse.decode(response));
        resolve(answer.status === SERVING);
      },
    );
  });
}

/** `tokenpool serve` as a child process, on its own port and ledger. */
export class Daemon {
  readonly address: string;
  private readonly child: ChildProcess;
  // Holds the config, the ledger and the log; removed by stop().
  private readonly dir: string;
  private readonly exited: Promise<void>;
  private spawnError: Error | undefined;
  private readonly killOnExit = (): void => {
    this.child.kill("SIGKILL");
  };

  private constructor(address: string, child: ChildProcess, dir: string) {
    this.address = address;
    this.child = child;
    this.dir = dir;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    // An unhandled "error" (say the binary is not executable) would end the
    // test process; keep it for waitServing to report.
    child.once("error", (error) => {
      this.spawnError = error;
    });
    // Should the test process die first, the daemon must not outlive it.
    process.once("exit", this.killOnExit);
  }

  /** Starts a daemon serving `budgets` (TOML tables) and waits until it serves. */
  static async start(budgets: string, options: DaemonOptions = {}): Promise<Daemon> {
    if (!fs.existsSync(DAEMON_BIN)) {
      throw new Error(
        `${DAEMON_BIN} not found: run \`make venv\` in ${REPO_ROOT}, or set TOKENPOOL_BIN.`,
      );
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tokenpool-ts-"));
    const port = await freePort();
    const config = path.join(dir, "tokenpool.toml");
    fs.writeFileSync(
      config,
      `[server]\naddress = "127.0.0.1:${port}"\ngrace_seconds = 2\n${options.server ?? ""}\n\n` +
        `[ledger]\npath = ${JSON.stringify(path.join(dir, "ledger.db"))}\n\n${budgets}\n` +
        (options.tables ?? ""),
    );

    const log = fs.openSync(path.join(dir, "daemon.log"), "a");
    const child = spawn(DAEMON_BIN, ["serve", "--config", config], {
      stdio: ["ignore", log, log],
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
    });
    fs.closeSync(log);
    const daemon = new Daemon(`127.0.0.1:${port}`, child, dir);
    await daemon.waitServing(options.healthCredentials ?? grpc.credentials.createInsecure());
    return daemon;
  }

  private async waitServing(credentials: grpc.ChannelCredentials): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.spawnError !== undefined) {
        const reason = this.spawnError.message;
        await this.stop();
        throw new Error(`Cannot start ${DAEMON_BIN}: ${reason}`);
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        const log = this.log();
        await this.stop();
        throw new Error(`The daemon exited at start; its log:\n${log}`);
      }
      if (await healthCheck(this.address, 500, credentials)) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const log = this.log();
    await this.stop();
    throw new Error(`The daemon did not serve within ${START_TIMEOUT_MS} ms; its log:\n${log}`);
  }

  /** What the daemon wrote to stdout and stderr so far. */
  log(): string {
    return fs.readFileSync(path.join(this.dir, "daemon.log"), "utf8");
  }

  /** SIGTERM, then SIGKILL if it has not drained in time; then removes its files. */
  async stop(): Promise<void> {
    process.removeListener("exit", this.killOnExit);
    // A child that never spawned may never emit "exit": nothing to wait for.
    const running = this.child.exitCode === null && this.child.signalCode === null;
    if (running && this.spawnError === undefined) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
