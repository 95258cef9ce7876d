import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Dialect } from './store.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The package's migrations/ folder, found from this file in source and in dist alike. */
function migrationsRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'migrations');
    try {
      readdirSync(candidate);
      return candidate;
    } catch {
      dir = path.dirname(dir);
    }
  }
  throw new Error('sqljobs: cannot find the migrations/ folder of the package');
}

const cache = new Map<string, Migration[]>();

/** Plain SQL files named NNN_name.sql, in version order, with the table prefix filled in. */
export function loadMigrations(dialect: Dialect, prefix: string): Migration[] {
  const key = `${dialect}:${prefix}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const dir = path.join(migrationsRoot(), dialect);
  const files = readdirSync(dir).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const list = files.map((file) => ({
    version: Number(file.slice(0, 3)),
    name: file.slice(4, -4),
    sql: readFileSync(path.join(dir, file), 'utf8').replaceAll('{{prefix}}', prefix),
  }));
  cache.set(key, list);
  return list;
}

export function checkNotNewer(dialect: Dialect, applied: number[], known: Migration[]): void {
  const latest = known.at(-1)?.version ?? 0;
  const newest = Math.max(0, ...applied);
  if (newest > latest) {
    throw new Error(
      `sqljobs: the ${dialect} schema is at version ${newest}, newer than this code knows (${latest}); upgrade sqljobs before running it against this database`,
    );
  }
}

/**
 * Split a migration file into statements at a `;` that ends a line. A `$$`-quoted body (a
 * PostgreSQL function's) stays whole, whatever semicolons its lines end with.
 */
export function splitStatements(sql: string): string[] {
  const statements = [''];
  for (const [i, part] of sql.split(/(\$\$[\s\S]*?\$\$)/).entries()) {
    const pieces = i % 2 ? [part] : part.split(/;\s*(?:\n|$)/);
    statements[statements.length - 1] += pieces[0];
    statements.push(...pieces.slice(1));
  }
  return statements.map((s) => s.replace(/^\s*--.*$/gm, '').trim()).filter(Boolean);
}
