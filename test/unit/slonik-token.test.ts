/**
 * Our `$n` statements as slonik query tokens (lib/driver/postgres/slonik.ts), built with slonik's
 * own `sql.unsafe`: each placeholder outside a string literal binds its value; a `$n` inside one
 * (an enqueue on the caller's transaction writes its values as literals) is left as text.
 */
import { expect } from 'chai';
import { sql } from 'slonik';
import { token } from '../../lib/driver/postgres/slonik.ts';

type Token = { sql: string; values: readonly unknown[] };

describe('slonik query tokens from $n statements', () => {
  const unsafe = sql.unsafe.bind(sql) as Parameters<typeof token>[0];

  it('binds each placeholder, repeated ones included, in the order they appear', () => {
    const t = token(unsafe, 'SELECT $2, $1, $2', ['a', 'b']) as unknown as Token;
    expect(t.sql).to.equal('SELECT $slonik_1, $slonik_2, $slonik_3');
    expect(t.values).to.deep.equal(['b', 'a', 'b']);
  });

  it('leaves a $n inside a literal as text: plain, with doubled quotes, and E-strings with escaped quotes', () => {
    const text = `SELECT $1, '$2 costs $10', 'it''s $3', E'\\\\ \\' $4', x FROM t WHERE y = $1`;
    const t = token(unsafe, text, ['v']) as unknown as Token;
    expect(t.sql).to.equal(`SELECT $slonik_1, '$2 costs $10', 'it''s $3', E'\\\\ \\' $4', x FROM t WHERE y = $slonik_2`);
    expect(t.values).to.deep.equal(['v', 'v']);
  });

  it('a statement with no values and $n only in literals is sent as it is', () => {
    const text = `SELECT '{"$1",NULL}'::text[], E'\\\\$2'`;
    const t = token(unsafe, text, []) as unknown as Token;
    expect(t.sql).to.equal(text);
    expect(t.values).to.deep.equal([]);
  });

  it('a literal of megabytes (a large payload) is scanned, not matched by a backtracking regex', () => {
    const payload = `'${"''".repeat(3_000_000)}${'x'.repeat(9_000_000)}', E'${'\\\\'.repeat(2_000_000)}'`;
    const t = token(unsafe, `SELECT $1, ${payload}`, ['v']) as unknown as Token;
    expect(t.sql.length).to.equal(`SELECT $slonik_1, ${payload}`.length);
    expect(t.values).to.deep.equal(['v']);
  });

  it('a placeholder past the values given is an error naming it', () => {
    expect(() => token(unsafe, 'SELECT $1, $2', ['a'])).to.throw(RangeError, 'statement refers to $2 but 1 values were given');
  });
});
