/**
 * The shop's pages for the PostgreSQL examples: the SQLite demo's own views
 * (examples/express-sqlite/views.ts, left unchanged), with the three bits of text that name the
 * stack swapped out: the header tag, the footer, and the hint under the order form.
 *
 * The swaps look for fixed markup (`<span class="tag">`, `<footer>`, `<p class="hint">`); if that
 * markup ever changes, createViews() throws at startup instead of rendering stale wording.
 */
import * as sqlite from '../express-sqlite/views.ts';
import { html, type Html } from '../express-sqlite/views.ts';

export { ACTIVE_STATES, Html, escapeHtml, html, orderIdOf } from '../express-sqlite/views.ts';
export type { CatalogItem, JobDetail, Notice, Order, OrderForm } from '../express-sqlite/views.ts';

export interface StackLabels {
  /** Header tag, e.g. "sqljobs demo · Express + PostgreSQL". */
  tag: string;
  /** Footer line. */
  footer: string;
  /** What the two order buttons do, shown under the form. */
  hint: Html;
}

const TAG = /<span class="tag">[^<]*<\/span>/;
const FOOTER = /<footer>[\s\S]*?<\/footer>/;
const HINT = /<p class="hint">[\s\S]*?<\/p>/;

function swap(page: string, pattern: RegExp, replacement: Html, what: string): string {
  if (!pattern.test(page)) {
    throw new Error(`examples/shared/views.ts: the ${what} markup of examples/express-sqlite/views.ts changed; update ${pattern}`);
  }
  return page.replace(pattern, () => replacement.value); // a function: no "$&" expansion in the text
}

export function createViews(labels: StackLabels) {
  const frame = (page: string) =>
    swap(swap(page, TAG, html`<span class="tag">${labels.tag}</span>`, 'header tag'), FOOTER, html`<footer>${labels.footer}</footer>`, 'footer');

  const views = {
    homePage: (data: Parameters<typeof sqlite.homePage>[0]): string =>
      swap(frame(sqlite.homePage(data)), HINT, html`<p class="hint">${labels.hint}</p>`, 'form hint'),
    orderPage: (...args: Parameters<typeof sqlite.orderPage>): string => frame(sqlite.orderPage(...args)),
    errorPage: (...args: Parameters<typeof sqlite.errorPage>): string => frame(sqlite.errorPage(...args)),
  };

  // Fail at startup, not on the first request, if the markup we swap is gone.
  views.homePage({ catalog: [], orders: [], jobs: [], form: { email: '', sku: '', quantity: '1', flaky: false } });
  views.errorPage(500, 'self-check');
  return views;
}

export type Views = ReturnType<typeof createViews>;
