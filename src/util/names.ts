// Tables keyed by names users choose (services, pods): objects without a prototype, so that a
// service named `constructor` (a valid DNS name) is looked up like any other name and never finds
// Object.prototype's members. They serialise to JSON like plain objects; what JSON.parse gives back
// goes through nameTable before anyone looks a name up in it.

/** A null-prototype copy of `from` (a parsed record's table, or entries), or an empty table. */
export function nameTable<V>(from?: Readonly<Record<string, V>> | Iterable<readonly [string, V]>): Record<string, V> {
  const out = Object.create(null) as Record<string, V>;
  if (!from) return out;
  const entries = Symbol.iterator in from ? from as Iterable<readonly [string, V]> : Object.entries(from as Record<string, V>);
  for (const [k, v] of entries) out[k] = v;
  return out;
}

/** Whether a table holds its own entry for `name` (never an inherited member). */
export function hasName(table: Readonly<Record<string, unknown>>, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(table, name);
}
