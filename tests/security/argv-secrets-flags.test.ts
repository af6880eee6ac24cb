/**
 * Attack: a secret given as a flag (`--join-key xjk_...`,
 * `--vllm-salt-secret ...`) sits in the node's command line, which every
 * local user reads with `ps` or /proc/PID/cmdline for the node's whole
 * life. xim warns once at start, naming the flag and never the value, and
 * offers two forms that keep the secret off argv: the variable, and
 * `--<flag>-file PATH` / `XEROTIER_AGENT_<NAME>_FILE` (read bounded, trimmed,
 * refused when group or others may read it). Real `xim` child processes.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { loadConfig } from "../../src/core/config/load.ts";
import { buildVllmCommand } from "../../src/engine/vllm-args.ts";
import { sandbox } from "../planner/fixtures.ts";
import { runXim } from "./xim-child.ts";

const box = sandbox();
after(() => box.cleanup());
const JOIN_KEY = "xjk_SECRETVALUE0123456789abcdefghijklmnopqrstuvwxyz";
const SALT = "salt-SECRETVALUE-0123456789";
const base = { HOME: box.root, PATH: "/usr/bin:/bin", XEROTIER_AGENT_ENGINE: "sim" };

let n = 0;
function secretFile(content: string, mode: number): string {
  const dir = join(box.root, `s${n++}`);
  mkdirSync(dir, { mode: 0o700 });
  const path = join(dir, "secret");
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

const WAIT = { timeoutMs: 60_000 };

describe("secrets stay off the command line", { timeout: 300_000 }, () => {
  test("--vllm-salt-secret on the command line is warned about, naming the flag and never the value", async () => {
    const r = await runXim(["run", "--dry-run", "--vllm-salt-secret", SALT], { env: base, ...WAIT });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--vllm-salt-secret .*command line/);
    assert.match(r.stderr, /XEROTIER_AGENT_VLLM_SALT_SECRET/);
    assert.match(r.stderr, /--vllm-salt-secret-file/);
    assert.equal(r.stderr.match(/--vllm-salt-secret /g)?.length, 1, "warned once");
    assert.ok(!r.stderr.includes(SALT) && !r.stdout.includes(SALT), "the value is never printed");
  });

  test("xim enroll --join-key warns once before it enrolls, without the key", async () => {
    const r = await runXim(
      [
        "enroll",
        "--join-key",
        JOIN_KEY,
        "--router",
        "http://127.0.0.1:9",
        "--config-dir",
        join(box.root, "cfg"),
      ],
      { env: base, ...WAIT },
    );
    assert.notEqual(r.code, 0, "no router listens there");
    assert.match(r.stderr, /--join-key .*command line/);
    assert.match(r.stderr, /--join-key-file/);
    assert.ok(!r.stderr.includes(JOIN_KEY.slice(4)) && !r.stdout.includes(JOIN_KEY.slice(4)));
  });

  test("--vllm-salt-secret-file with mode 0600 is read, trimmed, and not warned about", async () => {
    const file = secretFile(`${SALT}\n`, 0o600);
    const r = await runXim(["config", "--json", "--vllm-salt-secret-file", file], { env: base, ...WAIT });
    assert.equal(r.code, 0, r.stderr);
    const setting = JSON.parse(r.stdout).settings.find((s: { key: string }) => s.key === "vllmSaltSecret");
    assert.equal(setting.source, `file ${file}`);
    assert.doesNotMatch(r.stderr, /command line/);
    const loaded = loadConfig({ env: { XEROTIER_AGENT_VLLM_SALT_SECRET_FILE: file }, cwd: box.root });
    assert.equal(loaded.config.vllmSaltSecret.reveal(), SALT);
    const viaFlag = loadConfig({
      env: {},
      fileFlags: { joinKey: secretFile(` ${JOIN_KEY} \n`, 0o400) },
      cwd: box.root,
    });
    assert.equal(viaFlag.config.joinKey?.reveal(), JOIN_KEY);
  });

  test("a secret file that group or others may read is refused with the chmod that fixes it", async () => {
    const file = secretFile(JOIN_KEY, 0o644);
    const r = await runXim(["config", "--join-key-file", file], { env: base, ...WAIT });
    assert.equal(r.code, 78, r.stderr);
    assert.ok(r.stderr.includes(file));
    assert.match(r.stderr, /readable by group or others/);
    assert.ok(r.stderr.includes(`chmod 600 ${file}`));
    assert.ok(!r.stderr.includes(JOIN_KEY.slice(4)));
    const viaEnv = await runXim(["config"], {
      env: { ...base, XEROTIER_AGENT_JOIN_KEY_FILE: file },
      ...WAIT,
    });
    assert.equal(viaEnv.code, 78, viaEnv.stderr);
    assert.match(viaEnv.stderr, /XEROTIER_AGENT_JOIN_KEY_FILE/);
  });

  test("a secret file that is /dev/zero, empty or missing is refused, naming it", async () => {
    const zero = join(box.root, "zero-secret");
    symlinkSync("/dev/zero", zero);
    for (const [file, why] of [
      [zero, /character device/],
      [secretFile("  \n", 0o600), /empty/],
      [join(box.root, "no-such-secret"), /does not exist/],
    ] as const) {
      const r = await runXim(["config", "--vllm-salt-secret-file", file], { env: base, ...WAIT });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(file), r.stderr);
      assert.match(r.stderr, why);
    }
  });

  test("a secret in --vllm-env on the command line (HF_TOKEN=...) is warned about without its value", async () => {
    const r = await runXim(["run", "--dry-run", "--vllm-env", "HF_TOKEN=hf_SECRETVALUE"], {
      env: base,
      ...WAIT,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--vllm-env .*HF_TOKEN.*command line/);
    assert.ok(!r.stderr.includes("SECRETVALUE"));
  });
});

describe("secrets stay off the engine's command line", () => {
  test("a secret flag in XEROTIER_AGENT_VLLM_ARGS (--hf-token) is warned about, without its value", () => {
    const cmd = buildVllmCommand(
      {
        vllmPath: "vllm",
        vllmArgs: ["--hf-token", "hf_SECRETVALUE", "--enforce-eager"],
        vllmEnv: {},
        gpuMemoryUtilization: 0.9,
        maxModelLen: undefined,
        tensorParallelSize: undefined,
        maxNumSeqs: undefined,
      },
      {
        model: "/m",
        servedModelName: "m",
        endpoint: { host: "127.0.0.1", port: 8000 },
        apiKey: "k".repeat(43),
      },
      { HF_TOKEN: "hf_FROMENV", XEROTIER_AGENT_JOIN_KEY: JOIN_KEY },
    );
    const warning = cmd.warnings.find((w) => w.includes("--hf-token"));
    assert.ok(warning, cmd.warnings.join("\n"));
    assert.match(warning, /command line.*XEROTIER_AGENT_VLLM_ENV/);
    assert.ok(!cmd.warnings.some((w) => w.includes("SECRETVALUE")));
    assert.equal(cmd.env.HF_TOKEN, "hf_FROMENV", "HF_TOKEN reaches vLLM through its environment");
    assert.equal(cmd.env.XEROTIER_AGENT_JOIN_KEY, undefined, "the node's own secrets stay in the node");
    assert.ok(!cmd.args.some((a) => a.includes("k".repeat(43))), "the engine key is not on argv");
  });
});
