// Building blocks for the remote scripts. Every value that enters a script goes through
// `shq`; file contents travel base64-encoded so no heredoc delimiter or quote can break out.
import { createHash } from "node:crypto";

/** Quote a value for POSIX shells: 'it'\''s' style, safe for any byte but NUL. */
export function shq(value: string | number): string {
    const s = String(value);
    if (s.includes("\0")) throw new Error("shell values cannot contain NUL bytes");
    return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}

/**
 * A complete remote script: bash with strict mode, whatever the login shell is
 * (Debian's /bin/sh is dash, which has no pipefail). Non-root users go through `sudo -n`.
 * The script text ends up in the remote process list: it must never hold a secret.
 */
export function script(lines: string[], opts: { user?: string } = {}): string {
    const body = ["set -euo pipefail", "export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8", ...lines].join("\n");
    const runner = opts.user && opts.user !== "root" ? "sudo -n bash -c" : "bash -c";
    return `${runner} ${shq(body)}`;
}

export interface FileMode {
    mode: string;
    owner: string;
    group: string;
}

/** Install `content` at `path` atomically, with mode and owner; prints "changed <path>" when it differs. */
export function writeFile(path: string, content: string, m: FileMode): string[] {
    const b64 = Buffer.from(content, "utf8").toString("base64");
    return [
        `tmp=$(mktemp ${shq(dirOf(path) + "/.matrix-pulumi.XXXXXX")})`,
        `printf '%s' ${shq(b64)} | base64 -d > "$tmp"`,
        ...installTmp(path, m),
    ];
}

/** Install what arrives on stdin at `path`; the content never appears in argv or output. */
export function writeFileFromStdin(path: string, m: FileMode): string[] {
    return [
        `tmp=$(umask 077 && mktemp ${shq(dirOf(path) + "/.matrix-pulumi.XXXXXX")})`,
        `cat > "$tmp"`,
        ...installTmp(path, m),
    ];
}

function installTmp(path: string, m: FileMode): string[] {
    const p = shq(path);
    return [
        `chown ${shq(`${m.owner}:${m.group}`)} "$tmp" && chmod ${shq(m.mode)} "$tmp"`,
        `if cmp -s "$tmp" ${p}; then rm -f "$tmp"; chown ${shq(`${m.owner}:${m.group}`)} ${p}; chmod ${shq(m.mode)} ${p}; else mv -f "$tmp" ${p}; echo "changed "${p}; fi`,
    ];
}

/** Create a directory (and parents) with the given mode and owner. */
export function ensureDir(path: string, m: FileMode): string[] {
    return [`install -d -m ${shq(m.mode)} -o ${shq(m.owner)} -g ${shq(m.group)} ${shq(path)}`];
}

/** Serialized apt: the install steps run in parallel, and dpkg takes one caller at a time. */
export const APT_LOCK = "/run/matrix-pulumi-apt.lock";
/** When a step last refreshed the package lists (in /run: a reboot forgets it). */
export const APT_UPDATED = "/run/matrix-pulumi-apt.updated";
const APT = "apt-get -q -o DPkg::Lock::Timeout=600";

/**
 * Install Debian packages only when one is missing, so re-runs do not touch apt. The package
 * lists are refreshed once for the install steps of one deployment (within 30 minutes), not by
 * each of them in turn behind the lock.
 */
export function aptInstall(packages: string[]): string[] {
    const list = packages.map(shq).join(" ");
    return [
        `missing=$(printf '%s\n' ${list} | while read -r p; do dpkg-query -W -f='${"${Status}"}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done)`,
        `if [ -n "$missing" ]; then`,
        `  exec 9>${APT_LOCK}`,
        "  flock -w 1200 9",
        `  if [ -z "$(find ${APT_UPDATED} -mmin -30 2>/dev/null)" ]; then ${APT} update; touch ${APT_UPDATED}; fi`,
        "  # shellcheck disable=SC2086",
        `  ${APT} install -y --no-install-recommends $missing`,
        "  exec 9>&-",
        `fi`,
    ];
}

/**
 * Download `url` to `part` and check its SHA-256 before anything else reads it: on a mismatch the
 * file is removed and the script stops, naming what it is (`what`), where its checksum comes from
 * (`key`) and that nothing was `done` ("installed", "extracted").
 */
export function downloadChecked(d: {
    url: string;
    sha256: string;
    part: string;
    what: string;
    key: string;
    done: string;
}): string[] {
    return [
        `curl -fsSL --retry 3 -o ${shq(d.part)} ${shq(d.url)}`,
        `actual=$(sha256sum ${shq(d.part)} | cut -d' ' -f1)`,
        `if [ "$actual" != ${shq(d.sha256)} ]; then`,
        `  rm -f ${shq(d.part)}`,
        `  echo "${d.what} from "${shq(d.url)}" has SHA-256 $actual, but ${d.key} says "${shq(d.sha256)}"; nothing was ${d.done}." >&2`,
        "  exit 1",
        "fi",
    ];
}

/** The folder a path is in ("/" for a top-level one). */
export function dirOf(path: string): string {
    const i = path.lastIndexOf("/");
    return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * Restart `unit` when the revision it runs (kept in `stamp`) differs from `revision`, or when it
 * is not running; then record the revision. Run again with the same revision, it restarts nothing.
 */
export function restartOnRevision(unit: string, stamp: string, revision: string, label = unit): string[] {
    return [
        `if [ "$(cat ${shq(stamp)} 2>/dev/null || true)" != ${shq(revision)} ] || ! systemctl is-active --quiet ${unit}; then`,
        `  systemctl restart ${unit}`,
        `  printf '%s\\n' ${shq(revision)} > ${shq(stamp)}`,
        `  echo "${label} (re)started"`,
        "fi",
    ];
}
