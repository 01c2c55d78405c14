/**
 * Runs `work` on every item with at most `limit` calls in flight, and returns the results in the
 * items' order. The first failure rejects the whole (the calls already started still finish). For
 * I/O on many small things (a purge's lake objects) where one at a time waits on each round trip
 * and all at once would open as many files or sockets as there are items.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  return results;
}
