// The preflight: one read-only script that reports what a host is as found (release, init,
// resources, apt's lock, other firewall managers, who holds 80 and 443, nginx sites of others,
// PostgreSQL's clusters), one fact a line, for lib/preflight.ts to judge before anything changes.
import { sqlLiteral } from "./postgres";
import { script, shq } from "./shell";

/** Matrix Authentication Service's config file (render/mas.ts): present once MAS was set up. */
export const MAS_CONFIG_PATH = "/etc/matrix-authentication-service/config.yaml";

/** dpkg's and apt's locks: a process holding one (unattended-upgrades on a new server) blocks apt. */
export const APT_LOCK_FILES = [
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
];

/**
 * Facts, one `key<TAB>value` a line (keys may repeat). Changes nothing on the host; runs as root
 * (or through `sudo -n`) because the lock holders' and sockets' processes are root's to see.
 *
 *   os           ID VERSION_ID (from /etc/os-release), then `os.name` its PRETTY_NAME
 *   pid1         the name of process 1
 *   arch         dpkg's architecture (amd64, arm64, …): which release files and wheels fit
 *   disk.kb      free KiB on the file system of /var/lib (PostgreSQL's and Synapse's data)
 *   memory.kb    MemTotal
 *   apt.lock     PID and name of a process that has one of apt's lock files open
 *   firewall     ufw (enabled in ufw.conf) or firewalld (active)
 *   listen       PORT PROCESS for each TCP listener on 80 or 443
 *   nginx.site   FILE NAME for each server_name of an enabled nginx site not the program's
 *   pg.cluster   VERSION NAME PORT STATUS (pg_lsclusters), `pg.database` VERSION/NAME where the
 *                database exists, `pg.listen` PORT for each TCP listener on 5432–5499
 *   mas          present when Matrix Authentication Service was set up here (its config exists)
 *   calendar.error  what this host's systemd says of the backup timer's OnCalendar (when it
 *                cannot parse it): the systemd that will run the timer judges it
 */
export function renderPreflightScript(
    s: { database?: string; calendar?: string },
    opts: { user?: string } = {},
): string {
    return script(
        [
            'fact() { printf "%s\\t%s\\n" "$1" "$2"; }',
            "if [ -r /etc/os-release ]; then",
            '  (. /etc/os-release; fact os "${ID:-unknown} ${VERSION_ID:-unknown}"; fact os.name "${PRETTY_NAME:-unknown}")',
            "else fact os 'unknown unknown'; fact os.name 'no /etc/os-release'; fi",
            'fact pid1 "$(cat /proc/1/comm 2>/dev/null || echo unknown)"',
            'fact arch "$(dpkg --print-architecture 2>/dev/null || uname -m)"',
            'd=/var/lib; while [ ! -d "$d" ]; do d=$(dirname "$d"); done',
            'fact disk.kb "$(df -Pk "$d" | awk \'NR == 2 {print $4}\')"',
            "fact memory.kb \"$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)\"",
            // Who has a lock file open: no fuser or lsof on a minimal server, /proc has it all. One
            // find (findutils is essential) reads every descriptor's link; a readlink per descriptor
            // was a process each, thousands on a busy host, at every preview.
            // find exits 1 when a process ends while it reads /proc: not an error here.
            `{ find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \\( ${APT_LOCK_FILES.map((f) => `-lname ${shq(f)}`).join(" -o ")} \\) -printf '%h\\n' 2>/dev/null || true; } |`,
            "  while IFS=/ read -r _ _ pid _; do",
            '    [ "$pid" = "$$" ] || fact apt.lock "$pid $(cat "/proc/$pid/comm" 2>/dev/null || echo gone)"',
            "  done | sort -u",
            "if [ -r /etc/ufw/ufw.conf ] && grep -qi '^ENABLED=yes' /etc/ufw/ufw.conf; then fact firewall ufw; fi",
            "if systemctl is-active --quiet firewalld 2>/dev/null; then fact firewall firewalld; fi",
            // ss from iproute2 (every Debian has it); the process name from its users:(("nginx",...)).
            'ss -Htlnp 2>/dev/null | awk \'{n = split($4, a, ":"); port = a[n]; name = "unknown";',
            '  if (match($0, /\\(\\("[^"]*"/)) name = substr($0, RSTART + 3, RLENGTH - 4);',
            '  if (port == 80 || port == 443) print "listen\\t" port " " name;',
            '  if (port >= 5432 && port <= 5499) print "pg.listen\\t" port}\' | sort -u',
            // Enabled sites that are not the program's (matrix-*) and the names they serve.
            "for f in /etc/nginx/sites-enabled/* /etc/nginx/conf.d/*.conf; do",
            '  [ -f "$f" ] || continue',
            '  case "${f##*/}" in matrix-*) continue ;; esac',
            // Anywhere on a line (one-line server blocks too), comments aside.
            "  sed 's/#.*//' \"$f\" | { grep -o 'server_name[[:space:]][^;]*' || true; } | sed 's/^server_name//' | tr ' \\t' '\\n\\n' | sed '/^$/d' |",
            '    while read -r name; do fact nginx.site "$f $name"; done',
            "done",
            `if [ -e ${shq(MAS_CONFIG_PATH)} ]; then fact mas installed; fi`,
            ...(s.calendar !== undefined
                ? [
                      `if ! out=$(systemd-analyze calendar -- ${shq(s.calendar)} 2>&1); then`,
                      '  fact calendar.error "$(printf "%s" "$out" | head -n 1)"',
                      "fi",
                  ]
                : []),
            "if command -v pg_lsclusters >/dev/null 2>&1; then",
            "  pg_lsclusters -h 2>/dev/null | while read -r version name port status _; do",
            '    fact pg.cluster "$version $name $port $status"',
            ...(s.database
                ? [
                      '    case "$status" in online*)',
                      `      if runuser -u postgres -- psql --cluster "$version/$name" -XAtq -d postgres -c ${shq(
                          `SELECT 1 FROM pg_database WHERE datname = ${sqlLiteral(s.database)}`,
                      )} 2>/dev/null | grep -q 1; then fact pg.database "$version/$name"; fi ;;`,
                      "    esac",
                  ]
                : []),
            "  done",
            "fi",
        ],
        opts,
    );
}
