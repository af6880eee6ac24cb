/**
 * @module Plain-text formatting shared by commands, and the guard on
 * everything they print. Host names, model names, reasons and error
 * messages in that output may come from a peer (a node, a router, an
 * engine), so: table cells pass through safeText (one line, bounded, so a
 * peer's string cannot forge a row or move the cursor), and runCli wraps
 * the Io in terminalSafeIo, which escapes any control character still in a
 * write whoever wrote it, so a printer added later cannot forget. JSON
 * stays exact: JSON.stringify already escapes C0, and the guard writes the
 * rest (DEL, C1, bidi controls) as JSON escapes, which JSON.parse reads
 * back to the same string.
 */
import { safeText } from "../core/terminal-text.ts";
import type { Io } from "./io.ts";

/** Columns padded to their widest cell; the last column is not padded. Cells are made terminal-safe. */
export function formatTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows].map((r) => r.map((cell) => safeText(cell ?? "")));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return `${all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : (cell ?? "").padEnd(widths[i])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

/** An SGR sequence (colour, bold): split out so the ones xim itself writes survive the guard. */
const SGR = /(\u001b\[[0-9;]*m)/;
/** The styles xim's own printers use (doctor's colours): reset, bold, dim, normal, foreground colours. */
const OWN_STYLE = /^\u001b\[(?:(?:0|1|2|22|3[1-7]|39)(?:;(?:0|1|2|22|3[1-7]|39))*)?m$/;

/**
 * Text as it may reach a terminal: newlines and tabs stay, the styles of
 * OWN_STYLE stay when `styles` is on, every other control character
 * becomes its `\u` escape with four hex digits (lossless; inside JSON text it is the same
 * JSON).
 */
export function terminalSafe(text: string, styles = false): string {
  const clean = (part: string) =>
    safeText(part, { keepLines: true, escape: true, maxLength: Number.POSITIVE_INFINITY });
  if (!styles) return clean(text);
  return text
    .split(SGR)
    .map((part, i) => (i % 2 === 1 && OWN_STYLE.test(part) ? part : clean(part)))
    .join("");
}

/**
 * The Io a command gets: the same, with every write to stdout and stderr
 * passed through terminalSafe. Styles pass only where xim itself paints:
 * stdout on a terminal without NO_COLOR (src/cli/doctor.ts useColour).
 */
export function terminalSafeIo(io: Io): Io {
  const styles = io.stdoutIsTty && !io.env.NO_COLOR;
  return {
    ...io,
    stdout: (text) => io.stdout(terminalSafe(text, styles)),
    stderr: (text) => io.stderr(terminalSafe(text)),
  };
}
