/**
 * @module Reading a file whose content comes from outside xim (a model's
 * config.json, a manifest, enrollment state, a fixture a user points at) with
 * a size limit, so a symlink to /dev/zero or a 2 GB file cannot exhaust
 * memory. Only regular files are read: a device, FIFO or socket is refused
 * before a byte is read (opening a FIFO for reading would block forever, so
 * the type is checked with stat first and again on the opened descriptor).
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs";
import { lstat, open, stat } from "node:fs/promises";
import { XimError } from "./errors.ts";

export interface BoundedReadOptions {
  /** What the file is, for the error message: "the model's config.json". */
  what: string;
  /** Refuse a file larger than this many bytes. */
  maxBytes: number;
  /** Refuse a symlink instead of following it (private state: the link could point anywhere). */
  noFollow?: boolean;
}

function describeType(info: {
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
  isDirectory(): boolean;
}): string {
  if (info.isDirectory()) return "a folder";
  if (info.isFIFO()) return "a FIFO";
  if (info.isCharacterDevice()) return "a character device";
  if (info.isBlockDevice()) return "a block device";
  if (info.isSocket()) return "a socket";
  return "not a regular file";
}

function refuseType(path: string, what: string, kind: string): XimError {
  return new XimError("XIM_FILE_NOT_REGULAR", `${what} ${path} is ${kind}; only a regular file is read`, {
    hint: `point it at a regular file (a symlink to a device such as /dev/zero is refused)`,
  });
}

function tooLarge(path: string, what: string, size: number, maxBytes: number): XimError {
  return new XimError(
    "XIM_FILE_TOO_LARGE",
    `${what} ${path} is ${size > maxBytes ? `${size} bytes` : "larger than the limit"}; at most ${maxBytes} bytes are read`,
    { hint: "check that the path names the right file" },
  );
}

/**
 * Read a regular file of at most `maxBytes` bytes. Symlinks are followed (a
 * user's config may be one) but what they point at must be a regular file.
 * Errors are XimErrors naming the file; ENOENT keeps its `code` on `cause`.
 */
export async function readFileBounded(path: string, options: BoundedReadOptions): Promise<Buffer> {
  const { what, maxBytes } = options;
  const before = await (options.noFollow ? lstat(path) : stat(path));
  if (before.isSymbolicLink()) throw refuseType(path, what, "a symbolic link");
  if (!before.isFile()) throw refuseType(path, what, describeType(before));
  if (before.size > maxBytes) throw tooLarge(path, what, before.size, maxBytes);
  // O_NONBLOCK: if the path was swapped for a FIFO between stat and open, the
  // open does not hang; the fstat below then refuses it.
  // O_NOFOLLOW: a symlink swapped in after the lstat fails the open (ELOOP).
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0);
  const handle = await open(path, flags);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw refuseType(path, what, describeType(info));
    let buf = Buffer.alloc(initialSize(info.size, maxBytes));
    let filled = 0;
    for (;;) {
      if (filled === buf.length) {
        if (buf.length > maxBytes) throw tooLarge(path, what, filled, maxBytes);
        buf = grown(buf, maxBytes);
      }
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/**
 * The first buffer: the file's size plus one byte, to notice a file that grew
 * after fstat. Files under /proc and /sys report size 0 (or 4096) whatever
 * they hold, so the buffer grows (grown) until the end or the limit.
 */
function initialSize(statSize: number, maxBytes: number): number {
  return Math.min(maxBytes + 1, Math.max(statSize + 1, 4096));
}

function grown(buf: Buffer, maxBytes: number): Buffer<ArrayBuffer> {
  const next = Buffer.alloc(Math.min(maxBytes + 1, buf.length * 2));
  buf.copy(next);
  return next;
}

/**
 * {@link readFileBounded} for the few readers that must stay synchronous
 * (the configuration loader runs before anything async).
 */
export function readFileBoundedSync(path: string, options: BoundedReadOptions): Buffer {
  const { what, maxBytes } = options;
  const before = statSync(path);
  if (!before.isFile()) throw refuseType(path, what, describeType(before));
  if (before.size > maxBytes) throw tooLarge(path, what, before.size, maxBytes);
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw refuseType(path, what, describeType(info));
    let buf = Buffer.alloc(initialSize(info.size, maxBytes));
    let filled = 0;
    for (;;) {
      if (filled === buf.length) {
        if (buf.length > maxBytes) throw tooLarge(path, what, filled, maxBytes);
        buf = grown(buf, maxBytes);
      }
      const bytesRead = readSync(fd, buf, filled, buf.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled);
  } finally {
    closeSync(fd);
  }
}

/** {@link readFileBoundedSync} as UTF-8 text. */
export function readTextBoundedSync(path: string, options: BoundedReadOptions): string {
  return readFileBoundedSync(path, options).toString("utf8");
}

/** A file under /proc or /sys (or a test's fake tree), with the kernel-file limit. */
export function readKernelFile(path: string): Promise<string> {
  return readTextBounded(path, { what: "the kernel file", maxBytes: FileLimits.kernelFile });
}

/**
 * The first `bytes` bytes of a regular file of any size, as text: the `#!`
 * line of a launcher that may be a large binary. Refuses devices and FIFOs
 * as readFileBounded does.
 */
export async function readTextHead(path: string, bytes: number, what: string): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw refuseType(path, what, describeType(info));
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buf, 0, bytes, 0);
    return buf.toString("utf8", 0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** {@link readFileBounded} as UTF-8 text. */
export async function readTextBounded(path: string, options: BoundedReadOptions): Promise<string> {
  return (await readFileBounded(path, options)).toString("utf8");
}

/** Limits for the kinds of small files xim reads; one place to change them. */
export const FileLimits = {
  /** A model's config.json, tokenizer_config.json, generation_config.json. */
  modelConfig: 4 * 1024 * 1024,
  /** A model manifest (file list with checksums). */
  manifest: 16 * 1024 * 1024,
  /** Enrollment state, .env files, small settings files. */
  smallState: 1024 * 1024,
  /**
   * model.safetensors.index.json / pytorch_model.bin.index.json: one line per
   * tensor; DeepSeek-V3's (~92k tensors) is about 9 MB.
   */
  modelIndex: 64 * 1024 * 1024,
  /** A file under /proc or /sys (cpuinfo of a 1024-CPU machine is about 1.5 MB). */
  kernelFile: 16 * 1024 * 1024,
  /** A fused-MoE tuned config (a few kB per batch size). */
  moeConfig: 4 * 1024 * 1024,
  /** A secret given as a file (--join-key-file ...): a key or URL, never large. */
  secretFile: 64 * 1024,
} as const;
