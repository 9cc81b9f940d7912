// Wiring only: validated config in, five components chained by their outputs, stack outputs out.
// DNS → certificates; database → Synapse → proxy → Element.
import * as pulumi from "@pulumi/pulumi";
import { DnsRecords } from "./components/dnsRecords";
import { ElementWeb } from "./components/elementWeb";
import { HostFirewall } from "./components/hostFirewall";
import { HostPackages } from "./components/hostPackages";
import { MatrixUsers } from "./components/matrixUsers";
import { MatrixRtc } from "./components/matrixRtc";
import { Monitoring } from "./components/monitoring";
import { NginxProxy } from "./components/nginxProxy";
import { PostgresDatabase } from "./components/postgresDatabase";
import { SynapseBackups } from "./components/synapseBackups";
import { SynapseServer } from "./components/synapseServer";
import { TurnServer } from "./components/turnServer";
import {
    DATABASE_HOST_CONFIG_KEYS,
    firewallPorts,
    firewallUdpPorts,
    HOST_CONFIG_KEYS,
    loadProvidedSecret,
    loadSmtpPassword,
    loadSshPrivateKey,
    loadStackConfig,
    preflightSettings,
    publicHostnames,
    type ProvidedSecret,
} from "./config";
import type { Host } from "./lib/remote";
import { registerAdminCommand } from "./render/outputs";
import { databaseHostPackages, hostPackages } from "./render/packages";
import { preflight, PreflightError, type PreflightResult, type PreflightSettings } from "./lib/preflight";
import { hasWorkers } from "./render/workers";
import { rtcUrls } from "./render/rtc";
import { turnUris } from "./render/turn";
import { wellKnownClient, wellKnownServer, wellKnownSupport } from "./render/wellknown";

const cfg = loadStackConfig(); // throws, naming every bad key, before any resource exists
const names = publicHostnames(cfg);
// Secrets the stack brings replace generated ones (no random provider needed for them).
const provided = (name: ProvidedSecret) => (cfg.providedSecrets[name] ? loadProvidedSecret(name) : undefined);
const ipv6 = cfg.machine.ipv6 !== undefined;

const sshHost = (m: typeof cfg.machine, config: Host["config"]): Host => ({
    connection: {
        host: m.ipv4,
        port: m.sshPort,
        user: m.sshUser,
        privateKey: loadSshPrivateKey(),
        hostKey: m.sshHostKey,
        perDialTimeout: 15,
        dialErrorLimit: 20,
    },
    user: m.sshUser,
    config,
});
// The preflight: each host read as found, before anything is registered (in a preview too); it
// refuses with every problem at once, and picks the PostgreSQL cluster and its real port.
const check = (m: typeof cfg.machine, s: PreflightSettings): PreflightResult =>
    preflight(
        {
            host: m.ipv4,
            port: m.sshPort,
            user: m.sshUser,
            privateKey: pulumi.runtime.getConfig("matrix:sshPrivateKey"),
            hostKey: m.sshHostKey,
        },
        { ...s, dryRun: pulumi.runtime.isDryRun() },
        (line, severity) => void (severity === "warning" ? pulumi.log.warn(line) : pulumi.log.info(line)),
    );
const mainCheck = check(cfg.machine, preflightSettings(cfg, "homeserver"));
const databaseCheck = cfg.database ? check(cfg.database.machine, preflightSettings(cfg, "database")) : undefined;
const hostProblems = [...mainCheck.problems, ...(databaseCheck?.problems ?? [])];
if (hostProblems.length > 0) throw new PreflightError(hostProblems);
const postgresCluster = (databaseCheck ?? mainCheck).cluster!;

const machine = sshHost(cfg.machine, HOST_CONFIG_KEYS);
// One apt run for every package the host needs; every other step waits for it.
const packages = new HostPackages("packages", {
    host: machine,
    packages: hostPackages({
        firewall: cfg.firewall.enabled,
        redis: hasWorkers(cfg.synapse.workers),
        remoteDatabase: cfg.database !== undefined,
        monitoring: cfg.monitoring.enabled,
        turn: cfg.turn !== undefined,
    }),
});
const host: Host = { ...machine, prerequisites: [packages.installed] };

const dns = cfg.dns
    ? new DnsRecords("dns", {
          zoneId: cfg.dns.zoneId,
          hostnames: names.dnsRecords,
          ipv4: cfg.machine.ipv4,
          ipv6: cfg.machine.ipv6,
          ttl: cfg.dns.ttl,
      })
    : undefined;

const firewall = cfg.firewall.enabled
    ? new HostFirewall("firewall", { host, tcpPorts: firewallPorts(cfg), udpPorts: firewallUdpPorts(cfg) })
    : undefined;
// What Element Call is told (well-known, Synapse's transports): known from the config alone.
const rtcService = cfg.rtc ? { serviceUrl: rtcUrls(cfg.homeserverHost).serviceUrl } : undefined;

// PostgreSQL here, or on a host of its own (matrix:database) that admits Synapse's address alone.
const databaseHost = cfg.database
    ? (() => {
          const dbMachine = sshHost(cfg.database.machine, DATABASE_HOST_CONFIG_KEYS);
          const dbPackages = new HostPackages("database-packages", {
              host: dbMachine,
              packages: databaseHostPackages({ firewall: cfg.firewall.enabled }),
          });
          return { ...dbMachine, prerequisites: [dbPackages.installed] };
      })()
    : undefined;
const synapseAddress = cfg.database?.synapseAddress ?? cfg.machine.ipv4;
const databaseFirewall =
    databaseHost && cfg.firewall.enabled
        ? new HostFirewall("database-firewall", {
              host: databaseHost,
              tcpPorts: [cfg.database!.machine.sshPort],
              sourcedTcpPorts: [{ port: postgresCluster.port, from: synapseAddress }],
          })
        : undefined;

const database = new PostgresDatabase("postgres", {
    // On its own host, nothing listens beyond loopback before the firewall admits Synapse's address alone.
    host: databaseHost
        ? {
              ...databaseHost,
              prerequisites: [...databaseHost.prerequisites, ...(databaseFirewall ? [databaseFirewall] : [])],
          }
        : host,
    cluster: postgresCluster,
    database: cfg.postgres.database,
    user: cfg.postgres.user,
    password: provided("databasePassword"),
    purgeOnDestroy: cfg.purgeOnDestroy,
    network: cfg.database ? { listenAddress: cfg.database.machine.ipv4, clientAddress: synapseAddress } : undefined,
});

const synapse = new SynapseServer("synapse", {
    host,
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
});

const backups = new SynapseBackups("backup", {
    host,
    schedule: cfg.backup.schedule,
    retention: cfg.backup.retention,
    synapseUrl: synapse.localUrl,
});

const users =
    cfg.users.length > 0
        ? new MatrixUsers("users", { host, users: cfg.users, synapseUrl: synapse.localUrl })
        : undefined;

// The SFU and its authorisation service need nothing of Synapse's to start; nginx announces them
// (well-known, /livekit/) once both answer.
const rtc = cfg.rtc
    ? new MatrixRtc("rtc", {
          host,
          serverName: cfg.domain,
          homeserverHost: cfg.homeserverHost,
          nodeIp: cfg.machine.ipv4,
          livekit: cfg.rtc.livekit,
          jwtService: cfg.rtc.jwtService,
          udpPort: cfg.rtc.udpPort,
          tcpPort: cfg.rtc.tcpPort,
          turnUdpPort: cfg.rtc.turnUdpPort,
          fullAccessHomeservers: cfg.rtc.fullAccessHomeservers,
          caBundle: cfg.federation.caBundle,
      })
    : undefined;

const proxy = new NginxProxy("nginx", {
    host,
    domain: cfg.domain,
    homeserverHost: cfg.homeserverHost,
    delegation: cfg.delegation,
    // A record's output where this stack manages DNS: no certificate before its name resolves.
    certificateHosts: {
        homeserver: dns?.hostnames.homeserver ?? names.certificates.homeserver,
        element: dns?.hostnames.element ?? names.certificates.element,
        apex: names.certificates.apex !== undefined ? (dns?.hostnames.apex ?? names.certificates.apex) : undefined,
    },
    ipv6,
    maxUploadSize: cfg.synapse.maxUploadSize,
    support: cfg.support,
    rtc: rtc?.serviceUrl.apply((serviceUrl) => ({ serviceUrl })),
    upstreams: synapse.upstreams,
    acme: cfg.acme,
});

// coturn serves the homeserver host's certificate over TLS: it waits for it.
if (cfg.turn) {
    new TurnServer("turn", {
        host,
        realm: cfg.homeserverHost,
        externalIp: cfg.machine.ipv4,
        port: cfg.turn.port,
        tlsPort: cfg.turn.tlsPort,
        relayPorts: cfg.turn.relayPorts,
        sharedSecret: synapse.turnSharedSecret!,
        certificateHost: proxy.certificates.homeserver,
    });
}

if (cfg.monitoring.enabled) {
    const email = cfg.monitoring.email;
    new Monitoring("monitoring", {
        host,
        workers: cfg.synapse.workers,
        postgresCluster: cfg.database === undefined ? postgresCluster : undefined,
        scrapeInterval: cfg.monitoring.scrapeInterval,
        retention: cfg.monitoring.retention,
        backupSchedule: cfg.backup.schedule,
        email: email && { ...email, password: email.username ? loadSmtpPassword() : undefined },
        // Synapse's metrics listeners, PostgreSQL for its exporter's role, the certificates.
        dependsOn: [synapse, database, backups, proxy],
    });
}

// Its vhost waits for its certificate and the Matrix vhosts (through elementHost); its download
// waits for nothing.
const element = new ElementWeb("element", {
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
});

export const serverName = cfg.domain;
export const homeserverUrl = proxy.homeserverUrl;
export const elementUrl = element.url;
export const delegation = cfg.delegation;
/** With delegation "external", publish these at https://<domain>/.well-known/matrix/{server,client,support}. */
export const wellKnown = {
    server: JSON.stringify(wellKnownServer(cfg.homeserverHost)),
    client: JSON.stringify(wellKnownClient(cfg.homeserverHost, rtcService)),
    ...(cfg.support ? { support: JSON.stringify(wellKnownSupport(cfg.support)) } : {}),
};
/** Records to create by hand when matrix:dns is not set: every name that gets a certificate. */
export const dnsRecordsToCreate = dns
    ? []
    : Object.values(names.certificates).flatMap((name) => [
          `${name} A ${cfg.machine.ipv4}`,
          ...(cfg.machine.ipv6 ? [`${name} AAAA ${cfg.machine.ipv6}`] : []),
      ]);
export const registrationSharedSecret = synapse.registrationSharedSecret;
/** Initial passwords of matrix:users (secret); accounts that already existed kept theirs. */
export const userPasswords = users ? users.passwords : pulumi.secret({});
/** Inbound TCP ports the host firewall lets in (empty when matrix:firewall.enabled is false). */
export const openTcpPorts = firewall ? firewall.tcpPorts : [];
/** Inbound UDP ports and ranges the host firewall lets in (calls; open these at your provider too). */
export const openUdpPorts = firewall ? firewall.udpPorts : [];
export const firstAdminCommand = pulumi.output(registerAdminCommand(cfg.machine));
