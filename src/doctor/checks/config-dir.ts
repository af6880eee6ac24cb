/**
 * @module config-dir: the enrollment state folder holds the node's CURVE
 * secret key, so it must be 0700, its files 0600, all owned by the user the
 * agent runs as. A folder that does not exist yet is fine if it can be made.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type Check, fail, ok } from "../check.ts";
import {
  lstatOrUndefined,
  nearestExisting,
  octal,
  shellQuote,
  statOrUndefined,
  writableBy,
} from "../fs-probe.ts";

export const configDir: Check = {
  id: "config-dir",
  group: "permissions",
  title: "Config folder is private (0700, files 0600, owned by the agent's user)",
  async run(ctx) {
    const dir = ctx.config.configDir;
    const q = shellQuote(dir);
    // Not followed: whoever controls a symlink's target controls the node's identity.
    if ((await lstatOrUndefined(dir))?.isSymbolicLink())
      return fail(
        `${dir} is a symbolic link; xim refuses a config folder it does not own directly`,
        `rm ${q} && mkdir -m 700 ${q} (then enroll again), or point XEROTIER_AGENT_CONFIG_DIR at the real folder`,
      );
    const s = await statOrUndefined(dir);
    if (!s) {
      const parent = await nearestExisting(dir);
      if (writableBy(parent.stats, ctx.uid, ctx.gids))
        return ok(`${dir} does not exist yet; \`xim enroll\` creates it (0700)`);
      return fail(
        `${dir} does not exist and ${parent.path} is not writable by uid ${ctx.uid}`,
        `sudo mkdir -p ${q} && sudo chown ${ctx.uid}:${ctx.gid} ${q} && sudo chmod 700 ${q}`,
      );
    }
    if (!s.isDirectory())
      return fail(`${dir} is not a folder`, `Move it away or set XEROTIER_AGENT_CONFIG_DIR to a folder.`);
    const problems: string[] = [];
    const fixes: string[] = [];
    let wrongOwner = s.uid !== ctx.uid;
    if (wrongOwner) problems.push(`${dir} is owned by uid ${s.uid}, the agent runs as uid ${ctx.uid}`);
    if ((s.mode & 0o777) !== 0o700) {
      problems.push(`${dir} has mode ${octal(s.mode)} (want 0700)`);
      fixes.push(`chmod 700 ${q}`);
    }
    const loose: string[] = [];
    let names: string[] = [];
    try {
      names = await readdir(dir);
    } catch (e) {
      problems.push(`cannot list ${dir}: ${(e as Error).message}`);
    }
    for (const n of names) {
      const f = await lstatOrUndefined(join(dir, n));
      if (!f?.isFile()) continue;
      if (f.uid !== ctx.uid) wrongOwner = true;
      if ((f.mode & 0o077) !== 0 || (f.mode & 0o600) !== 0o600) loose.push(`${n} ${octal(f.mode)}`);
    }
    if (loose.length > 0) {
      problems.push(`files not 0600: ${loose.join(", ")}`);
      fixes.push(`chmod 600 ${q}/*`);
    }
    if (wrongOwner) {
      if (!problems.some((p) => p.includes("owned by")))
        problems.push(`files in ${dir} are owned by another user than uid ${ctx.uid}`);
      fixes.unshift(`sudo chown -R ${ctx.uid}:${ctx.gid} ${q}`);
    }
    if (problems.length > 0) return fail(problems.join("; "), fixes.join(" && "));
    return ok(`${dir} is 0700, ${names.length} file(s) 0600, owned by uid ${ctx.uid}`);
  },
};
