import type { Db } from '../catalog/database.ts';
import { hashesOf, matchedBetween } from '../catalog/image-hashes.ts';

/** At most this many matched images are read for one answer; `truncated` says when there were more. */
export const MAX_MATCHED = 5000;

interface Member {
  id: string;
  landedAt: string;
}

export interface DuplicateGroups {
  /** Images with the same bytes, oldest first: one group per SHA-256. */
  exact: Array<{ sha256: string; images: Member[] }>;
  /**
   * Images with other bytes that matched within the near distance when processed, linked into
   * groups; each member but the first names the earlier image it matched and how far it was.
   */
  near: Array<{ images: Array<Member & { nearOf: string | null; distance: number | null }> }>;
  truncated: boolean;
}

/**
 * A customer's duplicate groups among images landed from day `from` to day `to` (UTC): built from what each image matched
 * when it was processed (image_hashes.exact_of, near_of), so one indexed read, not a search per
 * image. An image matched that has since been purged drops out of its group.
 */
export async function duplicateGroups(
  db: Db,
  customerId: string,
  from: string,
  to: string,
): Promise<DuplicateGroups> {
  const matched = await matchedBetween(db, customerId, from, to, MAX_MATCHED + 1);
  const truncated = matched.length > MAX_MATCHED;
  const rows = matched.slice(0, MAX_MATCHED);
  const known = new Map<string, { sha256: string; landedAt: Date }>();
  for (const r of rows) known.set(r.imageId, r);
  const targets = [
    ...new Set(rows.flatMap((r) => [r.exactOf, r.nearOf]).filter((id) => id && !known.has(id))),
  ];
  for (const t of await hashesOf(db, customerId, targets as string[])) known.set(t.imageId, t);
  const member = (id: string): Member => ({ id, landedAt: known.get(id)!.landedAt.toISOString() });
  const byLanding = (a: Member, b: Member) =>
    a.landedAt.localeCompare(b.landedAt) || a.id.localeCompare(b.id);

  // Exact: every image with the same bytes, whichever it pointed at.
  const bySha = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!r.exactOf || !known.has(r.exactOf)) continue;
    const set = bySha.get(r.sha256) ?? new Set<string>();
    set.add(r.exactOf).add(r.imageId);
    bySha.set(r.sha256, set);
  }
  const exact = [...bySha].map(([sha256, ids]) => ({ sha256, images: [...ids].map(member).sort(byLanding) }));

  // Near: components of the near links (union-find over image ids).
  const parent = new Map<string, string>();
  const root = (id: string): string => {
    let p = parent.get(id) ?? id;
    while (p !== (parent.get(p) ?? p)) p = parent.get(p)!;
    parent.set(id, p);
    return p;
  };
  const link = new Map<string, { nearOf: string; distance: number }>();
  for (const r of rows) {
    if (!r.nearOf || !known.has(r.nearOf)) continue;
    link.set(r.imageId, { nearOf: r.nearOf, distance: r.nearDistance ?? 0 });
    parent.set(root(r.imageId), root(r.nearOf));
  }
  const components = new Map<string, Set<string>>();
  for (const [id, l] of link)
    for (const x of [id, l.nearOf]) {
      const set = components.get(root(x)) ?? new Set<string>();
      set.add(x);
      components.set(root(x), set);
    }
  const near = [...components.values()].map((ids) => ({
    images: [...ids]
      .map((id) => ({
        ...member(id),
        nearOf: link.get(id)?.nearOf ?? null,
        distance: link.get(id)?.distance ?? null,
      }))
      .sort(byLanding),
  }));
  const first = (g: { images: Member[] }) => g.images[0]!.landedAt;
  exact.sort((a, b) => first(a).localeCompare(first(b)));
  near.sort((a, b) => first(a).localeCompare(first(b)));
  return { exact, near, truncated };
}
