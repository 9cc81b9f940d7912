// Synapse's scale-out (its docs/workers.md): worker processes coordinated through Redis, the main
// process's replication listener on a UNIX socket, one systemd template unit for every worker,
// and the nginx routes that send each documented path to the workers that serve it.
import { stringify } from "yaml";
import { restartOnRevision, script, sha256, shq } from "./shell";
import { block, NGINX_UPSTREAM_VARIABLE } from "./nginx";
import {
    SYNAPSE_LISTEN,
    SYNAPSE_PATHS,
    SYNAPSE_SERVICE,
    SYNAPSE_USER,
    synapseServiceLines,
    synapseUnitHardening,
    untilHealthy,
} from "./synapseBase";

/** How many worker processes of each kind (matrix:synapse.workers). */
export interface WorkerCounts {
    /** Generic workers for /sync, /events, initial syncs and sliding sync; a user stays on one. */
    sync: number;
    /** Generic workers for the other client reads, event sending, and inbound federation. */
    client: number;
    /** Federation senders (outbound federation leaves the main process). */
    federationSender: number;
    /** Media repository workers; the first runs the media background jobs. */
    media: number;
    /** 1: background tasks run on a worker of their own instead of the main process. */
    background: number;
}

export const WORKER_PRESETS = {
    none: { sync: 0, client: 0, federationSender: 0, media: 0, background: 0 },
    small: { sync: 2, client: 1, federationSender: 1, media: 1, background: 1 },
} as const satisfies Record<string, WorkerCounts>;
export type WorkerPreset = keyof typeof WORKER_PRESETS;

export const WORKER_PATHS = {
    workersDir: "/etc/matrix-synapse/workers",
    unit: "/etc/systemd/system/matrix-synapse-worker@.service",
    target: "/etc/systemd/system/matrix-synapse.target",
    /** The main process's replication listener (only Synapse's own user can reach it). */
    runtimeDir: "/run/matrix-synapse",
    replicationSocket: "/run/matrix-synapse/replication.sock",
    redisConfig: "/etc/matrix-synapse/redis.conf",
    redisUnit: "/etc/systemd/system/matrix-synapse-redis.service",
    redisSocket: "/run/matrix-synapse-redis/redis.sock",
    /** Per worker: the revision it was (re)started with. */
    stampDir: "/var/lib/matrix-pulumi/synapse-workers",
    /** nginx's routes and upstreams (http level: Debian's nginx.conf includes conf.d/*.conf). */
    nginxUpstreams: "/etc/nginx/conf.d/matrix-synapse-upstreams.conf",
} as const;
export const WORKER_SERVICE = "matrix-synapse-worker";
/** Synapse's Redis runs the distribution's server as a unit of its own (redis-tools for its ping). */
export const REDIS_APT_PACKAGES = ["redis-server", "redis-tools"];
export const REDIS_SERVICE = "matrix-synapse-redis";
export const SYNAPSE_TARGET = "matrix-synapse.target";

export type WorkerKind = keyof WorkerCounts;
const APP: Record<WorkerKind, string> = {
    sync: "synapse.app.generic_worker",
    client: "synapse.app.generic_worker",
    federationSender: "synapse.app.generic_worker",
    media: "synapse.app.media_repository",
    background: "synapse.app.generic_worker",
};
const NAME: Record<WorkerKind, string> = {
    sync: "sync",
    client: "client",
    federationSender: "federation_sender",
    media: "media",
    background: "background",
};
/** Loopback ports of the workers that serve HTTP: <base> + index (1-based). */
const PORT_BASE: Partial<Record<WorkerKind, number>> = { sync: 8110, client: 8120, media: 8130 };
const RESOURCES: Partial<Record<WorkerKind, string[]>> = {
    sync: ["client"],
    client: ["client", "federation"],
    media: ["media"],
};

export interface Worker {
    kind: WorkerKind;
    /** worker_name, also the systemd instance (matrix-synapse-worker@<name>). */
    name: string;
    app: string;
    /** Loopback HTTP port, for the workers nginx sends requests to. */
    port?: number;
}

/** The workers of a layout, in a fixed order. */
export function workerList(c: WorkerCounts): Worker[] {
    return (Object.keys(NAME) as WorkerKind[]).flatMap((kind) =>
        Array.from({ length: c[kind] }, (_, i) => ({
            kind,
            name: `${NAME[kind]}${i + 1}`,
            app: APP[kind],
            ...(PORT_BASE[kind] !== undefined ? { port: PORT_BASE[kind] + i + 1 } : {}),
        })),
    );
}

export function hasWorkers(c: WorkerCounts): boolean {
    return workerList(c).length > 0;
}

/** homeserver.yaml keys the shared config gets when there are workers (none without). */
export function sharedWorkerConfig(c: WorkerCounts): Record<string, unknown> {
    const workers = workerList(c);
    if (workers.length === 0) return {};
    const of = (kind: WorkerKind) => workers.filter((w) => w.kind === kind).map((w) => w.name);
    return {
        redis: { enabled: true, path: WORKER_PATHS.redisSocket },
        instance_map: { main: { path: WORKER_PATHS.replicationSocket } },
        ...(c.federationSender > 0 ? { federation_sender_instances: of("federationSender") } : {}),
        ...(c.background > 0 ? { run_background_tasks_on: of("background")[0] } : {}),
        ...(c.media > 0
            ? // The main process stops serving (and cleaning) media; the first media worker cleans.
              { enable_media_repo: false, media_instance_running_background_jobs: of("media")[0] }
            : {}),
    };
}

/** The main process's replication listener, added to its listeners when there are workers. */
export const REPLICATION_LISTENER = {
    path: WORKER_PATHS.replicationSocket,
    type: "http",
    resources: [{ names: ["replication"], compress: false }],
} as const;

/** One worker's own config file (read after homeserver.yaml and secrets.yaml). */
export function renderWorkerConfig(w: Worker, opts: { metricsPort?: number } = {}): string {
    const listeners = [
        ...(w.port !== undefined
            ? [
                  {
                      type: "http",
                      port: w.port,
                      bind_addresses: [SYNAPSE_LISTEN.address],
                      tls: false,
                      x_forwarded: true,
                      resources: [{ names: RESOURCES[w.kind], compress: false }],
                  },
              ]
            : []),
        // With matrix:monitoring: Prometheus scrapes each process on a loopback port of its own.
        ...(opts.metricsPort !== undefined
            ? [{ type: "metrics", port: opts.metricsPort, bind_addresses: [SYNAPSE_LISTEN.address] }]
            : []),
    ];
    const config: Record<string, unknown> = {
        worker_app: w.app,
        worker_name: w.name,
        worker_log_config: SYNAPSE_PATHS.logConfig,
        ...(listeners.length > 0 ? { worker_listeners: listeners } : {}),
    };
    return "# Managed by matrix-pulumi; edits are overwritten.\n" + stringify(config, { lineWidth: 0 });
}

export function workerConfigPath(name: string): string {
    return `${WORKER_PATHS.workersDir}/${name}.yaml`;
}

/** One template unit for every worker; `%i` is the worker's name. Hardened like the main unit. */
export function renderWorkerUnit(): string {
    const p = SYNAPSE_PATHS;
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        "Description=Synapse worker %i",
        `After=network-online.target ${SYNAPSE_SERVICE}.service ${REDIS_SERVICE}.service`,
        `Requires=${REDIS_SERVICE}.service`,
        `PartOf=${SYNAPSE_TARGET}`,
        "",
        "[Service]",
        ...synapseServiceLines(
            `${p.venv}/bin/python -m synapse.app.generic_worker --config-path=${p.homeserverConfig} --config-path=${p.secretsConfig} --config-path=${WORKER_PATHS.workersDir}/%i.yaml`,
        ),
        "Restart=on-failure",
        "RestartSec=3",
        "SyslogIdentifier=matrix-synapse-%i",
        ...synapseUnitHardening(),
        `ReadWritePaths=${p.dataDir}`,
        "",
        "[Install]",
        `WantedBy=${SYNAPSE_TARGET}`,
        "",
    ].join("\n");
}

/** `systemctl start matrix-synapse.target` starts Synapse, its Redis and every enabled worker. */
export function renderSynapseTarget(): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        "Description=Synapse Matrix homeserver with its workers",
        `Wants=${SYNAPSE_SERVICE}.service ${REDIS_SERVICE}.service`,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

/**
 * Synapse's own Redis (the distribution's redis-server): a UNIX socket only Synapse's user can
 * open, no TCP port, nothing written to disk (Synapse uses it for pub/sub and a shared cache).
 */
export function renderRedisConfig(): string {
    return [
        "# Managed by matrix-pulumi.",
        "port 0",
        `unixsocket ${WORKER_PATHS.redisSocket}`,
        "unixsocketperm 600",
        'save ""',
        "appendonly no",
        `dir ${SYNAPSE_PATHS.dataDir}`,
        "supervised systemd",
        "daemonize no",
        'logfile ""',
        "loglevel notice",
        "maxmemory 256mb",
        "maxmemory-policy allkeys-lru",
        "",
    ].join("\n");
}

export function renderRedisUnit(): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        "Description=Redis for Synapse's workers",
        `PartOf=${SYNAPSE_TARGET}`,
        "",
        "[Service]",
        "Type=notify",
        `ExecStart=/usr/bin/redis-server ${WORKER_PATHS.redisConfig}`,
        `User=${SYNAPSE_USER}`,
        `Group=${SYNAPSE_USER}`,
        "RuntimeDirectory=matrix-synapse-redis",
        "RuntimeDirectoryMode=0750",
        "Restart=on-failure",
        "RestartSec=3",
        "SyslogIdentifier=matrix-synapse-redis",
        ...synapseUnitHardening(),
        "",
        "[Install]",
        `WantedBy=${SYNAPSE_TARGET}`,
        "",
    ].join("\n");
}

export const WORKER_FILE_MODES = {
    config: { mode: "0640", owner: "root", group: SYNAPSE_USER },
    unit: { mode: "0644", owner: "root", group: "root" },
} as const;

/** Start (or restart, when its files changed) Synapse's Redis; enable the target. */
export function renderRedisScript(s: { revision: string }, opts: { user?: string } = {}): string {
    const stamp = `${WORKER_PATHS.stampDir}/redis.revision`;
    const revision = sha256(s.revision);
    return script(
        [
            `# revision ${revision}`,
            `install -d -m 0755 -o root -g root ${shq(WORKER_PATHS.stampDir)}`,
            "systemctl daemon-reload",
            `systemctl enable ${REDIS_SERVICE} ${SYNAPSE_TARGET} >/dev/null 2>&1`,
            ...restartOnRevision(REDIS_SERVICE, stamp, revision, "redis"),
            `runuser -u ${SYNAPSE_USER} -- redis-cli -s ${shq(WORKER_PATHS.redisSocket)} ping | grep -qx PONG`,
        ],
        opts,
    );
}

/** On destroy or going back to no workers: Redis stops; the target goes with the last worker. */
export function renderRedisDeleteScript(opts: { user?: string } = {}): string {
    return script(
        [
            `systemctl disable --now ${REDIS_SERVICE} ${SYNAPSE_TARGET} 2>/dev/null || true`,
            `rm -f ${shq(`${WORKER_PATHS.stampDir}/redis.revision`)}`,
        ],
        opts,
    );
}

/**
 * Bring the workers to the layout: each one restarted only when its revision (the shared files,
 * its own file, the version) differs from the one it runs; HTTP workers waited on at /health;
 * workers no longer in the layout stopped and disabled.
 */
export function renderWorkersScript(
    s: { workers: { name: string; port?: number; revision: string }[]; healthTimeoutSeconds: number },
    opts: { user?: string } = {},
): string {
    const names = s.workers.map((w) => w.name);
    return script(
        [
            `install -d -m 0755 -o root -g root ${shq(WORKER_PATHS.stampDir)}`,
            "systemctl daemon-reload",
            // Workers this layout does not have (running, or enabled): stopped, disabled, forgotten.
            `keep=${shq(` ${names.join(" ")} `)}`,
            "shopt -s nullglob",
            `for unit in $(systemctl list-units --all --plain --no-legend ${shq(`${WORKER_SERVICE}@*.service`)} | awk '{print $1}') /etc/systemd/system/${SYNAPSE_TARGET}.wants/${WORKER_SERVICE}@*.service; do`,
            "  unit=${unit##*/}; name=${unit#*@}; name=${name%.service}",
            '  case "$keep" in *" $name "*) continue ;; esac',
            `  systemctl disable --now "$unit" >/dev/null 2>&1 || true`,
            `  rm -f ${shq(WORKER_PATHS.stampDir)}/"$name".revision`,
            '  echo "worker $name stopped"',
            "done",
            ...s.workers.flatMap((w) => {
                const unit = `${WORKER_SERVICE}@${w.name}.service`;
                const stamp = `${WORKER_PATHS.stampDir}/${w.name}.revision`;
                const health = w.port !== undefined ? `http://${SYNAPSE_LISTEN.address}:${w.port}/health` : undefined;
                return [
                    `# ${w.name} revision ${w.revision}`,
                    `systemctl enable ${shq(unit)} >/dev/null 2>&1`,
                    `if [ "$(cat ${shq(stamp)} 2>/dev/null || true)" != ${shq(w.revision)} ] || ! systemctl is-active --quiet ${shq(unit)}; then`,
                    `  rm -f ${shq(stamp)}`,
                    // Type=notify: restart returns once the worker says it is ready (or failed).
                    `  if ! systemctl restart ${shq(unit)}; then journalctl -u ${shq(unit)} -n 30 --no-pager >&2; exit 1; fi`,
                    ...(health
                        ? untilHealthy(health, s.healthTimeoutSeconds, [
                              `echo "worker ${w.name} did not answer ${health}" >&2`,
                              `journalctl -u ${shq(unit)} -n 30 --no-pager >&2`,
                          ]).map((l) => `  ${l}`)
                        : []),
                    `  printf '%s\\n' ${shq(w.revision)} > ${shq(stamp)}`,
                    `  echo "worker ${w.name} (re)started"`,
                    "fi",
                ];
            }),
            // Everything it wants is running now: the target is reached without starting anything.
            `systemctl start ${SYNAPSE_TARGET}`,
            `echo "workers: ${names.length} running"`,
        ],
        opts,
    );
}

/** On destroy or going back to no workers: every worker stops and is disabled. */
export function renderWorkersDeleteScript(opts: { user?: string } = {}): string {
    return script(
        [
            `for unit in $(systemctl list-units --all --plain --no-legend ${shq(`${WORKER_SERVICE}@*.service`)} | awk '{print $1}'); do`,
            '  systemctl disable --now "$unit" >/dev/null 2>&1 || true',
            "done",
            `rm -f /etc/systemd/system/${SYNAPSE_TARGET}.wants/${WORKER_SERVICE}@*.service`,
            `rm -f ${shq(WORKER_PATHS.stampDir)}/*.revision`,
            'echo "workers stopped"',
        ],
        opts,
    );
}

// ---- nginx: which process serves which path ----

/** Synapse's docs/workers.md lists, by the group of workers nginx sends them to. */
export const WORKER_ROUTES = {
    sync: [
        "^/_matrix/client/(r0|v3)/sync$",
        "^/_matrix/client/(api/v1|r0|v3)/events$",
        "^/_matrix/client/(api/v1|r0|v3)/initialSync$",
        "^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
        // Simplified sliding sync (MSC4186), served by generic workers too.
        "^/_matrix/client/unstable/org.matrix.simplified_msc3575/sync$",
    ],
    /** Inbound federation transactions: by source address, so one server's go to one process. */
    federationInbound: ["^/_matrix/federation/v1/send/"],
    client: [
        "^/_matrix/federation/v1/version$",
        "^/_matrix/federation/v1/event/",
        "^/_matrix/federation/v1/state/",
        "^/_matrix/federation/v1/state_ids/",
        "^/_matrix/federation/v1/backfill/",
        "^/_matrix/federation/v1/get_missing_events/",
        "^/_matrix/federation/v1/publicRooms",
        "^/_matrix/federation/v1/query/",
        "^/_matrix/federation/v1/make_join/",
        "^/_matrix/federation/v1/make_leave/",
        "^/_matrix/federation/(v1|v2)/send_join/",
        "^/_matrix/federation/(v1|v2)/send_leave/",
        "^/_matrix/federation/v1/make_knock/",
        "^/_matrix/federation/v1/send_knock/",
        "^/_matrix/federation/(v1|v2)/invite/",
        "^/_matrix/federation/v1/event_auth/",
        "^/_matrix/federation/v1/timestamp_to_event/",
        "^/_matrix/federation/v1/exchange_third_party_invite/",
        "^/_matrix/federation/v1/user/devices/",
        "^/_matrix/key/v2/query",
        "^/_matrix/federation/v1/hierarchy/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$",
        "^/_matrix/client/v1/rooms/.*/hierarchy$",
        "^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
        "^/_matrix/client/v1/rooms/.*/threads$",
        "^/_matrix/client/(r0|v3|unstable)/account/3pid$",
        "^/_matrix/client/(r0|v3|unstable)/account/whoami$",
        "^/_matrix/client/(r0|v3|unstable)/account/deactivate$",
        "^/_matrix/client/(r0|v3)/delete_devices$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/devices(/|$)",
        "^/_matrix/client/versions$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/voip/turnServer$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
        "^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
        "^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/search$",
        "^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.*$",
        "^/_matrix/client/(r0|v3|unstable)/capabilities$",
        "^/_matrix/client/(r0|v3|unstable)/notifications$",
        "^/_matrix/client/(r0|v3|unstable)/keys/query$",
        "^/_matrix/client/(r0|v3|unstable)/keys/changes$",
        "^/_matrix/client/(r0|v3|unstable)/keys/claim$",
        "^/_matrix/client/(r0|v3|unstable)/room_keys/",
        "^/_matrix/client/(r0|v3|unstable)/keys/upload",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/keys/device_signing/upload$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/keys/signatures/upload$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/login$",
        "^/_matrix/client/(r0|v3|unstable)/register$",
        "^/_matrix/client/(r0|v3|unstable)/register/available$",
        "^/_matrix/client/v1/register/m.login.registration_token/validity$",
        "^/_matrix/client/(r0|v3|unstable)/password_policy$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/knock/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
        "^/_matrix/client/(r0|v3|unstable)/user_directory/search$",
    ],
    media: ["^/_matrix/media/", "^/_matrix/client/v1/media/", "^/_matrix/federation/v1/media/", "^/_synapse/media/"],
} as const;

/** nginx upstream names (the map below picks one per request). */
export const NGINX_UPSTREAMS = {
    main: "matrix_synapse_main",
    sync: "matrix_synapse_sync",
    client: "matrix_synapse_client",
    federationInbound: "matrix_synapse_federation_inbound",
    media: "matrix_synapse_media",
} as const;

/** Where nginx reaches each group: the main process, and the workers of a layout. */
export interface UpstreamLayout {
    /** host:port of the main process's listener. */
    main: string;
    sync: string[];
    client: string[];
    media: string[];
}

export function upstreamLayout(c: WorkerCounts): UpstreamLayout {
    const ports = (kind: WorkerKind) =>
        workerList(c)
            .filter((w) => w.kind === kind)
            .map((w) => `${SYNAPSE_LISTEN.address}:${w.port}`);
    return {
        main: `${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}`,
        sync: ports("sync"),
        client: ports("client"),
        media: ports("media"),
    };
}

function upstream(name: string, servers: string[], balance?: string): string[] {
    return block(`upstream ${name}`, [
        ...(balance ? [balance] : []),
        ...servers.map((s) => `server ${s};`),
        // Kept-alive connections: no new TCP connection per request.
        "keepalive 32;",
    ]);
}

/**
 * The upstreams and the path → upstream map (http level). /sync is pinned per user: the key is
 * the localpart Synapse writes into its access tokens (`syt_<base64 localpart>_…`), so all of a
 * user's devices reach the one worker whose caches hold that user; tokens of another shape fall
 * back to the whole token. Without workers everything goes to the main process.
 */
export function renderNginxUpstreams(l: UpstreamLayout): string {
    const routes: [readonly string[], string, string[]][] = [
        [WORKER_ROUTES.sync, NGINX_UPSTREAMS.sync, l.sync],
        [WORKER_ROUTES.media, NGINX_UPSTREAMS.media, l.media],
        [WORKER_ROUTES.federationInbound, NGINX_UPSTREAMS.federationInbound, l.client],
        [WORKER_ROUTES.client, NGINX_UPSTREAMS.client, l.client],
    ];
    const used = routes.filter(([, , servers]) => servers.length > 0);
    return [
        "# Managed by matrix-pulumi: which Synapse process serves which path (Synapse's docs/workers.md).",
        ...upstream(NGINX_UPSTREAMS.main, [l.main]),
        ...(l.sync.length > 0
            ? [
                  ...block("map $arg_access_token $matrix_sync_user_from_arg", [
                      "default $arg_access_token;",
                      '"~^syt_(?<matrix_arg_localpart>[^_]+)_" $matrix_arg_localpart;',
                  ]),
                  ...block("map $http_authorization $matrix_sync_user", [
                      "default $http_authorization;",
                      '"~^Bearer syt_(?<matrix_header_localpart>[^_]+)_" $matrix_header_localpart;',
                      '"" $matrix_sync_user_from_arg;',
                  ]),
                  ...upstream(NGINX_UPSTREAMS.sync, l.sync, "hash $matrix_sync_user consistent;"),
              ]
            : []),
        ...(l.client.length > 0
            ? [
                  ...upstream(NGINX_UPSTREAMS.client, l.client),
                  ...upstream(NGINX_UPSTREAMS.federationInbound, l.client, "hash $remote_addr consistent;"),
              ]
            : []),
        ...(l.media.length > 0 ? upstream(NGINX_UPSTREAMS.media, l.media) : []),
        // Regular expressions are tried in the order written; the first match wins.
        ...block(`map $uri ${NGINX_UPSTREAM_VARIABLE}`, [
            `default ${NGINX_UPSTREAMS.main};`,
            ...used.flatMap(([paths, name]) => paths.map((p) => `"~${p}" ${name};`)),
        ]),
        "",
    ].join("\n");
}
