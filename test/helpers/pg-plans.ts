/** Reading PostgreSQL's JSON plans in tests. */

/** Every scan of `table` in a JSON plan: its node type and index, if any ("Index Scan using x"). */
export function scansOf(plan: Record<string, unknown>, table: string, out: string[] = []): string[] {
  const onTable = plan['Relation Name'] === table || (plan['Node Type'] === 'Bitmap Index Scan' && String(plan['Index Name']).startsWith(`${table}_`));
  if (onTable && String(plan['Node Type']).endsWith('Scan')) out.push(`${plan['Node Type']}${plan['Index Name'] ? ` using ${plan['Index Name']}` : ''}`);
  for (const child of (plan.Plans as Record<string, unknown>[] | undefined) ?? []) scansOf(child, table, out);
  return out;
}
