// sqljobs admin: small progressive enhancements (the pages work without them). No inline handlers: CSP script-src 'self'.
document.addEventListener('click', (event) => {
  const button = event.target instanceof Element ? event.target.closest('button[data-confirm]') : null;
  const question = button && button.getAttribute('data-confirm');
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener('change', (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || box.id !== 'select-all') return;
  for (const other of document.querySelectorAll('input[name="ids"]')) other.checked = box.checked;
});
// HTMX swaps nothing for a 4xx/5xx answer (noSwap) or a network failure: say so instead of doing
// nothing. A failed poll (GET) is cleared by the next poll that succeeds; a failed action stays.
function requestFailed(method, text) {
  const banner = document.getElementById('request-error');
  if (!banner) return;
  banner.textContent = text;
  banner.dataset.method = method;
  banner.hidden = false;
}
function requestMethod(event) {
  const ctx = event.detail && event.detail.ctx;
  return (ctx && ctx.request && ctx.request.method) || 'GET';
}
document.addEventListener('htmx:response:error', (event) => {
  const ctx = event.detail.ctx;
  // The admin's error page holds its message in <p class="error">; parsing runs no script, and only its text is shown.
  const page = typeof ctx.text === 'string' ? new DOMParser().parseFromString(ctx.text, 'text/html') : null;
  const message = page && page.querySelector('.error') ? page.querySelector('.error').textContent : '';
  requestFailed(requestMethod(event), `The request failed (${ctx.response.status})${message ? `: ${message}` : ''}. Reload the page to try again.`);
});
document.addEventListener('htmx:error', (event) => requestFailed(requestMethod(event), 'The request failed: no answer from the server. Reload the page to try again.'));
document.addEventListener('htmx:after:request', (event) => {
  const banner = document.getElementById('request-error');
  const ctx = event.detail.ctx;
  if (banner && !banner.hidden && banner.dataset.method === 'GET' && ctx.response && ctx.response.status < 400) banner.hidden = true;
});
// Times come as <time datetime> holding their UTC text: shown in the reader's local time, UTC on hover.
function localTimes(root) {
  for (const el of root.querySelectorAll('time[datetime]:not([data-local])')) {
    const at = new Date(el.getAttribute('datetime'));
    if (Number.isNaN(at.getTime())) continue;
    el.title = el.textContent + ' (UTC)';
    el.textContent = at.toLocaleString(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
    el.dataset.local = '';
  }
}
document.addEventListener('DOMContentLoaded', () => localTimes(document));
document.addEventListener('htmx:after:swap', () => localTimes(document));
