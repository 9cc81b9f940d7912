// The lab's artifact server: the Element tarballs, the calls' release files and the Synapse
// wheelhouse, served to the hosts as the releases users download.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { gunzipSync, gzipSync } from "node:zlib";
import * as path from "node:path";
import { mustRun } from "./host";

export interface ElementRelease {
    version: string;
    url: string;
    sha256: string;
}

/** A pinned release file (matrix:rtc.livekit, matrix:rtc.jwtService). */
export interface RtcRelease {
    version: string;
    url: string;
    sha256: string;
}

/**
 * The MatrixRTC release files `npm run tools:rtc` built into $PULUMI_TOOLS/rtc, in the projects'
 * own layout (LiveKit's tarball, lk-jwt-service's bare binary). Absent: no rtc releases served.
 */
export const RTC_FILES = {
    livekit: { version: "1.13.5", file: "livekit_1.13.5_linux_amd64.tar.gz" },
    jwtService: { version: "0.5.0", file: "lk-jwt-service_linux_amd64" },
} as const;

/** The MAS release tarball `npm run tools:mas` built into $PULUMI_TOOLS/mas, as MAS publishes it. */
export const MAS_FILE = { version: "1.22.0", file: "mas-cli-x86_64-linux.tar.gz" } as const;

/**
 * `npm run test:all` builds MAS's tarball in the background beside the other host suites and names
 * the build's process in MAS_BUILD_PID; the auth suite, whose host test Jest starts first
 * (tests/sequencer.js), waits here until that process has ended (exited, or a zombie its parent has yet to reap). Without the
 * variable, or once the build is over, it returns at once: a missing tarball then fails the suite
 * with what to run.
 */
export async function awaitMasBuild(): Promise<void> {
    const pid = Number(process.env.MAS_BUILD_PID);
    if (!Number.isInteger(pid) || pid <= 0) return;
    const running = () => {
        try {
            // /proc/PID/stat: "PID (COMM) STATE …"; Z is a process that has exited.
            const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
            return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
        } catch {
            return false;
        }
    };
    while (running()) await new Promise((r) => setTimeout(r, 1000));
}

export interface Artifacts {
    /** MatrixRTC's release files, as matrix:rtc takes them (when `npm run tools:rtc` built them). */
    rtc?: { livekit: RtcRelease; jwtService: RtcRelease };
    /** MAS's release tarball, as matrix:auth.mas takes it (when `npm run tools:mas` built it). */
    mas?: RtcRelease;
    /**
     * A next MAS release for an upgrade: the same build repacked (another SHA-256), labelled
     * 1.22.1 — the program sees only a release's version, URL and checksum.
     */
    masNext?: RtcRelease;
    /** The first release served. */
    element: ElementRelease;
    /** Every release served, by its key. */
    elements: Record<string, ElementRelease>;
    /** pip --find-links URL of the Synapse wheelhouse. */
    wheelhouse: string;
    stop(): Promise<void>;
}

/**
 * Wheels for matrix-synapse[postgres,redis] and its dependencies for the host's Python, cached:
 * the host then installs with `pip --no-index --find-links`, the program's air-gapped path, since
 * it cannot verify PyPI's TLS through this sandbox. For the test machine's own Python (Debian 12's
 * 3.11), `pip wheel` builds them here. For another (Debian 13's 3.13), pip downloads the binary
 * wheels made for that Python and psycopg2's source (it has no wheel; the host builds it with the
 * compiler and libpq-dev the program installs), with setuptools and wheel to build it.
 */
export function buildWheelhouse(cache: string, venv: string, versions: string[], python = "3.11"): string {
    const own = python === "3.11";
    const dir = path.join(cache, `wheels-redis-${own ? "" : `py${python}-`}${versions.join("-")}`);
    if (existsSync(dir)) return dir;
    // Suites run side by side: one builds the wheelhouse under a lock, the others wait for it.
    const script = wheelhouseScript(own);
    mkdirSync(cache, { recursive: true });
    const pip = path.join(venv, "bin/pip");
    mustRun("flock", [path.join(cache, "wheels.lock"), "bash", "-c", script, "wheels", dir, pip, python, ...versions]);
    return dir;
}

/**
 * The wheelhouse build as a bash script: `bash -c SCRIPT wheels DIR PIP PYTHON VERSION…`. `own`:
 * for the Python that runs `pip` (`pip wheel`, what `npm run demo` runs on the user's machine);
 * otherwise binary wheels for another Python and psycopg2's source.
 */
export function wheelhouseScript(own: boolean): string {
    const fetch = own
        ? `"$pip" wheel -q --disable-pip-version-check -w "$dir.part" "matrix-synapse[postgres,redis]==$v"`
        : [
              `"$pip" download -q --disable-pip-version-check -d "$dir.part" --only-binary=:all: --python-version "$py" --implementation cp`,
              `  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64`,
              `  "matrix-synapse[redis]==$v" setuptools wheel`,
          ].join(" \\\n");
    return `set -euo pipefail
dir=$1 pip=$2 py=$3; shift 3
[ -d "$dir" ] && exit 0
rm -rf "$dir.part"
for v in "$@"; do
${fetch}
done
${own ? "" : `"$pip" download -q --disable-pip-version-check -d "$dir.part" --no-deps --no-binary=:all: psycopg2`}
mv "$dir.part" "$dir"`;
}

/**
 * A release the artifact server offers: `key` names it, `build` tells two tarballs of one version
 * apart; `file` is a real release tarball to serve instead of a small stand-in.
 */
export interface ReleaseSpec {
    key: string;
    version: string;
    build?: string;
    file?: string;
}

/**
 * Element's real tarball cannot be downloaded here: serve a small one with the release's
 * layout (one top folder element-vX.Y.Z/ with index.html, config.sample.json, bundles/, i18n/).
 */
function elementTarball(dir: string, r: ReleaseSpec): Buffer {
    const work = path.join(dir, r.key);
    const top = path.join(work, `element-v${r.version}`);
    mkdirSync(path.join(top, "bundles", "0123abcd"), { recursive: true });
    mkdirSync(path.join(top, "i18n"), { recursive: true });
    const label = `element ${r.version}${r.build ? ` ${r.build}` : ""}`;
    writeFileSync(path.join(top, "index.html"), `<!doctype html><title>Element</title><p>${label}</p>\n`);
    writeFileSync(path.join(top, "config.sample.json"), JSON.stringify({ default_server_config: {} }));
    writeFileSync(path.join(top, "bundles", "0123abcd", "bundle.js"), "console.log('element');\n");
    writeFileSync(path.join(top, "i18n", "en_EN.json"), "{}\n");
    writeFileSync(path.join(top, "version"), `${r.version}\n`);
    const tarball = path.join(work, `element-v${r.version}.tar.gz`);
    mustRun("tar", ["-czf", tarball, "-C", work, `element-v${r.version}`]);
    return readFileSync(tarball);
}

/** Serves Element tarballs (at /<key>/element-vX.Y.Z.tar.gz) and the wheelhouse (wheels and sources) as a page of links. */
export async function serveArtifacts(
    dir: string,
    listenIp: string,
    port: number,
    releases: ReleaseSpec[],
    wheelhouse: string,
    toolsDir?: string,
): Promise<Artifacts> {
    const rtcDir = toolsDir && path.join(toolsDir, "rtc");
    const masFile = toolsDir && path.join(toolsDir, "mas", MAS_FILE.file);
    const urlPath = (r: ReleaseSpec) => `/${r.key}/element-v${r.version}.tar.gz`;
    const tarballs = new Map(
        releases.map((r) => [urlPath(r), r.file ? readFileSync(r.file) : elementTarball(dir, r)] as const),
    );
    const rtcFiles =
        rtcDir && Object.values(RTC_FILES).every((f) => existsSync(path.join(rtcDir, f.file)))
            ? Object.values(RTC_FILES).map((f) => [`/rtc/${f.file}`, path.join(rtcDir, f.file)] as const)
            : [];
    for (const [url, file] of rtcFiles) tarballs.set(url, readFileSync(file));
    const masServed = masFile !== undefined && existsSync(masFile);
    if (masServed) {
        const tarball = readFileSync(masFile);
        tarballs.set(`/mas/${MAS_FILE.file}`, tarball);
        tarballs.set(`/mas-next/${MAS_FILE.file}`, gzipSync(gunzipSync(tarball), { level: 1 }));
    }
    // Wheels, and the sources of what has none (psycopg2, for a Python other than this machine's).
    const wheels = readdirSync(wheelhouse).filter((f) => f.endsWith(".whl") || f.endsWith(".tar.gz"));
    const server: Server = createServer((req, res) => {
        const url = req.url ?? "";
        const tarball = tarballs.get(url);
        if (tarball) {
            res.writeHead(200, { "Content-Type": "application/gzip", "Content-Length": tarball.length });
            res.end(tarball);
        } else if (url === "/wheels/") {
            res.writeHead(200, { "Content-Type": "text/html" });
            res.end(wheels.map((w) => `<a href="${encodeURIComponent(w)}">${w}</a><br>`).join("\n"));
        } else if (url.startsWith("/wheels/") && wheels.includes(decodeURIComponent(url.slice(8)))) {
            res.writeHead(200, { "Content-Type": "application/octet-stream" });
            res.end(readFileSync(path.join(wheelhouse, decodeURIComponent(url.slice(8)))));
        } else {
            res.writeHead(404).end();
        }
    });
    await new Promise<void>((r) => server.listen(port, listenIp, r));
    const elements = Object.fromEntries(
        releases.map((r) => [
            r.key,
            {
                version: r.version,
                url: `http://${listenIp}:${port}${urlPath(r)}`,
                sha256: createHash("sha256")
                    .update(tarballs.get(urlPath(r))!)
                    .digest("hex"),
            },
        ]),
    );
    const rtcRelease = (f: { version: string; file: string }, folder = "rtc"): RtcRelease => ({
        version: f.version,
        url: `http://${listenIp}:${port}/${folder}/${f.file}`,
        sha256: createHash("sha256")
            .update(tarballs.get(`/${folder}/${f.file}`)!)
            .digest("hex"),
    });
    return {
        rtc:
            rtcFiles.length > 0
                ? { livekit: rtcRelease(RTC_FILES.livekit), jwtService: rtcRelease(RTC_FILES.jwtService) }
                : undefined,
        mas: masServed ? rtcRelease({ version: MAS_FILE.version, file: MAS_FILE.file }, "mas") : undefined,
        masNext: masServed ? rtcRelease({ version: "1.22.1", file: MAS_FILE.file }, "mas-next") : undefined,
        element: elements[releases[0]!.key]!,
        elements,
        wheelhouse: `http://${listenIp}:${port}/wheels/`,
        stop: () => new Promise((r) => server.close(() => r())),
    };
}
