// Reads a V8 .heapsnapshot (written by the gateway on SIGUSR2, after a full GC) into totals by object kind, and compares two.
import { readFileSync, statSync } from 'node:fs';

export interface HeapGroup {
  count: number;
  bytes: number;
}

export interface HeapSummary {
  file_bytes: number;
  nodes: number;
  /** Sum of every node's self size: the live JavaScript heap after the GC the snapshot forces. */
  self_bytes: number;
  /** By `type:name` for objects, closures, arrays and the like (constructor or function name); by type for the rest (strings, numbers, code). */
  groups: Record<string, HeapGroup>;
}

/** Node types whose `name` says what they are (a constructor, a function); for the others the name is the value itself. */
const NAMED_TYPES = new Set(['object', 'closure', 'native', 'array', 'hidden', 'synthetic']);

/**
 * The file is read whole (a snapshot of a 100 MiB heap is a few hundred MiB) and scanned by hand rather than
 * JSON.parse'd: the parse would need many times the file's size, and only three fields of each node are needed.
 */
export function summarizeHeapSnapshot(file: string): HeapSummary {
  const buf = readFileSync(file);
  const nodesAt = buf.indexOf('"nodes":[');
  if (nodesAt === -1) throw new Error(`${file}: no "nodes" array: not a heap snapshot`);
  const head = buf.toString('utf8', 0, nodesAt).replace(/,\s*$/, '');
  const meta = (JSON.parse(`${head}}`) as { snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } } }).snapshot.meta;
  const fieldCount = meta.node_fields.length;
  const typeField = meta.node_fields.indexOf('type');
  const nameField = meta.node_fields.indexOf('name');
  const sizeField = meta.node_fields.indexOf('self_size');
  const typeNames = meta.node_types[0];
  if (typeField === -1 || nameField === -1 || sizeField === -1) throw new Error(`${file}: unexpected node fields ${meta.node_fields.join(',')}`);

  // Group key: name index * 32 + type for named types, -(type + 1) otherwise.
  const groups = new Map<number, HeapGroup>();
  const values = new Float64Array(fieldCount);
  let field = 0;
  let current = 0;
  let inNumber = false;
  let nodes = 0;
  let selfBytes = 0;
  let pos = nodesAt + '"nodes":['.length;
  for (; pos < buf.length; pos++) {
    const c = buf[pos]!;
    if (c >= 48 && c <= 57) {
      current = current * 10 + (c - 48);
      inNumber = true;
      continue;
    }
    if (inNumber) {
      values[field++] = current;
      current = 0;
      inNumber = false;
      if (field === fieldCount) {
        field = 0;
        nodes++;
        const type = values[typeField]!;
        const size = values[sizeField]!;
        selfBytes += size;
        const key = NAMED_TYPES.has(typeNames[type] ?? '') ? values[nameField]! * 32 + type : -(type + 1);
        const group = groups.get(key);
        if (group) {
          group.count++;
          group.bytes += size;
        } else groups.set(key, { count: 1, bytes: size });
      }
    }
    if (c === 93 /* ] */) break;
  }

  // The names of the named groups, from the strings array at the end of the file.
  const wanted = new Set<number>();
  for (const key of groups.keys()) if (key >= 0) wanted.add(Math.floor(key / 32));
  const names = new Map<number, string>();
  const stringsAt = buf.indexOf('"strings":[', pos);
  if (stringsAt !== -1) {
    let index = 0;
    for (let i = stringsAt + '"strings":['.length; i < buf.length && names.size < wanted.size; i++) {
      const c = buf[i]!;
      if (c === 93) break;
      if (c !== 34 /* " */) continue;
      let j = i + 1;
      while (j < buf.length && buf[j] !== 34) j += buf[j] === 92 /* \ */ ? 2 : 1;
      if (wanted.has(index)) names.set(index, JSON.parse(buf.toString('utf8', i, j + 1)) as string);
      index++;
      i = j;
    }
  }
  const out: Record<string, HeapGroup> = {};
  for (const [key, group] of groups) {
    const label = key >= 0 ? `${typeNames[key % 32]}:${names.get(Math.floor(key / 32)) ?? '?'}` : `${typeNames[-key - 1]}`;
    const existing = out[label];
    if (existing) {
      existing.count += group.count;
      existing.bytes += group.bytes;
    } else out[label] = { ...group };
  }
  return { file_bytes: statSync(file).size, nodes, self_bytes: selfBytes, groups: out };
}

export interface HeapGrowth {
  label: string;
  count_delta: number;
  bytes_delta: number;
  bytes_after: number;
}

/** The groups that grew most in bytes from `before` to `after`. */
export function heapGrowth(before: HeapSummary, after: HeapSummary, top = 10): HeapGrowth[] {
  const labels = new Set([...Object.keys(before.groups), ...Object.keys(after.groups)]);
  const rows: HeapGrowth[] = [];
  for (const label of labels) {
    const a = before.groups[label] ?? { count: 0, bytes: 0 };
    const b = after.groups[label] ?? { count: 0, bytes: 0 };
    rows.push({ label, count_delta: b.count - a.count, bytes_delta: b.bytes - a.bytes, bytes_after: b.bytes });
  }
  return rows.sort((x, y) => y.bytes_delta - x.bytes_delta).slice(0, top);
}
