/**
 * @module The router's state in one embedded SQLite database
 * (`<state>/router.db`, node:sqlite, WAL so `xim router nodes` can read
 * while `serve` writes): identity, join keys (hashed), enrolled nodes with
 * their last lease, drop counters, and the model assigned to each node
 * (`xim router models assign`) with the latest pull progress it reported. The file is created 0600 inside a
 * 0700 folder; SQLite gives its WAL files the same mode.
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ensurePrivateDir, PRIVATE_FILE_MODE } from "../core/atomic-file.ts";
import { isoTime, isValidTime } from "../core/time-text.ts";
import type { NodeCondition, NodeState as ReportedState } from "../protocol/conditions.ts";

export const DB_FILE = "router.db";

export type NodeState = "registered" | "ready" | "draining" | "expired";

/** The state reason of a lease its node gave back (`lease_release` on a clean stop). */
export const RELEASED_BY_NODE = "released by the node";

export interface JoinKeyRow {
  id: string;
  hash: string;
  project: string;
  usesAllowed: number;
  uses: number;
  expiresAt: number | null;
  labels: Record<string, string>;
  createdAt: number;
  revokedAt: number | null;
}

export interface NodeRow {
  nodeId: string;
  project: string;
  publicKey: string;
  hostname: string;
  agentVersion: string;
  labels: Record<string, string>;
  joinKeyId: string;
  enrolledAt: number;
  revokedAt: number | null;
  epoch: number;
  leaseId: string | null;
  state: NodeState | null;
  stateReason: string | null;
  lastRenewal: number | null;
  leaseMs: number | null;
  models: string[];
  maxConcurrent: number;
  freeSlots: number;
  engine: string;
  /** The hardware summary of the last registration (hostname, cpus, memory, gpus). */
  hardware: Record<string, unknown> | null;
  /** The lifecycle state the node reported last (null: it did not say). */
  reportedState: ReportedState | null;
  /** The conditions the node reported last (validated by the wire schema when they arrived). */
  conditions: NodeCondition[];
}

/** What a node reports about itself, as startLease and updateLease take it. */
export interface LeaseReport {
  state: NodeState;
  models: string[];
  maxConcurrent: number;
  freeSlots: number;
  engine: string;
  reportedState: ReportedState | null;
  conditions: NodeCondition[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS join_keys (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, project TEXT NOT NULL,
  uses_allowed INTEGER NOT NULL, uses INTEGER NOT NULL DEFAULT 0, expires_at INTEGER,
  labels TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS nodes (
  node_id TEXT PRIMARY KEY, project TEXT NOT NULL, public_key TEXT NOT NULL UNIQUE,
  hostname TEXT NOT NULL, agent_version TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
  join_key_id TEXT NOT NULL, enrolled_at INTEGER NOT NULL, revoked_at INTEGER,
  epoch INTEGER NOT NULL DEFAULT 0, lease_id TEXT, state TEXT, state_reason TEXT,
  last_renewal INTEGER, lease_ms INTEGER, models TEXT NOT NULL DEFAULT '[]',
  max_concurrent INTEGER NOT NULL DEFAULT 0, free_slots INTEGER NOT NULL DEFAULT 0,
  engine TEXT NOT NULL DEFAULT 'none', hardware TEXT);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS model_assignments (
  node_id TEXT PRIMARY KEY, name TEXT NOT NULL, assignment_id TEXT NOT NULL,
  assigned_at INTEGER NOT NULL, progress TEXT);
`;

type Row = Record<string, unknown>;

function json<T>(text: unknown, fallback: T): T {
  try {
    return typeof text === "string" ? (JSON.parse(text) as T) : fallback;
  } catch {
    return fallback;
  }
}

function num(x: unknown): number | null {
  return x === null || x === undefined ? null : Number(x);
}

function toJoinKey(r: Row): JoinKeyRow {
  return {
    id: String(r.id),
    hash: String(r.hash),
    project: String(r.project),
    usesAllowed: Number(r.uses_allowed),
    uses: Number(r.uses),
    expiresAt: num(r.expires_at),
    labels: json(r.labels, {}),
    createdAt: Number(r.created_at),
    revokedAt: num(r.revoked_at),
  };
}

function toNode(r: Row): NodeRow {
  return {
    nodeId: String(r.node_id),
    project: String(r.project),
    publicKey: String(r.public_key),
    hostname: String(r.hostname),
    agentVersion: String(r.agent_version),
    labels: json(r.labels, {}),
    joinKeyId: String(r.join_key_id),
    enrolledAt: Number(r.enrolled_at),
    revokedAt: num(r.revoked_at),
    epoch: Number(r.epoch),
    leaseId: r.lease_id === null ? null : String(r.lease_id),
    state: (r.state as NodeState | null) ?? null,
    stateReason: r.state_reason === null ? null : String(r.state_reason),
    lastRenewal: num(r.last_renewal),
    leaseMs: num(r.lease_ms),
    models: json(r.models, []),
    maxConcurrent: Number(r.max_concurrent),
    freeSlots: Number(r.free_slots),
    engine: String(r.engine),
    hardware: json(r.hardware, null),
    reportedState: (r.reported_state as ReportedState | null) ?? null,
    conditions: json(r.conditions, []),
  };
}

/** The latest `model_progress` a node reported for its assignment. */
export interface ModelProgressRecord {
  state: "pulling" | "verifying" | "ready" | "failed";
  bytesDone: number;
  bytesTotal: number;
  message?: string;
  /** Epoch ms when the router received it. */
  at: number;
}

export interface AssignmentRow {
  nodeId: string;
  name: string;
  /** New for every assignment, so a node tells a new assignment of the same model from a repeat. */
  assignmentId: string;
  assignedAt: number;
  progress: ModelProgressRecord | null;
}

function toAssignment(r: Row): AssignmentRow {
  return {
    nodeId: String(r.node_id),
    name: String(r.name),
    assignmentId: String(r.assignment_id),
    assignedAt: Number(r.assigned_at),
    progress: json<ModelProgressRecord | null>(r.progress, null),
  };
}

export type EnrollOutcome =
  | {
      ok: true;
      node: NodeRow;
      key: JoinKeyRow;
      /** The same enrollment again: the node made then, no use spent. */
      retried?: boolean;
    }
  | {
      ok: false;
      code: "unknown_key" | "malformed_key" | "revoked_key" | "used_key" | "expired_key" | "node_key_in_use";
      message: string;
    };

/** What an enrollment records: the join key's hash, the new node and when. */
interface EnrollInput {
  hash: string;
  /** The project written in the key's text; it must be the key's own (it is outside the checksum). */
  project: string;
  nodeId: string;
  publicKey: string;
  hostname: string;
  agentVersion: string;
  now: number;
}

export type JoinKeyCheck =
  | { ok: true; key: JoinKeyRow }
  | {
      ok: false;
      code: "unknown_key" | "malformed_key" | "revoked_key" | "expired_key" | "used_key";
      message: string;
    };

export class RouterStore {
  /** Prepared statements by SQL text: preparing costs more than running on hot paths. */
  readonly #statements = new Map<string, ReturnType<DatabaseSync["prepare"]>>();

  #statement(sql: string): ReturnType<DatabaseSync["prepare"]> {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  readonly db: DatabaseSync;
  readonly dir: string;

  private constructor(dir: string, db: DatabaseSync) {
    this.dir = dir;
    this.db = db;
  }

  static async open(dir: string, options: { readOnly?: boolean } = {}): Promise<RouterStore> {
    await ensurePrivateDir(dir);
    const path = join(dir, DB_FILE);
    // Create the file with 0600 before SQLite does, so it (and its WAL) are private.
    closeSync(openSync(path, "a", PRIVATE_FILE_MODE));
    const db = new DatabaseSync(path, { readOnly: options.readOnly === true, timeout: 5000 });
    if (!options.readOnly) {
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
      db.exec(SCHEMA);
      // Columns added after the first release of the schema.
      const columns = (db.prepare("PRAGMA table_info(nodes)").all() as Row[]).map((c) => String(c.name));
      if (!columns.includes("hardware")) db.exec("ALTER TABLE nodes ADD COLUMN hardware TEXT");
      if (!columns.includes("reported_state")) db.exec("ALTER TABLE nodes ADD COLUMN reported_state TEXT");
      if (!columns.includes("conditions"))
        db.exec("ALTER TABLE nodes ADD COLUMN conditions TEXT NOT NULL DEFAULT '[]'");
    }
    return new RouterStore(dir, db);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  getMeta(key: string): string | null {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as Row | undefined;
    return row ? String(row.value) : null;
  }

  setMeta(key: string, value: string): void {
    this.db
      .prepare(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
      )
      .run(key, value);
  }

  insertJoinKey(k: JoinKeyRow): void {
    this.db
      .prepare(
        "INSERT INTO join_keys (id, hash, project, uses_allowed, uses, expires_at, labels, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(
        k.id,
        k.hash,
        k.project,
        k.usesAllowed,
        k.uses,
        k.expiresAt,
        JSON.stringify(k.labels),
        k.createdAt,
        k.revokedAt,
      );
  }

  listJoinKeys(): JoinKeyRow[] {
    return (this.db.prepare("SELECT * FROM join_keys ORDER BY created_at").all() as Row[]).map(toJoinKey);
  }

  /** Revoke by id (or unique id prefix); returns the revoked key, or null when none matched. */
  revokeJoinKey(idOrPrefix: string, now: number): JoinKeyRow | null {
    const rows = (
      this.db
        .prepare("SELECT * FROM join_keys WHERE id = ? OR id LIKE ?")
        .all(idOrPrefix, `${idOrPrefix}%`) as Row[]
    ).map(toJoinKey);
    const exact = rows.find((r) => r.id === idOrPrefix);
    const key = exact ?? (rows.length === 1 ? rows[0] : null);
    if (!key) return null;
    this.db
      .prepare("UPDATE join_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
      .run(now, key.id);
    return { ...key, revokedAt: key.revokedAt ?? now };
  }

  /**
   * Spend one use of a join key and record the node, atomically: every check
   * runs before the spend, and a refusal rolls back, so a refused enrollment
   * changes nothing.
   */
  enrollNode(input: EnrollInput): EnrollOutcome {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const outcome = this.enrollInTransaction(input);
      this.db.exec(outcome.ok ? "COMMIT" : "ROLLBACK");
      return outcome;
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /**
   * The same enrollment again: this public key was enrolled with this very
   * join key (its answer was lost: a network error, a killed job), the key is
   * still in its lifetime and the node is not revoked. The node made then is
   * returned and no use is spent, so a retried enrollment never burns a key.
   */
  private retriedEnrollment(input: EnrollInput): EnrollOutcome | undefined {
    const keyRow = this.db.prepare("SELECT * FROM join_keys WHERE hash = ?").get(input.hash) as
      | Row
      | undefined;
    if (!keyRow) return undefined;
    const key = toJoinKey(keyRow);
    const nodeRow = this.db.prepare("SELECT node_id FROM nodes WHERE public_key = ?").get(input.publicKey) as
      | Row
      | undefined;
    const node = nodeRow ? this.getNode(String(nodeRow.node_id)) : undefined;
    if (!node || node.joinKeyId !== key.id || node.revokedAt !== null) return undefined;
    if (key.project !== input.project || key.revokedAt !== null) return undefined;
    if (key.expiresAt !== null && (!isValidTime(key.expiresAt) || input.now >= key.expiresAt))
      return undefined;
    return { ok: true, node, key, retried: true };
  }

  /**
   * Whether a join key would enroll a node now: known, its project the one
   * written in its text, not revoked, expired or used up. Reads only; the
   * enrollment runs the same check inside its transaction, and `POST
   * /v1/enroll/check` (doctor) without spending anything.
   */
  checkJoinKey(input: Pick<EnrollInput, "hash" | "project" | "now">): JoinKeyCheck {
    const row = this.db.prepare("SELECT * FROM join_keys WHERE hash = ?").get(input.hash) as Row | undefined;
    if (!row)
      return {
        ok: false,
        code: "unknown_key",
        message:
          "the router does not know this join key (it was never minted here, or the router's state was reset)",
      };
    const key = toJoinKey(row);
    if (key.project !== input.project)
      // The secret matched, so the key is ours; a different project in the text means it was edited.
      return {
        ok: false,
        code: "malformed_key",
        message: `join key project '${input.project}' does not match the key's project`,
      };
    if (key.revokedAt !== null)
      return {
        ok: false,
        code: "revoked_key",
        message: `join key ${key.id} was revoked at ${isoTime(key.revokedAt)}`,
      };
    if (key.expiresAt !== null && !isValidTime(key.expiresAt))
      // Fail closed: an expiry nobody can read is no promise the key is still valid.
      return {
        ok: false,
        code: "expired_key",
        message: `join key ${key.id} has an expiry the router cannot read (${key.expiresAt}); mint a new key`,
      };
    if (key.expiresAt !== null && input.now >= key.expiresAt)
      return {
        ok: false,
        code: "expired_key",
        message: `join key ${key.id} expired at ${isoTime(key.expiresAt)}`,
      };
    if (key.uses >= key.usesAllowed)
      return {
        ok: false,
        code: "used_key",
        message: `join key ${key.id} is used up (${key.uses} of ${key.usesAllowed} enrollments)`,
      };
    return { ok: true, key };
  }

  private enrollInTransaction(input: EnrollInput): EnrollOutcome {
    const retried = this.retriedEnrollment(input);
    if (retried) return retried;
    const checked = this.checkJoinKey(input);
    if (!checked.ok) return checked;
    const key = checked.key;
    const taken = this.db
      .prepare("SELECT node_id, revoked_at FROM nodes WHERE public_key = ?")
      .get(input.publicKey) as Row | undefined;
    // The row of a revoked node stays: its key can never enroll (or register) again.
    if (taken)
      return {
        ok: false,
        code: "node_key_in_use",
        message:
          taken.revoked_at === null
            ? `this CURVE public key is already enrolled as ${String(taken.node_id)}`
            : `this CURVE public key belonged to node ${String(taken.node_id)}, which was revoked; a revoked key never enrolls again`,
      };
    this.db.prepare("UPDATE join_keys SET uses = uses + 1 WHERE id = ?").run(key.id);
    this.db
      .prepare(
        "INSERT INTO nodes (node_id, project, public_key, hostname, agent_version, labels, join_key_id, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(
        input.nodeId,
        key.project,
        input.publicKey,
        input.hostname,
        input.agentVersion,
        JSON.stringify(key.labels),
        key.id,
        input.now,
      );
    const node = this.getNode(input.nodeId);
    if (!node) throw new Error("node vanished inside its own transaction");
    return { ok: true, node, key: { ...key, uses: key.uses + 1 } };
  }

  getNode(nodeId: string): NodeRow | null {
    const row = this.db.prepare("SELECT * FROM nodes WHERE node_id = ?").get(nodeId) as Row | undefined;
    return row ? toNode(row) : null;
  }

  nodeByPublicKey(publicKey: string): NodeRow | null {
    const row = this.db.prepare("SELECT * FROM nodes WHERE public_key = ?").get(publicKey) as Row | undefined;
    return row ? toNode(row) : null;
  }

  /**
   * Revoke a node (`xim router nodes revoke`): the first revocation time is
   * kept. The running router sees it at its next poll (revokedNodeIds).
   */
  revokeNode(nodeId: string, now: number): NodeRow | null {
    this.#statement(
      "UPDATE nodes SET revoked_at = COALESCE(revoked_at, ?), state_reason = 'revoked by the operator' WHERE node_id = ?",
    ).run(now, nodeId);
    return this.getNode(nodeId);
  }

  /** The ids of every revoked node (few: what the running router polls for). */
  revokedNodeIds(): Set<string> {
    const rows = this.#statement("SELECT node_id FROM nodes WHERE revoked_at IS NOT NULL").all() as Row[];
    return new Set(rows.map((r) => String(r.node_id)));
  }

  listNodes(): NodeRow[] {
    return (this.db.prepare("SELECT * FROM nodes ORDER BY enrolled_at").all() as Row[]).map(toNode);
  }

  /** A new lease: bump the epoch (it only grows, across restarts too) and return it. */
  startLease(
    nodeId: string,
    leaseId: string,
    leaseMs: number,
    now: number,
    status: Omit<LeaseReport, "reportedState" | "conditions"> & Partial<LeaseReport>,
    hardware: object | null = null,
  ): number {
    const row = this.db
      .prepare(
        "UPDATE nodes SET epoch = epoch + 1, lease_id = ?, lease_ms = ?, last_renewal = ?, state = ?, state_reason = NULL, models = ?, max_concurrent = ?, free_slots = ?, engine = ?, hardware = ?, reported_state = ?, conditions = ? WHERE node_id = ? RETURNING epoch",
      )
      .get(
        leaseId,
        leaseMs,
        now,
        status.state,
        JSON.stringify(status.models),
        status.maxConcurrent,
        status.freeSlots,
        status.engine,
        hardware === null ? null : JSON.stringify(hardware),
        status.reportedState ?? null,
        JSON.stringify(status.conditions ?? []),
        nodeId,
      ) as Row | undefined;
    if (!row) throw new Error(`unknown node ${nodeId}`);
    return Number(row.epoch);
  }

  updateLease(
    nodeId: string,
    fields: Partial<LeaseReport> & { lastRenewal?: number; stateReason?: string | null },
  ): void {
    const sets: string[] = [];
    const values: (string | number | null)[] = [];
    const put = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      values.push(value);
    };
    if (fields.lastRenewal !== undefined) put("last_renewal", fields.lastRenewal);
    if (fields.state !== undefined) put("state", fields.state);
    if (fields.stateReason !== undefined) put("state_reason", fields.stateReason);
    if (fields.models !== undefined) put("models", JSON.stringify(fields.models));
    if (fields.maxConcurrent !== undefined) put("max_concurrent", fields.maxConcurrent);
    if (fields.freeSlots !== undefined) put("free_slots", fields.freeSlots);
    if (fields.engine !== undefined) put("engine", fields.engine);
    if (fields.reportedState !== undefined) put("reported_state", fields.reportedState);
    if (fields.conditions !== undefined) put("conditions", JSON.stringify(fields.conditions));
    if (sets.length === 0) return;
    this.#statement(`UPDATE nodes SET ${sets.join(", ")} WHERE node_id = ?`).run(...values, nodeId);
  }

  /** Assign `name` to a node, replacing its previous assignment (and that one's progress). */
  assignModel(nodeId: string, name: string, assignmentId: string, now: number): AssignmentRow {
    this.#statement(
      "INSERT INTO model_assignments (node_id, name, assignment_id, assigned_at, progress) VALUES (?, ?, ?, ?, NULL) ON CONFLICT(node_id) DO UPDATE SET name = excluded.name, assignment_id = excluded.assignment_id, assigned_at = excluded.assigned_at, progress = NULL",
    ).run(nodeId, name, assignmentId, now);
    return { nodeId, name, assignmentId, assignedAt: now, progress: null };
  }

  /** Forget a node's assignment; false when it had none. */
  unassignModel(nodeId: string): boolean {
    const r = this.#statement("DELETE FROM model_assignments WHERE node_id = ?").run(nodeId);
    return Number(r.changes) > 0;
  }

  getAssignment(nodeId: string): AssignmentRow | null {
    const row = this.#statement("SELECT * FROM model_assignments WHERE node_id = ?").get(nodeId) as
      | Row
      | undefined;
    return row ? toAssignment(row) : null;
  }

  listAssignments(): AssignmentRow[] {
    return (this.#statement("SELECT * FROM model_assignments ORDER BY node_id").all() as Row[]).map(
      toAssignment,
    );
  }

  /** Record progress for an assignment; ignored (false) when the node's assignment has changed since. */
  recordModelProgress(nodeId: string, assignmentId: string, progress: ModelProgressRecord): boolean {
    const r = this.#statement(
      "UPDATE model_assignments SET progress = ? WHERE node_id = ? AND assignment_id = ?",
    ).run(JSON.stringify(progress), nodeId, assignmentId);
    return Number(r.changes) > 0;
  }

  addCounters(deltas: Record<string, number>): void {
    const stmt = this.db.prepare(
      "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    );
    for (const [name, delta] of Object.entries(deltas)) if (delta) stmt.run(name, delta);
  }

  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.db.prepare("SELECT name, value FROM counters ORDER BY name").all() as Row[])
      out[String(r.name)] = Number(r.value);
    return out;
  }
}
