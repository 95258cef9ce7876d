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
