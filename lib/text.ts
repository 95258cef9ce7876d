/**
 * Free text the library stores on a job's behalf (error messages and stacks, log lines, progress
 * messages) must be text every database accepts: PostgreSQL refuses NUL, MariaDB refuses half of
 * a surrogate pair, and a cut in the middle of a pair makes one. These helpers make such text
 * storable instead of letting one bad string poison a batch of writes.
 */

/** A lone surrogate (either half of a pair without the other) or NUL. */
const UNSTORABLE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g;
const SUSPECT = /[\u0000\uD800-\uDFFF]/;

/** Replace lone surrogates and NUL with U+FFFD; well-formed text (the usual case) is returned as is. */
export function storable(text: string): string {
  return SUSPECT.test(text) ? text.replace(UNSTORABLE, '\uFFFD') : text;
}

/** Cut to at most `max` UTF-16 units without splitting a surrogate pair, marking the cut with an ellipsis. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end) + '…';
}

/** Storable text of at most `max` units: the form every error message, stack and log line is written in. */
export function storableText(text: string, max: number): string {
  return storable(cutText(text, max));
}

/** String(value) that never throws (a value whose toString or message getter throws, a revoked Proxy). */
export function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return '[unreadable value]';
    }
  }
}
