/**
 * @module Byte counts as text for people: one format for the CLI, the
 * pull progress, disk errors and the router's listings.
 */

/** Bytes as people read them, in SI units (1 KB = 1000 B): "512 B", "1.5 GB", "120 MB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let i = 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i += 1;
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[i]}`;
}
