/**
 * @module The shared test behind the folder checks: can the agent's user
 * create files in this folder (or create the folder under its nearest
 * existing parent)? Answers with the evidence and the chown/chmod fix.
 */
import { type CheckOutcome, fail, ok } from "./check.ts";
import type { DoctorContext } from "./context.ts";
import { nearestExisting, octal, shellQuote, writableBy } from "./fs-probe.ts";

export async function writableDir(ctx: DoctorContext, dir: string, setting: string): Promise<CheckOutcome> {
  const found = await nearestExisting(dir);
  const q = shellQuote(dir);
  if (!found.stats.isDirectory()) {
    return fail(`${found.path} is not a folder`, `Remove it or point ${setting} at a folder.`);
  }
  const desc = `owner uid ${found.stats.uid}, mode ${octal(found.stats.mode)}`;
  if (writableBy(found.stats, ctx.uid, ctx.gids)) {
    return ok(
      found.path === dir
        ? `${dir} is writable by uid ${ctx.uid} (${desc})`
        : `${dir} does not exist yet; ${found.path} is writable by uid ${ctx.uid}, so it can be created`,
    );
  }
  if (found.path === dir) {
    return fail(
      `${dir} is not writable by uid ${ctx.uid} (${desc})`,
      `sudo chown -R ${ctx.uid}:${ctx.gid} ${q} && sudo chmod u+rwx ${q}`,
    );
  }
  return fail(
    `${dir} does not exist and ${found.path} (${desc}) is not writable by uid ${ctx.uid}`,
    `sudo mkdir -p ${q} && sudo chown -R ${ctx.uid}:${ctx.gid} ${q}`,
  );
}
