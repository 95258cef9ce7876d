/** UTC calendar months: how history is split (PostgreSQL partitions, SQLite monthly files, the admin's History view). */

export interface UtcMonth {
  /** `YYYY-MM`. */
  key: string;
  /** Its first instant. */
  from: Date;
  /** The next month's first instant. */
  to: Date;
}

/** The UTC month `plus` months after the one holding `at`. */
export function utcMonth(at: Date, plus = 0): UtcMonth {
  const from = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + plus, 1));
  const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
  return { key: `${from.getUTCFullYear()}-${String(from.getUTCMonth() + 1).padStart(2, '0')}`, from, to };
}
