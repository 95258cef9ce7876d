/**
 * The portable statements (lib/driver/portable/) rendered for every dialect without a server:
 * one placeholder per bound value in the dialect's style, a type for each value, no value in the
 * text, and only the dialect's own spelling of "now", limits, returned rows and reserved words.
 * What they do runs against the databases in test/store/ and the conformance suite.
 */
import { expect } from 'chai';
import { expectPostgresParses, expectSqliteRuns } from '../helpers/offline-sql.ts';
import type { Dialect } from '../../lib/driver/store.ts';
import { HOSTILE, portableStatements, sqlFor } from '../helpers/portable.ts';

const DIALECTS: Dialect[] = ['sqlite', 'postgres', 'mysql', 'mssql'];

/** Placeholders in the text, in order (none of the statements has a literal containing one). */
function placeholders(dialect: Dialect, text: string): string[] {
  const re = { sqlite: /\?/g, mysql: /\?/g, postgres: /\$\d+/g, mssql: /@p\d+\b/g }[dialect];
  return text.match(re) ?? [];
}

/** Spellings that belong to one dialect only: seeing one in another's statement is a bug. */
const FOREIGN: Record<Dialect, RegExp[]> = {
  sqlite: [/\bnow\(\)/i, /UTC_TIMESTAMP/, /SYSUTCDATETIME/, /\bINTERVAL\b/i, /\bTOP \(/, /\bOUTPUT\b/, /::/, /\bFOR UPDATE\b/, /UPDLOCK/],
  postgres: [/unixepoch/, /UTC_TIMESTAMP/, /SYSUTCDATETIME/, /\bTOP \(/, /\bOUTPUT\b/, /json_each/, /OPENJSON/, /UPDLOCK/],
  mysql: [/unixepoch/, /\bnow\(\)/i, /SYSUTCDATETIME/, /\bTOP \(/, /\bOUTPUT\b/, /\bRETURNING\b/, /::/, /json_each/, /OPENJSON/, /UPDLOCK/],
  mssql: [/unixepoch/, /\bnow\(\)/i, /UTC_TIMESTAMP/, /\bLIMIT\b/, /\bRETURNING\b/, /::/, /json_each/, /\bINTERVAL\b/i, /\bFOR UPDATE\b/],
};

describe('portable statements, rendered for every dialect', () => {
  for (const dialect of DIALECTS) {
    describe(dialect, () => {
      const all = portableStatements(sqlFor(dialect));

      it('binds every value to its own placeholder, in order, with a type, and never splices one into the text', () => {
        for (const [name, s] of all) {
          const found = placeholders(dialect, s.text);
          if (dialect === 'postgres' || dialect === 'mssql') {
            const numbers = [...new Set(found.map((p) => Number(p.replace(/\D/g, ''))))].sort((a, b) => a - b);
            expect(numbers, name).to.deep.equal(s.values.map((_v, i) => i + 1));
          } else {
            expect(found.length, name).to.equal(s.values.length);
          }
          expect(s.types.length, name).to.equal(s.values.length);
          expect(s.text, name).to.not.include('DROP TABLE');
        }
      });

      it("uses only this dialect's spelling of now, limits, returned rows and delimiters", () => {
        for (const [name, s] of all) for (const re of FOREIGN[dialect]) expect(s.text, `${name} ${re}`).to.not.match(re);
        if (dialect === 'mssql' || dialect === 'mysql') {
          for (const [name, s] of all) expect(s.text, name).to.not.match(/(?<![[`.])\bkey\b(?![\]`])/);
        }
      });

      it('answers the rows it changed where the database can (RETURNING/OUTPUT), its affected-row count where it cannot', () => {
        for (const [name, s] of all) {
          const returns = /\bRETURNING\b|\bOUTPUT\b/.test(s.text) || /^\s*(SELECT|WITH)\b/i.test(s.text);
          expect(s.returnsRows, name).to.equal(returns);
        }
      });
    });
  }

  it("PostgreSQL: every statement parses with PostgreSQL's own parser", () => expectPostgresParses(portableStatements(sqlFor('postgres'))));

  it('SQLite: every statement runs on the real schema with its values (rolled back)', () => expectSqliteRuns(portableStatements(sqlFor('sqlite'))));

  it('catalogues hostile text that would break the statement if it entered it', () => {
    expect(HOSTILE).to.include("'").and.include('?').and.include('$1').and.include('@p1');
  });
});
