/** The admin's display of a payload or result: a null payload was given as null and says so; none is none. */
import { expect } from 'chai';
import { showValue } from '../../lib/admin/present.ts';

describe('admin: showValue', () => {
  it('shows a null payload as null, no payload as none; a result of null as none (the record says null for no result)', () => {
    expect(showValue(null, false)).to.deep.equal({ kind: 'json', text: 'null' });
    expect(showValue(undefined, false)).to.deep.equal({ kind: 'none', text: '' });
    expect(showValue(null)).to.deep.equal({ kind: 'none', text: '' });
    expect(showValue('abc', false)).to.deep.equal({ kind: 'json', text: '"abc"' });
    expect(showValue(Buffer.from([1, 2]))).to.deep.equal({ kind: 'binary', text: '2 bytes: 01 02' });
  });
});
