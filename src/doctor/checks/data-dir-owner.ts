/**
 * @module data-dir-owner: the Xerotier compose files mount /data/xerotier/{models,
 * config,lmcache} into a container that runs as uid 5152 ("inference"); the
 * host folders must belong to it ("Permission denied" in the Xerotier documentation's
 * troubleshooting: `sudo chown -R 5152:5152 /data/xerotier`).
 */
import { join } from "node:path";
import { type Check, fail, ok, skipped, warn } from "../check.ts";
import { octal, shellQuote, statOrUndefined, writableBy } from "../fs-probe.ts";

export const CONTAINER_UID = 5152;
const SUBDIRS = ["models", "config", "lmcache"];

export const dataDirOwner: Check = {
  id: "data-dir-owner",
  group: "permissions",
  title: `Host data folder belongs to the container's uid ${CONTAINER_UID}`,
  async run(ctx) {
    const root = ctx.dataDir;
    const q = shellQuote(root);
    const top = await statOrUndefined(root);
    if (!top) return skipped(`${root} does not exist (not the Xerotier compose layout)`);
    const wrong: string[] = [];
    const missing: string[] = [];
    for (const p of [root, ...SUBDIRS.map((d) => join(root, d))]) {
      const s = p === root ? top : await statOrUndefined(p);
      if (!s) {
        missing.push(p);
        continue;
      }
      if (s.uid !== CONTAINER_UID || !writableBy(s, CONTAINER_UID, [CONTAINER_UID])) {
        wrong.push(`${p} (uid ${s.uid}, mode ${octal(s.mode)})`);
      }
    }
    if (wrong.length > 0) {
      return fail(
        `not owned by or not writable for uid ${CONTAINER_UID}: ${wrong.join(", ")}`,
        `sudo chown -R ${CONTAINER_UID}:${CONTAINER_UID} ${q} && sudo chmod -R u+rwX ${q}`,
      );
    }
    if (missing.length > 0) {
      return warn(
        `missing ${missing.join(", ")}`,
        `sudo mkdir -p ${missing.map(shellQuote).join(" ")} && sudo chown -R ${CONTAINER_UID}:${CONTAINER_UID} ${q}`,
      );
    }
    return ok(`${root} and ${SUBDIRS.join(", ")} belong to uid ${CONTAINER_UID}`);
  },
};
