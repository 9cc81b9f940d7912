// Pure helpers of the self-check: sizes and schedules read as Synapse, nginx and systemd read
// them, and ages as the report writes them.

/** Bytes in a matrix:synapse.maxUploadSize ("50M"): K and M are binary, as Synapse's parse_size and nginx read them. */
export function uploadSizeBytes(size: string): number {
    const m = /^([0-9]+)([KM]?)$/.exec(size);
    if (!m) throw new Error(`not an upload size (bytes, or a number followed by K or M): ${size}`);
    return Number(m[1]) * (m[2] === "M" ? 1024 * 1024 : m[2] === "K" ? 1024 : 1);
}

export const HOUR = 3600;
export const DAY = 24 * HOUR;
const CALENDAR_SHORTHANDS: Record<string, number> = {
    minutely: 60,
    hourly: HOUR,
    daily: DAY,
    weekly: 7 * DAY,
    monthly: 31 * DAY,
    quarterly: 92 * DAY,
    semiannually: 184 * DAY,
    yearly: 366 * DAY,
    annually: 366 * DAY,
};

const WEEKDAY = "(mon|tue|wed|thu|fri|sat|sun)[a-z]*";
const WEEKDAYS = new RegExp(`^${WEEKDAY}((,|\\.\\.)${WEEKDAY})*$`);

/**
 * The longest time between two runs of a systemd OnCalendar schedule, in seconds, for the forms
 * stacks use: the shorthands ("daily", "weekly"), "[weekday] *-*-* HH:MM[:SS]" with `*` or lists
 * in the time, a fixed day of the month or year. Anything else counts as daily: the backup check
 * then fails only once the newest backup is two days old.
 */
export function schedulePeriodSeconds(schedule: string): number {
    const s = schedule.trim().toLowerCase();
    const shorthand = CALENDAR_SHORTHANDS[s];
    if (shorthand !== undefined) return shorthand;
    const parts = s.split(/\s+/);
    const weekdays = parts[0] !== undefined && WEEKDAYS.test(parts[0]) ? parts.shift() : undefined;
    const date = parts.find((p) => p.includes("-"));
    const time = parts.find((p) => p.includes(":"));
    if (parts.some((p) => p !== date && p !== time) || (date ?? time ?? weekdays) === undefined) return DAY;
    const [year = "*", month = "*", day = "*"] = (date ?? "*-*-*").split("-");
    const fixed = (field: string) => /^[0-9]+$/.test(field);
    if (fixed(month) || (fixed(year) && !fixed(day))) return CALENDAR_SHORTHANDS.yearly!;
    if (fixed(day)) return CALENDAR_SHORTHANDS.monthly!;
    if (weekdays !== undefined && !/[,.]/.test(weekdays)) return CALENDAR_SHORTHANDS.weekly!;
    const [hour = "0", minute = "0"] = (time ?? "00:00:00").split(":");
    if (hour === "*" || hour.includes("/")) return minute === "*" || minute.includes("/") ? 60 : HOUR;
    return DAY;
}

export function formatAge(seconds: number): string {
    if (seconds < 2 * HOUR) return `${Math.round(seconds / 60)} min`;
    if (seconds < 2 * DAY) return `${Math.round(seconds / HOUR)} h`;
    return `${Math.round(seconds / DAY)} days`;
}
