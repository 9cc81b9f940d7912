// Both bench scripts measure how long a service stayed unanswered while something ran.

/**
 * Runs `during` while asking `probe` every 100 ms whether the service answers; resolves with its
 * result and the longest stretch (ms) the probe said no. With `settle`, waits (up to a minute)
 * for the service to answer again before it stops asking.
 */
export async function longestOutage<T>(
    probe: () => Promise<boolean>,
    during: () => Promise<T>,
    opts: { settle?: boolean } = {},
): Promise<[T, number]> {
    let stop = false;
    let downSince: number | undefined;
    let longest = 0;
    const poll = (async () => {
        while (!stop) {
            const t = Date.now();
            const ok = await probe().catch(() => false);
            if (!ok && downSince === undefined) downSince = t;
            if (ok && downSince !== undefined) {
                longest = Math.max(longest, Date.now() - downSince);
                downSince = undefined;
            }
            await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - t))));
        }
    })();
    const result = await during();
    if (opts.settle) {
        const deadline = Date.now() + 60_000;
        while (downSince !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    stop = true;
    await poll;
    return [result, longest];
}
