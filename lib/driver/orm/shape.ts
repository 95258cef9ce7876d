/** Shape checks for recognising the app's ORM objects (never instanceof: the app's copy may not be ours). */
export const fn = (o: unknown, k: string): boolean => o != null && typeof (o as Record<string, unknown>)[k] === 'function';
