/**
 * MySQL/MariaDB migrations are taken up where a cut left them (lib/driver/mysql/migrate.ts): a row
 * change commits with its progress, and a schema statement that may have run unrecorded is run
 * again, its "already exists" taken as done. That holds only for the statement kinds below, whose
 * second run either changes nothing or fails with an error migrate.ts forgives. A new migration
 * using another kind (RENAME, CHANGE, DROP COLUMN, partitions, triggers, a leading comment block,
 * WITH, SET) fails here, before it can leave a database that no migrate() can finish.
 */
import { expect } from 'chai';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';

const RESUMABLE = [
  /^INSERT (IGNORE )?INTO \S+ \(/, // with its progress, in one transaction
  /^UPDATE \S+ SET /,
  /^DELETE FROM \S+ /,
  /^CREATE TABLE \S+ \(/, // again: 1050
  /^CREATE (UNIQUE )?INDEX \S+ ON \S+ \(/, // again: 1061
  /^DROP INDEX \S+ ON \S+$/, // again: 1091
];

/** ALTER TABLE whose every clause adds a column (again: 1060) or redefines one (again: no change). */
function resumableAlter(stmt: string): boolean {
  const m = /^ALTER TABLE \S+ ([\s\S]+)$/.exec(stmt);
  if (!m) return false;
  const clauses = m[1].split(/,\s*(?=[A-Z]+ )/);
  return clauses.every((c) => /^(ADD COLUMN|MODIFY( COLUMN)?) \S+ /.test(c)) && !/\b(RENAME|CHANGE|PARTITION|DROP)\b/.test(m[1]);
}

describe('MySQL migrations use only statements a cut migration can take up again', () => {
  for (const m of loadMigrations('mysql', 'p_')) {
    it(`${String(m.version).padStart(3, '0')}_${m.name}`, () => {
      for (const stmt of splitStatements(m.sql)) {
        const text = stmt.replace(/\s+/g, ' ');
        expect(RESUMABLE.some((re) => re.test(text)) || resumableAlter(text), text.slice(0, 120)).to.equal(true);
      }
    });
  }

  it('the check refuses what cannot be taken up', () => {
    for (const bad of ['ALTER TABLE p_jobs RENAME COLUMN a TO b', 'ALTER TABLE p_jobs ADD COLUMN a INT, DROP COLUMN b', 'RENAME TABLE p_a TO p_b', '/* x */ INSERT INTO p_a (x) VALUES (1)', 'ALTER TABLE p_history REORGANIZE PARTITION p0 INTO (PARTITION p1 VALUES LESS THAN (1))']) {
      expect(RESUMABLE.some((re) => re.test(bad)) || resumableAlter(bad), bad).to.equal(false);
    }
  });
});
