import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { parseDocument } from "yaml";
import { DIST_BINARY, ROOT } from "../../scripts/build.ts";
import { RELEASE_ARCHES, releaseName } from "../../scripts/release.ts";
import { settingInfos } from "../../src/core/config/load.ts";
import { lackingCommand, skipWithout } from "../helpers/prerequisite.ts";
import {
  argDefaults,
  composeInterpolations,
  DEPLOY,
  dockerInstructions,
  expandArgs,
  filesIn,
  header,
  read,
} from "./deploy-files.ts";

const KNOWN = new Set(settingInfos.map((s) => s.env));
const BINARY_NAMES = new Set([DIST_BINARY, ...RELEASE_ARCHES.map((a) => `dist/${releaseName(a)}`)]);
const INSTALLED = "/usr/local/bin/xim";

function unknownAgentVariables(text: string): string[] {
  return [...new Set(text.match(/XEROTIER_AGENT_[A-Z0-9_]+/g) ?? [])].filter((v) => !KNOWN.has(v));
}

const composeFiles = filesIn("compose", /\.ya?ml$/);
const dockerfiles = filesIn("docker", /^Dockerfile\.[^.]+$/);

describe("compose files", () => {
  test("the four node shapes are there", () => {
    const names = composeFiles.map((f) => basename(f));
    for (const want of [
      "compose.gpu.yaml",
      "compose.multi-gpu.yaml",
      "compose.cpu-zendnn.yaml",
      "compose.lmcache-valkey.yaml",
    ]) {
      assert.ok(names.includes(want), `deploy/compose/${want} is missing`);
    }
  });

  for (const file of composeFiles) {
    const name = basename(file);
    const text = read(file);

    test(`${name} parses as YAML and its xim service persists state under /data/xerotier`, () => {
      const doc = parseDocument(text);
      assert.deepEqual(doc.errors, [], `${name}: ${doc.errors.join("; ")}`);
      const compose = doc.toJS() as {
        services: Record<string, Record<string, unknown>>;
      };
      const xim = compose.services.xim;
      assert.ok(xim, `${name} has no service named xim`);
      assert.equal(xim.user, "5152:5152");
      assert.notEqual(xim.privileged, true, "the xim service itself must not run privileged");
      const volumes = xim.volumes as string[];
      assert.ok(
        volumes.includes("/data/xerotier/config:/var/lib/inference/.config/xerotier"),
        "enrollment state",
      );
      assert.ok(
        volumes.includes("/data/xerotier/models:/var/lib/inference/.cache/xerotier/models"),
        "model cache",
      );
      for (const key of Object.keys(xim.environment as Record<string, unknown>)) {
        assert.match(key, /^XEROTIER_AGENT_/, `${name}: xim's environment has ${key}`);
      }
      const build = xim.build as { context: string; dockerfile: string } | undefined;
      if (build) {
        const context = resolve(dirname(file), build.context);
        assert.ok(
          existsSync(join(context, build.dockerfile)),
          `${name}: build.dockerfile ${build.dockerfile}`,
        );
      }
    });

    test(`${name} names only XEROTIER_AGENT_* variables the configuration schema knows`, () => {
      assert.deepEqual(unknownAgentVariables(text), []);
    });

    test(`${name} documents every variable it reads in its header`, () => {
      const head = header(text);
      const names = new Set(composeInterpolations(text).map((i) => i.name));
      assert.ok(names.size > 0);
      const undocumented = [...names].filter((n) => !new RegExp(`#\\s+${n}\\b`).test(head));
      assert.deepEqual(undocumented, [], `${name}: add these to the ENVIRONMENT VARIABLES header`);
      for (const section of [
        "QUICK START",
        "ENROLLMENT WORKFLOW",
        "ENVIRONMENT VARIABLES",
        "KERNEL SOCKET BUFFER",
      ]) {
        assert.ok(head.includes(section), `${name}: header lacks ${section}`);
      }
      assert.ok(head.includes("sudo chown -R 5152:5152 /data/xerotier"));
    });

    test(`${name}: privileged only for the sysctl raise, with the host alternative explained`, () => {
      const compose = parseDocument(text).toJS() as { services: Record<string, Record<string, unknown>> };
      for (const [svc, def] of Object.entries(compose.services)) {
        if (def.privileged !== true) continue;
        const command = (def.command as string[]).join(" ");
        assert.match(command, /^sysctl -w net\.core\.wmem_max=4194304 net\.core\.rmem_max=4194304$/, svc);
        assert.deepEqual(def.profiles, ["sysctl"], `${svc} must be opt-in`);
      }
      const head = header(text);
      assert.ok(head.includes("sudo sysctl -w net.core.wmem_max=4194304"));
      assert.ok(head.includes("/etc/sysctl.d/99-xerotier.conf"));
    });
  }

  test("interpolation checks catch what Compose refuses", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose syntax, not a template
    const nested = "a: ${A:-x}\nb: $$HOME\nc: ${B:-redis://${C}@h}\n";
    assert.deepEqual(
      composeInterpolations(nested).map((i) => i.name),
      ["A", "B", "C"],
    );
    assert.throws(() => composeInterpolations("a: $(date)\n"), /write \$\$/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose syntax, not a template
    assert.throws(() => composeInterpolations("a: ${A B}\n"), /invalid interpolation/);
  });
});

describe("Dockerfiles", () => {
  test("the CUDA, ROCm and ZenDNN images are there", () => {
    assert.deepEqual(
      dockerfiles.map((f) => basename(f)),
      ["Dockerfile.xim-vllm", "Dockerfile.xim-vllm-rocm", "Dockerfile.xim-vllm-zendnn"],
    );
  });

  for (const file of dockerfiles) {
    const name = basename(file);
    const text = read(file);
    const ins = dockerInstructions(text);
    const args = argDefaults(ins);

    test(`${name}: COPY puts a binary the build makes at ${INSTALLED}, and ENTRYPOINT runs it`, () => {
      const copies = ins.filter((i) => i.keyword === "COPY" && !/--from=/.test(i.args));
      assert.equal(copies.length, 1, `${name}: one COPY from the build context`);
      const parts = copies[0].args.split(/\s+/).filter((p) => !p.startsWith("--"));
      const [source, dest] = parts.map((p) => expandArgs(p, args));
      assert.equal(dest, INSTALLED);
      assert.ok(BINARY_NAMES.has(source), `${name}: copies ${source}, which neither build nor release makes`);
      const ignore = read(`${file}.dockerignore`);
      for (const binary of BINARY_NAMES) {
        assert.ok(
          ignore.split("\n").includes(`!${binary}`),
          `${name}.dockerignore must let ${binary} through`,
        );
      }
      const entry = ins.filter((i) => i.keyword === "ENTRYPOINT").at(-1);
      assert.ok(entry, `${name}: no ENTRYPOINT`);
      assert.deepEqual(JSON.parse(entry.args), [INSTALLED, "run"]);
    });

    test(`${name}: user 5152 with home /var/lib/inference, a /healthz health check, known variables`, () => {
      assert.equal(ins.filter((i) => i.keyword === "USER").at(-1)?.args, "5152:5152");
      assert.ok(
        ins.some(
          (i) => i.keyword === "RUN" && /--uid 5152/.test(i.args) && /\/var\/lib\/inference/.test(i.args),
        ),
      );
      const env = ins.filter((i) => i.keyword === "ENV").map((i) => i.args);
      assert.ok(env.some((e) => /HOME=\/var\/lib\/inference/.test(e)));
      const health = ins.find((i) => i.keyword === "HEALTHCHECK");
      assert.ok(health && /\/healthz/.test(health.args), `${name}: HEALTHCHECK on /healthz`);
      for (const from of ins.filter((i) => i.keyword === "FROM")) {
        assert.doesNotThrow(() => expandArgs(from.args.split(/\s+/)[0], args), `${name}: ${from.args}`);
      }
      assert.deepEqual(unknownAgentVariables(text), []);
    });
  }

  test("the ZenDNN image takes the AVX-512 and ZenDNN/ZenTorch build arguments and enables zentorch", () => {
    const file = join(DEPLOY, "docker", "Dockerfile.xim-vllm-zendnn");
    const ins = dockerInstructions(read(file));
    const args = argDefaults(ins);
    for (const a of [
      "VLLM_CPU_IMAGE",
      "ZENDNN_VERSION",
      "ZENTORCH_VERSION",
      "VLLM_CPU_AVX512BF16",
      "VLLM_CPU_AVX512VNNI",
      "VLLM_CPU_DISABLE_AVX512",
    ]) {
      assert.ok(args.has(a), `ARG ${a}`);
    }
    assert.equal(args.get("VLLM_CPU_IMAGE"), "vllm-cpu:local");
    assert.ok(ins.some((i) => i.keyword === "ENV" && /VLLM_PLUGINS=zentorch/.test(i.args)));
  });
});

describe("systemd unit", () => {
  const unitPath = join(DEPLOY, "systemd", "xim.service");
  const unit = read(unitPath);
  const dir = mkdtempSync(join(tmpdir(), "xim-unit-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("it runs the binary from an env file, restarts with a start limit, and is hardened", () => {
    const lines = new Set(unit.split("\n").map((l) => l.trim()));
    for (const want of [
      `ExecStart=${INSTALLED} run`,
      "EnvironmentFile=/etc/xim/xim.env",
      "Restart=on-failure",
      "StartLimitBurst=5",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "StateDirectory=xim",
      "CacheDirectory=xim",
      "RestartPreventExitStatus=2 78",
    ]) {
      assert.ok(lines.has(want), `xim.service lacks ${want}`);
    }
    assert.ok(!lines.has("User=root"));
  });

  test("the env file template names only settings the schema knows", () => {
    const env = read(join(DEPLOY, "systemd", "xim.env"));
    assert.deepEqual(unknownAgentVariables(env), []);
    assert.match(env, /^XEROTIER_AGENT_JOIN_KEY=$/m);
  });

  test("systemd-analyze verify accepts the unit", (t) => {
    if (skipWithout(t, lackingCommand("systemd-analyze", ".ci/run installs the Debian package systemd")))
      return;
    // verify insists that ExecStart exists; point it at a binary that does.
    const binary = existsSync(join(ROOT, DIST_BINARY)) ? join(ROOT, DIST_BINARY) : process.execPath;
    const copy = join(dir, "xim.service");
    writeFileSync(copy, unit.replaceAll(INSTALLED, binary));
    const r = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `systemd-analyze verify: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim(), "", r.stderr);
  });
});
