/**
 * @module The table of contents of the CLI: every subcommand, in help order.
 */
import type { AnyCommandSpec } from "./command.ts";
import { configCommand } from "./config.ts";
import { doctorCommand } from "./doctor.ts";
import { engineSimCommand } from "./engine-sim.ts";
import { enrollCommand } from "./enroll.ts";
import { planCommand } from "./plan.ts";
import { pullCommand } from "./pull.ts";
import { routerCommand } from "./router/router.ts";
import { runCommand } from "./run.ts";
import { tuneMoeCommand } from "./tune-moe.ts";

export const commands: AnyCommandSpec[] = [
  enrollCommand,
  runCommand,
  doctorCommand,
  planCommand,
  pullCommand,
  tuneMoeCommand,
  routerCommand,
  configCommand,
  { ...engineSimCommand, hidden: true },
];
