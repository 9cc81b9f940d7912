// The self-check's report: one result per check (pass, warn or fail, and what to do about it),
// the summary, and the lines printed for them.

export type CheckStatus = "pass" | "warn" | "fail";

/** One line of the report. `fix` says what to do about a warning or failure. */
export interface CheckResult {
    id: string;
    status: CheckStatus;
    detail: string;
    fix?: string;
}

export interface Summary {
    passed: number;
    warnings: number;
    failed: number;
}

/** What a run reports (`--json` prints it). */
export interface SelfCheckReport {
    results: CheckResult[];
    summary: Summary;
}

export const pass = (id: string, detail: string): CheckResult => ({ id, status: "pass", detail });
export const warn = (id: string, detail: string, fix: string): CheckResult => ({ id, status: "warn", detail, fix });
export const fail = (id: string, detail: string, fix: string): CheckResult => ({ id, status: "fail", detail, fix });

export function summarize(results: CheckResult[]): Summary {
    const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
    return { passed: count("pass"), warnings: count("warn"), failed: count("fail") };
}

/** `PASS tls matrix.example.org: valid 89 days, TLSv1.3`, or `FAIL …: … — fix: …`. */
export function formatResult(r: CheckResult): string {
    const fix = r.status !== "pass" && r.fix ? ` — fix: ${r.fix}` : "";
    return `${r.status.toUpperCase()} ${r.id}: ${r.detail}${fix}`;
}

export function formatSummary(s: Summary): string {
    return `${s.passed} passed, ${s.warnings} warnings, ${s.failed} failed`;
}
