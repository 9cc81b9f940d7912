// matrix:synapse: the homeserver, its workers and its media retention.
import { z } from "zod";
import { WORKER_PRESETS, type WorkerPreset } from "../render/workers";
import { DEFAULTS } from "./defaults";
import { bool, int } from "./fields";

const workerCount = (max: number, what: string) =>
    int(`expected a whole number of ${what} from 0 to ${max}`)
        .refine((n) => n >= 0 && n <= max, { error: `expected a whole number of ${what} from 0 to ${max}` })
        .default(0);

const BACKGROUND_ERROR =
    "expected 0 (background tasks on the main process) or 1 (on a worker of their own); Synapse runs them on exactly one process";

/** matrix:synapse.workers: a preset name, or counts per kind (docs/scaling.md). */
const workersSchema = z.preprocess(
    (v) => (typeof v === "string" && Object.hasOwn(WORKER_PRESETS, v) ? { ...WORKER_PRESETS[v as WorkerPreset] } : v),
    z.strictObject(
        {
            sync: workerCount(8, "/sync workers").meta({ description: "/sync workers (0–8)." }),
            client: workerCount(8, "client and federation reader workers").meta({
                description: "Client and federation reader workers (0–8).",
            }),
            federationSender: workerCount(4, "federation senders").meta({ description: "Federation senders (0–4)." }),
            // The first runs the media background jobs (media_instance_running_background_jobs).
            media: workerCount(4, "media workers").meta({ description: "Media workers (0–4)." }),
            background: int(BACKGROUND_ERROR)
                .refine((n) => n === 0 || n === 1, { error: BACKGROUND_ERROR })
                .default(0)
                .meta({ description: "1: background tasks on a worker of their own; 0: on the main process." }),
        },
        {
            error: `expected ${Object.keys(WORKER_PRESETS)
                .map((k) => `"${k}"`)
                .join(
                    " or ",
                )}, or counts such as {"sync": 2, "client": 1, "federationSender": 1, "media": 1, "background": 1}`,
        },
    ),
);

/** A lifetime as Synapse's parse_duration reads it, in days, weeks or years; or "forever". */
const LIFETIME_ERROR = 'expected "forever" or a lifetime such as "90d", "8w" or "1y" (days, weeks or years)';
const lifetime = z
    .string({ error: LIFETIME_ERROR })
    .regex(/^(forever|[1-9][0-9]{0,4}[dwy])$/, { error: LIFETIME_ERROR });

/** matrix:synapse.mediaRetention: how long media is kept after its last access (docs/operations.md). */
const mediaRetentionSchema = z.strictObject({
    local: lifetime.default(DEFAULTS.synapse.mediaRetention.local).meta({
        description:
            "How long media this server's users uploaded is kept after its last access: `forever`, or `<n>d`, `<n>w`, `<n>y`. Synapse's `media_retention.local_media_lifetime`.",
    }),
    remote: lifetime.default(DEFAULTS.synapse.mediaRetention.remote).meta({
        description: "The same for cached copies of other servers' media (fetched again when someone asks).",
    }),
});

export const synapseSchema = z.strictObject({
    version: z
        .string({ error: 'expected a matrix-synapse release as a string, such as "1.163.2"' })
        .regex(/^[0-9]+\.[0-9]+\.[0-9]+(rc[0-9]+)?$/, {
            error: 'expected a matrix-synapse release such as "1.163.2" (no leading "v")',
        })
        .default(DEFAULTS.synapse.version)
        .meta({ description: "matrix-synapse release from PyPI." }),
    enableRegistration: bool()
        .default(DEFAULTS.synapse.enableRegistration)
        .meta({ description: "Open registration (docs/decisions.md)." }),
    maxUploadSize: z
        .string({ error: 'expected a size such as "50M" (bytes, or a number followed by K or M)' })
        // Sizes both Synapse (`parse_size`: bytes, K or M) and nginx (`client_max_body_size`) read alike.
        .regex(/^[1-9][0-9]{0,9}[KM]?$/, {
            error: 'expected a size such as "50M" (bytes, or a number followed by K or M; no G, no spaces)',
        })
        .default(DEFAULTS.synapse.maxUploadSize)
        .meta({
            description:
                "Synapse's `max_upload_size` and nginx's `client_max_body_size`: bytes, or a number with `K` or `M`.",
        }),
    reportStats: bool()
        .default(DEFAULTS.synapse.reportStats)
        .meta({ description: "Report anonymous statistics to matrix.org." }),
    extraConfig: z
        .record(z.string(), z.unknown(), { error: "expected a map of homeserver.yaml keys" })
        .default({})
        .meta({
            description: "More `homeserver.yaml` keys, merged at top level; keys the program manages are refused.",
        }),
    wheelhouse: z.string().min(1).optional().meta({
        description:
            "A `pip --no-index --find-links` source for hosts that cannot use PyPI: a folder on the host, or a URL (a plain `http://` one is passed to pip as a trusted host; prefer https or a folder). How to build one: docs/operations.md, Hosts without PyPI.",
        defaultText: "none (PyPI)",
    }),
    healthTimeoutSeconds: int("expected a whole number of seconds from 10 to 3600")
        .refine((t) => t >= 10 && t <= 3600, { error: "expected a whole number of seconds from 10 to 3600" })
        .default(DEFAULTS.synapse.healthTimeoutSeconds)
        .meta({ description: "How long to wait for `/health` after a restart (10–3600)." }),
    workers: workersSchema.default({ ...WORKER_PRESETS[DEFAULTS.synapse.workers] }).meta({
        description:
            'Synapse\'s worker processes: a preset, `none` or `small`, or counts per kind such as `{"sync": 2, "client": 1, "federationSender": 1, "media": 1, "background": 1}` (docs/scaling.md).',
        defaultText: `\`${DEFAULTS.synapse.workers}\``,
    }),
    mediaRetention: mediaRetentionSchema.prefault({}),
});
