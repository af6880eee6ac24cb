/**
 * LMCache's disk tier without XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: half the
 * free space of its folder's file system, at most 100 GB, so the folder the
 * compose files mount (…/.cache/lmcache) is used, and the plan says the
 * rule; 0 turns it off, a value is kept as given.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parse } from "yaml";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { autoDiskTierGb, lmcacheDiskFree } from "../../src/planner/lmcache.ts";
import { MODELS, sandbox } from "./fixtures.ts";
import { planFor } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());
const GB = 1e9;

describe("LMCache's disk tier", () => {
  const cases: Array<{
    name: string;
    setting?: string;
    freeBytes: number | null;
    diskGb: number | null;
    reason: RegExp;
  }> = [
    {
      name: "plenty of room: capped at 100 GB",
      freeBytes: 800 * GB,
      diskGb: 100,
      reason: /half of the 800 GB free there, at most 100 GB/,
    },
    {
      name: "60 GB free: 30 GB",
      freeBytes: 60 * GB,
      diskGb: 30,
      reason: /disk tier 30 GB in \/data\/lmcache: half of the 60 GB free/,
    },
    {
      name: "under 2 GB free: none",
      freeBytes: 1.5 * GB,
      diskGb: null,
      reason: /no disk tier: only 1 GB free/,
    },
    {
      name: "free space unknown: none, and says so",
      freeBytes: null,
      diskGb: null,
      reason: /free space of \/data\/lmcache is unknown/,
    },
    {
      name: "0: off",
      setting: "0",
      freeBytes: 800 * GB,
      diskGb: null,
      reason: /no disk tier \(XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB=0\)/,
    },
    {
      name: "a value: kept",
      setting: "20",
      freeBytes: 800 * GB,
      diskGb: 20,
      reason: /disk tier 20 GB in \/data\/lmcache \(XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB\)/,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const plan = await planFor(
        box,
        { gpu: "a40x2-pcie", ramGiB: 256 },
        "llama-3-8b-instruct",
        {
          XEROTIER_AGENT_LMCACHE_ENABLED: "1",
          XEROTIER_AGENT_LMCACHE_DIR: "/data/lmcache",
          XEROTIER_AGENT_CONFIG_DIR: join(box.root, "cfg"),
          ...(c.setting ? { XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: c.setting } : {}),
        },
        { lmcacheDiskFreeBytes: c.freeBytes },
      );
      const yaml = parse(plan.files[0].content) as Record<string, unknown>;
      if (c.diskGb === null) {
        assert.equal(yaml.local_disk, undefined);
        assert.equal(yaml.max_local_disk_size, undefined);
      } else {
        assert.equal(yaml.local_disk, "file:///data/lmcache/");
        assert.equal(yaml.max_local_disk_size, c.diskGb);
      }
      const decision = plan.decisions.find((d) => d.setting === "LMCache");
      assert.match(decision?.reason ?? "", c.reason);
    });
  }

  test("the rule: half of the free space in whole GB, at most 100", () => {
    assert.equal(autoDiskTierGb(0), 0);
    assert.equal(autoDiskTierGb(3 * GB), 1);
    assert.equal(autoDiskTierGb(201 * GB), 100);
  });

  test("xim plan measures the folder's file system (its nearest existing parent before it is made)", async () => {
    const dir = join(box.root, "not-yet", "lmcache");
    const free = await lmcacheDiskFree(dir);
    assert.ok(free !== null && free > 0);
    mkdirSync(join(box.root, "home"), { recursive: true });
    const rec = recordingIo(
      {
        HOME: join(box.root, "home"),
        PATH: box.binWith(["nvidia-smi", "lscpu"]),
        XIM_FIXTURE_GPU: "a40x2-pcie",
        XEROTIER_AGENT_LMCACHE_ENABLED: "1",
        XEROTIER_AGENT_LMCACHE_DIR: dir,
      },
      box.root,
    );
    const code = await runCli(["plan", "--json", "--model", join(MODELS, "llama-3-8b-instruct")], rec.io, {
      version: () => "0",
      verboseVersion: async () => "",
      commands,
    });
    assert.equal(code, 0, rec.stderr());
    const plan = JSON.parse(rec.stdout()).plan as { decisions: Array<{ setting: string; reason: string }> };
    const reason = plan.decisions.find((d) => d.setting === "LMCache")?.reason ?? "";
    // The free space may change between the two readings (other processes write to /tmp): the rule is checked, not a number.
    assert.match(
      reason,
      new RegExp(`(disk tier \\d+ GB in ${dir}: half of the \\d+ GB free there|no disk tier: only)`),
    );
  });
});
