// One Matrix homeserver: the typed configuration in, every component of the chain created and
// wired, the outputs an operator needs out. index.ts is this component over the stack's config;
// another Pulumi program that creates the server itself (a cloud VM, a DNS zone) composes it the
// same way, with the server's address as an Output of its own resources (examples/).
//
// DNS → certificates; database → Synapse → proxy → Element.
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import {
    DATABASE_HOST_CONFIG_KEYS,
    firewallPorts,
    firewallUdpPorts,
    HOST_CONFIG_KEYS,
    parseHomeserverConfig,
    preflightSettings,
    publicHostnames,
    type ProvidedSecret,
    type StackConfig,
    type stackSchema,
} from "../config";
import { checkDns, CLOUDFLARE_API, DnsCheckError, stackOwner } from "../lib/cloudflare";
import { mapInput, type PlainOrOutput } from "../lib/order";
import { preflight, PreflightError, type PreflightResult, type PreflightSettings } from "../lib/preflight";
import type { Host } from "../lib/remote";
import { sshAddress } from "../lib/ssh";
import { registerAdminCommand } from "../render/outputs";
import { databaseHostPackages, hostPackages } from "../render/packages";
import type { PostgresCluster } from "../render/postgres";
import { rtcUrls } from "../render/rtc";
import { turnUris } from "../render/turn";
import { wellKnownClient, wellKnownServer, wellKnownSupport } from "../render/wellknown";
import { hasWorkers } from "../render/workers";
import { DnsRecords } from "./dnsRecords";
import { ElementWeb } from "./elementWeb";
import { HostFirewall } from "./hostFirewall";
import { HostPackages } from "./hostPackages";
import { MatrixAuth } from "./matrixAuth";
import { MatrixRtc } from "./matrixRtc";
import { MatrixUsers } from "./matrixUsers";
import { Monitoring } from "./monitoring";
import { NginxProxy } from "./nginxProxy";
import { PostgresDatabase } from "./postgresDatabase";
import { SynapseBackups } from "./synapseBackups";
import { SynapseServer } from "./synapseServer";
import { TurnServer } from "./turnServer";

type Settings = z.input<typeof stackSchema>;

/** A host reached over SSH (docs/configuration.md: `machine`); its addresses may be Outputs. */
export type MachineArgs = Omit<Settings["machine"], "ipv4" | "ipv6"> & {
    /** Its IPv4 address: the SSH target unless `sshHost` is set (and, for the homeserver, the A records' value). */
    ipv4: PlainOrOutput<string>;
    /** Its IPv6 address (the homeserver's: AAAA records, nginx on IPv6). */
    ipv6?: PlainOrOutput<string>;
};

/**
 * The typed configuration: every key of docs/configuration.md without the `matrix:` prefix, with
 * the same defaults and checks. The hosts' addresses and the secrets may be Outputs.
 */
export interface MatrixHomeserverArgs extends Omit<Settings, "machine" | "database" | "sshPrivateKey" | "secrets"> {
    machine: MachineArgs;
    /** PostgreSQL on a host of its own (docs/scaling.md). Default: on `machine`. */
    database?: { machine: MachineArgs; synapseAddress?: PlainOrOutput<string> };
    /** The SSH private key every host accepts (kept secret). */
    sshPrivateKey: pulumi.Input<string>;
    /** Secrets to use instead of generated ones, and the SMTP password (docs/configuration.md). */
    secrets?: Partial<Record<ProvidedSecret | "smtpPassword", pulumi.Input<string>>>;
}

export interface MatrixHomeserverOptions extends pulumi.ComponentResourceOptions {
    /**
     * The stack program's own instance (index.ts): children keep the bare role names ("synapse",
     * "nginx") and alias the stack's root, where stacks deployed before this component existed
     * have them; managed files read the SSH connection back from the stack's `matrix:` keys.
     * Default: false, children named `<name>-<role>`.
     */
    stackProgram?: boolean;
}

// Stand-ins that pass the schema while an address is an Output; the real ones are checked once known.
const PENDING = { ipv4: "192.0.2.1", ipv6: "2001:db8::1", database: "192.0.2.2", synapse: "192.0.2.3" };
const PENDING_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\n(an Output)\n-----END OPENSSH PRIVATE KEY-----";
const plain = (v: unknown): v is string => typeof v === "string";

/** The stand-in while `v` is an Output, so the rest of the config validates now. */
const known = (v: PlainOrOutput<string> | undefined, pending: string) =>
    v === undefined ? undefined : plain(v) ? v : pending;

/** The hosts' addresses and the SSH key, as given: each plain or an Output. */
type Given = [
    ipv4: PlainOrOutput<string>,
    ipv6: PlainOrOutput<string> | undefined,
    databaseIpv4: PlainOrOutput<string> | undefined,
    databaseIpv6: PlainOrOutput<string> | undefined,
    synapseAddress: PlainOrOutput<string> | undefined,
    sshPrivateKey: pulumi.Input<string>,
];

/**
 * The args as the schema reads them, with `given` (the addresses and the key) in their places:
 * stand-ins for those still Outputs. Validated once with the stand-ins before any child exists,
 * and again with the real values once they are known.
 */
function settings(args: MatrixHomeserverArgs, given: Given): Record<string, unknown> {
    const [ipv4, ipv6, databaseIpv4, databaseIpv6, synapseAddress, key] = given;
    return {
        ...args,
        machine: { ...args.machine, ipv4: known(ipv4, PENDING.ipv4), ipv6: known(ipv6, PENDING.ipv6) },
        database: args.database && {
            ...args.database,
            machine: {
                ...args.database.machine,
                ipv4: known(databaseIpv4, PENDING.database),
                ipv6: known(databaseIpv6, PENDING.ipv6),
            },
            synapseAddress: known(synapseAddress, PENDING.synapse),
        },
        sshPrivateKey: plain(key) ? key : PENDING_KEY,
        secrets: args.secrets && Object.fromEntries(Object.keys(args.secrets).map((k) => [k, "(given)"])),
    };
}

/**
 * Synapse, PostgreSQL, nginx with ACME certificates and Element Web on one server (and,
 * configured so, DNS records, a database host, workers, calls, monitoring, backups, users).
 */
export class MatrixHomeserver extends pulumi.ComponentResource {
    public readonly serverName: string;
    public readonly homeserverUrl: pulumi.Output<string>;
    public readonly elementUrl: pulumi.Output<string>;
    public readonly delegation: StackConfig["delegation"];
    /** With delegation "external", publish these at https://<domain>/.well-known/matrix/{server,client,support}. */
    public readonly wellKnown: Record<string, string>;
    /** Records to create by hand when `dns` is not set: every name that gets a certificate. */
    public readonly dnsRecordsToCreate: PlainOrOutput<string[]>;
    public readonly registrationSharedSecret: pulumi.Output<string>;
    /** Initial passwords of `users` (secret); accounts that already existed kept theirs. */
    public readonly userPasswords: pulumi.Output<Record<string, string>>;
    /** Inbound TCP ports the host firewall lets in (empty when `firewall.enabled` is false). */
    public readonly openTcpPorts: pulumi.Output<number[]> | number[];
    /** Inbound UDP ports and ranges the host firewall lets in (calls; open these at your provider too). */
    public readonly openUdpPorts: pulumi.Output<string[]> | string[];
    public readonly firstAdminCommand: pulumi.Output<string>;

    constructor(name: string, args: MatrixHomeserverArgs, opts: MatrixHomeserverOptions = {}) {
        const { stackProgram, ...componentOpts } = opts;
        super("matrix:index:MatrixHomeserver", name, {}, componentOpts);
        // Validation first: the same schema and rules as a stack's config, before any child exists.
        const given: Given = [
            args.machine.ipv4,
            args.machine.ipv6,
            args.database?.machine.ipv4,
            args.database?.machine.ipv6,
            args.database?.synapseAddress,
            args.sshPrivateKey,
        ];
        const cfg = parseHomeserverConfig(settings(args, given));
        const child = (role: string) => (stackProgram ? role : `${name}-${role}`);
        const childOpts: pulumi.ComponentResourceOptions = {
            parent: this,
            ...(stackProgram ? { aliases: [{ parent: pulumi.rootStackResource }] } : {}),
        };
        const names = publicHostnames(cfg);
        const owner = stackOwner();
        // Cloudflare read as the provider will reach it, before anything is registered: the token,
        // the zone and strangers' records at the stack's names (lib/cloudflare.ts).
        if (cfg.dns) {
            const token = pulumi.runtime.getConfig("cloudflare:apiToken") ?? process.env.CLOUDFLARE_API_TOKEN;
            const baseUrl =
                pulumi.runtime.getConfig("cloudflare:baseUrl") ?? process.env.CLOUDFLARE_BASE_URL ?? CLOUDFLARE_API;
            if (token) {
                const problems = checkDns(
                    { baseUrl, token },
                    { zoneId: cfg.dns.zoneId, names: Object.values(names.dnsRecords), owner },
                );
                if (problems.length > 0) throw new DnsCheckError(problems);
            } else {
                void pulumi.log.warn(
                    "matrix:dns: no cloudflare:apiToken or CLOUDFLARE_API_TOKEN here, so the zone and its records were not checked before the provider runs",
                );
            }
        }
        const provided = (s: ProvidedSecret) => args.secrets?.[s];
        const ipv4 = args.machine.ipv4;
        const ipv6 = args.machine.ipv6 !== undefined;
        const privateKey = pulumi.secret(args.sshPrivateKey);

        const sshHost = (m: MachineArgs, settings: StackConfig["machine"], config: Host["config"]): Host => ({
            connection: {
                host: sshAddress({ ...settings, ipv4: m.ipv4 }),
                port: settings.sshPort,
                user: settings.sshUser,
                privateKey,
                hostKey: settings.sshHostKey,
                perDialTimeout: 15,
                dialErrorLimit: 20,
            },
            user: settings.sshUser,
            config: stackProgram ? config : undefined,
        });

        // The preflight: each host read as found, before anything is registered (in a preview too);
        // it refuses with every problem at once, and picks the PostgreSQL cluster and its real port.
        const check = (address: string, key: string, m: StackConfig["machine"], s: PreflightSettings) =>
            preflight(
                {
                    host: sshAddress({ ...m, ipv4: address }),
                    port: m.sshPort,
                    user: m.sshUser,
                    privateKey: key,
                    hostKey: m.sshHostKey,
                },
                { ...s, dryRun: pulumi.runtime.isDryRun() },
                (line, severity) => void (severity === "warning" ? pulumi.log.warn(line) : pulumi.log.info(line)),
            );
        const checkAll = (address: string, databaseAddress: string | undefined, key: string): PostgresCluster => {
            const mainCheck = check(address, key, cfg.machine, preflightSettings(cfg, "homeserver"));
            const databaseCheck: PreflightResult | undefined =
                cfg.database && databaseAddress
                    ? check(databaseAddress, key, cfg.database.machine, preflightSettings(cfg, "database"))
                    : undefined;
            const hostProblems = [...mainCheck.problems, ...(databaseCheck?.problems ?? [])];
            if (hostProblems.length > 0) throw new PreflightError(hostProblems);
            return (databaseCheck ?? mainCheck).cluster!;
        };
        // Known now (a stack's config): checked before any child exists. Given by other resources:
        // checked once they are known (the same schema and rules again, now with the real values),
        // and every step on the hosts waits for it.
        const deferred = given.some((v) => v !== undefined && !plain(v));
        const postgresCluster: PlainOrOutput<PostgresCluster> = !deferred
            ? checkAll(ipv4 as string, args.database?.machine.ipv4 as string | undefined, args.sshPrivateKey as string)
            : pulumi.unsecret(
                  pulumi.all(given).apply((values) => {
                      parseHomeserverConfig(settings(args, values));
                      const [v4, , db4, , , key] = values;
                      return checkAll(v4, db4, key);
                  }),
              );
        const gate = deferred ? (postgresCluster as pulumi.Output<PostgresCluster>) : undefined;

        const machine = sshHost(args.machine, cfg.machine, HOST_CONFIG_KEYS);
        // One apt run for every package the host needs; every other step waits for it.
        const packages = new HostPackages(
            child("packages"),
            {
                host: machine,
                packages: hostPackages({
                    firewall: cfg.firewall.enabled,
                    redis: hasWorkers(cfg.synapse.workers),
                    remoteDatabase: cfg.database !== undefined,
                    monitoring: cfg.monitoring.enabled,
                    turn: cfg.turn !== undefined,
                }),
                waitFor: gate,
            },
            childOpts,
        );
        const host: Host = { ...machine, prerequisites: [packages.installed] };

        const dns = cfg.dns
            ? new DnsRecords(
                  child("dns"),
                  {
                      zoneId: cfg.dns.zoneId,
                      hostnames: names.dnsRecords,
                      ipv4,
                      ipv6: args.machine.ipv6,
                      ttl: cfg.dns.ttl,
                      owner,
                  },
                  childOpts,
              )
            : undefined;

        const firewall = cfg.firewall.enabled
            ? new HostFirewall(
                  child("firewall"),
                  { host, tcpPorts: firewallPorts(cfg), udpPorts: firewallUdpPorts(cfg) },
                  childOpts,
              )
            : undefined;
        // What Element Call is told (well-known, Synapse's transports): known from the config alone.
        const rtcService = cfg.rtc ? { serviceUrl: rtcUrls(cfg.homeserverHost).serviceUrl } : undefined;

        // PostgreSQL here, or on a host of its own (database) that admits Synapse's address alone.
        const databaseHost =
            cfg.database && args.database
                ? (() => {
                      const dbMachine = sshHost(args.database.machine, cfg.database.machine, DATABASE_HOST_CONFIG_KEYS);
                      const dbPackages = new HostPackages(
                          child("database-packages"),
                          {
                              host: dbMachine,
                              packages: databaseHostPackages({ firewall: cfg.firewall.enabled }),
                              waitFor: gate,
                          },
                          childOpts,
                      );
                      return { ...dbMachine, prerequisites: [dbPackages.installed] };
                  })()
                : undefined;
        const synapseAddress = args.database?.synapseAddress ?? ipv4;
        const databaseFirewall =
            databaseHost && cfg.database && cfg.firewall.enabled
                ? new HostFirewall(
                      child("database-firewall"),
                      {
                          host: databaseHost,
                          tcpPorts: [cfg.database.machine.sshPort],
                          sourcedTcpPorts: mapInput(postgresCluster, (c) =>
                              mapInput(synapseAddress, (from) => [{ port: c.port, from }]),
                          ),
                      },
                      childOpts,
                  )
                : undefined;

        const database = new PostgresDatabase(
            child("postgres"),
            {
                // On its own host, nothing listens beyond loopback before the firewall admits Synapse's address alone.
                host: databaseHost
                    ? {
                          ...databaseHost,
                          prerequisites: [
                              ...(databaseHost.prerequisites ?? []),
                              ...(databaseFirewall ? [databaseFirewall] : []),
                          ],
                      }
                    : host,
                cluster: postgresCluster,
                database: cfg.postgres.database,
                user: cfg.postgres.user,
                password: provided("databasePassword"),
                purgeOnDestroy: cfg.purgeOnDestroy,
                network: args.database
                    ? mapInput(args.database.machine.ipv4, (listenAddress) =>
                          mapInput(synapseAddress, (clientAddress) => ({ listenAddress, clientAddress })),
                      )
                    : undefined,
            },
            childOpts,
        );

        // MAS before Synapse's steps: on the first up with matrix:auth, syn2mas reads Synapse's config
        // and accounts as they were, and Synapse restarts with MAS in charge after it.
        const auth = cfg.auth?.enabled
            ? new MatrixAuth(
                  child("auth"),
                  {
                      host,
                      serverName: cfg.domain,
                      homeserverHost: cfg.homeserverHost,
                      release: cfg.auth.mas,
                      cluster: postgresCluster,
                      registration: cfg.synapse.enableRegistration,
                      registrationTokenRequired: cfg.auth.registrationTokenRequired,
                      purgeOnDestroy: cfg.purgeOnDestroy,
                  },
                  childOpts,
              )
            : undefined;
        const afterAuth: Host = auth ? { ...host, prerequisites: [...(host.prerequisites ?? []), auth.service] } : host;

        const synapse = new SynapseServer(
            child("synapse"),
            {
                host: afterAuth,
                serverName: cfg.domain,
                homeserverHost: cfg.homeserverHost,
                version: cfg.synapse.version,
                wheelhouse: cfg.synapse.wheelhouse,
                enableRegistration: cfg.synapse.enableRegistration,
                maxUploadSize: cfg.synapse.maxUploadSize,
                reportStats: cfg.synapse.reportStats,
                extraConfig: cfg.synapse.extraConfig,
                healthTimeoutSeconds: cfg.synapse.healthTimeoutSeconds,
                workers: cfg.synapse.workers,
                mediaRetention: cfg.synapse.mediaRetention,
                metrics: cfg.monitoring.enabled,
                rtc: rtcService,
                turn: cfg.turn && {
                    uris: turnUris({ realm: cfg.homeserverHost, port: cfg.turn.port, tlsPort: cfg.turn.tlsPort }),
                    userLifetime: cfg.turn.userLifetime,
                },
                federation: cfg.federation,
                auth: auth && { sharedSecret: auth.synapseSharedSecret, metadataRevision: auth.metadataRevision },
                purgeOnDestroy: cfg.purgeOnDestroy,
                secrets: {
                    registrationSharedSecret: provided("registrationSharedSecret"),
                    macaroonSecretKey: provided("macaroonSecretKey"),
                    formSecret: provided("formSecret"),
                },
                database: {
                    name: database.databaseName,
                    user: database.userName,
                    password: database.password,
                    address: database.address,
                    caCertificate: database.caCertificate,
                },
            },
            childOpts,
        );

        const backups = new SynapseBackups(
            child("backup"),
            { host, schedule: cfg.backup.schedule, retention: cfg.backup.retention, synapseUrl: synapse.localUrl },
            childOpts,
        );

        const users =
            cfg.users.length > 0
                ? new MatrixUsers(
                      child("users"),
                      { host: afterAuth, users: cfg.users, synapseUrl: synapse.localUrl, auth: auth !== undefined },
                      childOpts,
                  )
                : undefined;

        // The SFU and its authorisation service need nothing of Synapse's to start; nginx announces
        // them (well-known, /livekit/) once both answer.
        const rtc = cfg.rtc
            ? new MatrixRtc(
                  child("rtc"),
                  {
                      host,
                      serverName: cfg.domain,
                      homeserverHost: cfg.homeserverHost,
                      nodeIp: ipv4,
                      livekit: cfg.rtc.livekit,
                      jwtService: cfg.rtc.jwtService,
                      udpPort: cfg.rtc.udpPort,
                      tcpPort: cfg.rtc.tcpPort,
                      turnUdpPort: cfg.rtc.turnUdpPort,
                      fullAccessHomeservers: cfg.rtc.fullAccessHomeservers,
                      caBundle: cfg.federation.caBundle,
                  },
                  childOpts,
              )
            : undefined;

        const proxy = new NginxProxy(
            child("nginx"),
            {
                host,
                domain: cfg.domain,
                homeserverHost: cfg.homeserverHost,
                delegation: cfg.delegation,
                // A record's output where this stack manages DNS: no certificate before its name resolves.
                certificateHosts: {
                    homeserver: dns?.hostnames.homeserver ?? names.certificates.homeserver,
                    element: dns?.hostnames.element ?? names.certificates.element,
                    apex:
                        names.certificates.apex !== undefined
                            ? (dns?.hostnames.apex ?? names.certificates.apex)
                            : undefined,
                },
                ipv6,
                maxUploadSize: cfg.synapse.maxUploadSize,
                support: cfg.support,
                rtc: rtc?.serviceUrl.apply((serviceUrl) => ({ serviceUrl })),
                auth: auth?.ready,
                upstreams: synapse.upstreams,
                acme: cfg.acme,
            },
            childOpts,
        );

        // coturn serves the homeserver host's certificate over TLS: it waits for it.
        if (cfg.turn && synapse.turnSharedSecret) {
            new TurnServer(
                child("turn"),
                {
                    host,
                    realm: cfg.homeserverHost,
                    externalIp: ipv4,
                    port: cfg.turn.port,
                    tlsPort: cfg.turn.tlsPort,
                    relayPorts: cfg.turn.relayPorts,
                    sharedSecret: synapse.turnSharedSecret,
                    certificateHost: proxy.certificates.homeserver,
                },
                childOpts,
            );
        }

        if (cfg.monitoring.enabled) {
            const email = cfg.monitoring.email;
            new Monitoring(
                child("monitoring"),
                {
                    host,
                    workers: cfg.synapse.workers,
                    postgresCluster: cfg.database === undefined ? postgresCluster : undefined,
                    scrapeInterval: cfg.monitoring.scrapeInterval,
                    retention: cfg.monitoring.retention,
                    backupSchedule: cfg.backup.schedule,
                    email: email && { ...email, password: email.username ? args.secrets?.smtpPassword : undefined },
                    // Synapse's metrics listeners, PostgreSQL for its exporter's role, the certificates.
                    dependsOn: [synapse, database, backups, proxy],
                },
                childOpts,
            );
        }

        // Its vhost waits for its certificate and the Matrix vhosts (through elementHost); its
        // download waits for nothing.
        const element = new ElementWeb(
            child("element"),
            {
                host,
                elementHost: proxy.certificates.element,
                serverName: cfg.domain,
                homeserverHost: cfg.homeserverHost,
                version: cfg.element.version,
                url: cfg.element.url,
                sha256: cfg.element.sha256,
                brand: cfg.element.brand,
                disableCustomUrls: cfg.element.disableCustomUrls,
                registration: cfg.synapse.enableRegistration,
                ipv6,
                purgeOnDestroy: cfg.purgeOnDestroy,
            },
            childOpts,
        );

        this.serverName = cfg.domain;
        this.homeserverUrl = proxy.homeserverUrl;
        this.elementUrl = element.url;
        this.delegation = cfg.delegation;
        this.wellKnown = {
            server: JSON.stringify(wellKnownServer(cfg.homeserverHost)),
            client: JSON.stringify(wellKnownClient(cfg.homeserverHost, rtcService)),
            ...(cfg.support ? { support: JSON.stringify(wellKnownSupport(cfg.support)) } : {}),
        };
        this.dnsRecordsToCreate = dns
            ? []
            : mapInput(ipv4, (v4) =>
                  mapInput(args.machine.ipv6 ?? "", (v6) =>
                      Object.values(names.certificates).flatMap((n) => [
                          `${n} A ${v4}`,
                          ...(v6 ? [`${n} AAAA ${v6}`] : []),
                      ]),
                  ),
              );
        this.registrationSharedSecret = synapse.registrationSharedSecret;
        this.userPasswords = users ? users.passwords : pulumi.secret<Record<string, string>>({});
        this.openTcpPorts = firewall ? firewall.tcpPorts : [];
        this.openUdpPorts = firewall ? firewall.udpPorts : [];
        this.firstAdminCommand = pulumi.output(
            mapInput(ipv4, (v4) => registerAdminCommand({ ...cfg.machine, ipv4: v4 })),
        );
        this.registerOutputs({
            homeserverUrl: this.homeserverUrl,
            elementUrl: this.elementUrl,
            firstAdminCommand: this.firstAdminCommand,
        });
    }
}
