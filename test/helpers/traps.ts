/**
 * Record every uncaught exception and unhandled rejection while a suite runs: a library that
 * lets one escape would crash its host, so a fault test asserts there were none.
 */
export function trapCrashes(): { expectNone(): void; take(): unknown[] } {
  const seen: unknown[] = [];
  const record = (err: unknown) => seen.push(err);
  before(() => {
    process.on('uncaughtException', record);
    process.on('unhandledRejection', record);
  });
  after(() => {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
  });
  return {
    expectNone() {
      const found = seen.splice(0);
      if (found.length) throw new Error(`the process would have crashed: ${found.map((e) => (e instanceof Error ? e.stack : String(e))).join('\n---\n')}`);
    },
    take: () => seen.splice(0),
  };
}
