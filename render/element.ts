// Element Web: config.json, its vhost, and the download/verify/extract/switch scripts.
import { block, tlsServerHead, NGINX_PATHS } from "./nginx";
import { aptInstall, downloadChecked, ensureDir, script, sha256, shq } from "./shell";

export const ELEMENT_PATHS = {
    root: "/var/www/element",
    releases: "/var/www/element/releases",
    current: "/var/www/element/current",
    /** The release `current` pointed at before the last switch (kept for a rollback). */
    previous: "/var/www/element/previous",
    cache: "/var/cache/matrix-pulumi",
    site: "matrix-element.conf",
} as const;

export const ELEMENT_APT_PACKAGES = ["curl", "ca-certificates"];

/** What identifies a release and its folder. */
export interface ElementReleaseId {
    version: string;
    sha256: string;
}

/**
 * The folder a release is unpacked into, named by its version and checksum: a new tarball under
 * the same version gets a folder of its own (and its own config.json) before `current` moves.
 */
export function elementReleaseDir(r: ElementReleaseId): string {
    return `${ELEMENT_PATHS.releases}/v${r.version}-${r.sha256.slice(0, 12)}`;
}

export interface ElementConfigSettings {
    serverName: string;
    homeserverHost: string;
    brand: string;
    disableCustomUrls: boolean;
    /** Whether the homeserver takes registrations: Element offers "Create Account" only then. */
    registration: boolean;
}

/** config.json: `default_server_config` only (never mixed with default_server_name/default_hs_url). */
export function renderElementConfig(s: ElementConfigSettings): string {
    const config = {
        brand: s.brand,
        default_server_config: {
            "m.homeserver": { base_url: `https://${s.homeserverHost}`, server_name: s.serverName },
        },
        disable_custom_urls: s.disableCustomUrls,
        disable_guests: true,
        room_directory: { servers: [s.serverName] },
        // Without this Element offers "Create Account" on a server that refuses it.
        setting_defaults: { "UIFeature.registration": s.registration },
        show_labs_settings: false,
    };
    return JSON.stringify(config, null, 2) + "\n";
}

/** Element's recommended headers, name to value (the self-check expects them from the vhost). */
export const ELEMENT_SECURITY_HEADERS: Readonly<Record<string, string>> = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "Strict-Transport-Security": "max-age=31536000",
};

/** ELEMENT_SECURITY_HEADERS as nginx lines; repeated in every location that adds its own header. */
const SECURITY_HEADERS = Object.entries(ELEMENT_SECURITY_HEADERS).map(
    ([name, value]) => `add_header ${name} "${value}" always;`,
);

/** The Element vhost: static files; no-cache for what changes between releases. */
export function renderElementSite(s: { elementHost: string; ipv6: boolean }): string {
    return [
        "# Managed by matrix-pulumi.",
        ...block("server", [
            ...tlsServerHead(s.elementHost, { ipv6: s.ipv6 }).filter((l) => !l.startsWith("add_header")),
            `root ${ELEMENT_PATHS.current};`,
            "index index.html;",
            ...SECURITY_HEADERS,
            "",
            // Unhashed entry points must be revalidated, or a browser keeps a stale release.
            ...block("location ~ ^/(index\\.html|version|config[^/]*\\.json|i18n/.*)?$", [
                'add_header Cache-Control "no-cache" always;',
                ...SECURITY_HEADERS,
                "try_files $uri $uri/ =404;",
            ]),
            ...block("location /", ["try_files $uri $uri/ =404;"]),
        ]),
        "",
    ].join("\n");
}

export interface ElementReleaseSettings extends ElementReleaseId {
    url: string;
}

/**
 * Download the pinned release, verify its SHA-256 before anything is extracted, and unpack
 * it into its own versioned folder. Skipped when that folder already holds this checksum.
 */
export function renderElementReleaseScript(s: ElementReleaseSettings, opts: { user?: string } = {}): string {
    const dir = elementReleaseDir(s);
    const tarball = `${ELEMENT_PATHS.cache}/element-v${s.version}.tar.gz`;
    const stamp = `${dir}/.matrix-pulumi-sha256`;
    const root = { owner: "root", group: "root" };
    return script(
        [
            `if [ -f ${shq(dir + "/index.html")} ] && [ "$(cat ${shq(stamp)} 2>/dev/null)" = ${shq(s.sha256)} ]; then`,
            `  echo "element v${s.version} already in place"; exit 0`,
            "fi",
            ...aptInstall(ELEMENT_APT_PACKAGES),
            ...ensureDir(ELEMENT_PATHS.cache, { mode: "0755", ...root }),
            ...ensureDir(ELEMENT_PATHS.releases, { mode: "0755", ...root }),
            ...downloadChecked({
                url: s.url,
                sha256: s.sha256,
                part: tarball + ".part",
                what: "Element tarball",
                key: "matrix:element.sha256",
                done: "extracted",
            }),
            `mv -f ${shq(tarball + ".part")} ${shq(tarball)}`,
            `tmp=$(mktemp -d ${shq(ELEMENT_PATHS.releases + "/.extract.XXXXXX")})`,
            `tar -xzf ${shq(tarball)} -C "$tmp" --strip-components=1 --no-same-owner --no-same-permissions`,
            `if [ ! -f "$tmp/index.html" ]; then rm -rf "$tmp"; echo "the tarball has no */index.html: not an Element Web release" >&2; exit 1; fi`,
            `printf '%s\\n' ${shq(s.sha256)} > "$tmp/.matrix-pulumi-sha256"`,
            `chmod -R u=rwX,go=rX "$tmp"`,
            // Never swap out the folder `current` points at without a replacement ready.
            `if [ -e ${shq(dir)} ]; then mv -T ${shq(dir)} "$tmp.old"; fi`,
            `mv -T "$tmp" ${shq(dir)}`,
            `rm -rf "$tmp.old"`,
            `echo "element v${s.version} extracted"`,
        ],
        opts,
    );
}

/** Where config.json and the vhost live (ManagedFile resources write them), and their mode. */
export function elementFiles(r: ElementReleaseId): { config: string; site: string } {
    return {
        config: `${elementReleaseDir(r)}/config.json`,
        site: `${NGINX_PATHS.sitesAvailable}/${ELEMENT_PATHS.site}`,
    };
}
export const ELEMENT_FILE_MODE = { mode: "0644", owner: "root", group: "root" } as const;

/**
 * Switch `current` to the release (config.json already in it), enable the vhost, reload nginx.
 * `revision` covers the vhost file's digest and write generation (config.json is read by
 * browsers, not nginx: restoring it needs no reload).
 */
export function renderElementSiteScript(
    s: ElementReleaseId & { revision: string },
    opts: { user?: string } = {},
): string {
    const dir = elementReleaseDir(s);
    const site = elementFiles(s).site;
    const previous = ELEMENT_PATHS.previous;
    return script(
        [
            `# revision ${sha256(s.revision)}`,
            `before=$(readlink ${shq(ELEMENT_PATHS.current)} 2>/dev/null || true)`,
            `ln -sfn ${shq(dir)} ${shq(ELEMENT_PATHS.root + "/.current.tmp")}`,
            `mv -T ${shq(ELEMENT_PATHS.root + "/.current.tmp")} ${shq(ELEMENT_PATHS.current)}`,
            // The release switched away from stays, a rollback away; older ones go.
            `if [ -n "$before" ] && [ "$before" != ${shq(dir)} ] && [ -d "$before" ]; then ln -sfn "$before" ${shq(previous)}; fi`,
            `keep=$(readlink ${shq(previous)} 2>/dev/null || true)`,
            `for old in ${shq(ELEMENT_PATHS.releases)}/*/; do`,
            "  old=${old%/}",
            `  if [ "$old" != ${shq(dir)} ] && [ "$old" != "$keep" ]; then rm -rf "$old"; echo "removed the old Element release \${old##*/}"; fi`,
            "done",
            `ln -sfn ${shq(site)} ${shq(`${NGINX_PATHS.sitesEnabled}/${ELEMENT_PATHS.site}`)}`,
            "nginx -t -q",
            "systemctl reload nginx",
        ],
        opts,
    );
}

/** Element's releases as a step of their own: on destroy kept, or with `purge` removed. */
export function renderElementDataScript(
    s: { purge: boolean },
    opts: { user?: string } = {},
): {
    create: string;
    delete: string;
} {
    return {
        create: script([`echo "Element's releases: ${ELEMENT_PATHS.releases}"`], opts),
        delete: script(
            s.purge
                ? [`rm -rf ${shq(ELEMENT_PATHS.root)} ${shq(ELEMENT_PATHS.cache)}`, `echo "purged Element's releases"`]
                : [`echo "kept ${ELEMENT_PATHS.releases}"`],
            opts,
        ),
    };
}
