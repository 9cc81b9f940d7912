// The host's Debian packages, installed in one apt run before any other step: the install steps
// would otherwise take turns at apt, each with its own download and dpkg pass.
import { TURN_APT_PACKAGES, TURN_SERVICE } from "./turn";
import { ELEMENT_APT_PACKAGES } from "./element";
import { FIREWALL_APT_PACKAGES } from "./firewall";
import { NGINX_APT_PACKAGES } from "./nginx";
import { POSTGRES_APT_PACKAGES, POSTGRES_CLIENT_APT_PACKAGES } from "./postgres";
import { aptInstall, script, shq } from "./shell";
import { SYNAPSE_APT_PACKAGES } from "./synapse";
import { REDIS_APT_PACKAGES } from "./workers";
import { MONITORING_APT_PACKAGES } from "./monitoring";

/**
 * Every package the program installs on a host, sorted (the firewall's only when it is managed,
 * Redis only with workers, Prometheus and its company only with monitoring).
 */
export function hostPackages(s: {
    firewall: boolean;
    redis?: boolean;
    remoteDatabase?: boolean;
    monitoring?: boolean;
    turn?: boolean;
}): string[] {
    return [
        ...new Set([
            // With the database on another host, only its client tools (dumps and restores).
            ...(s.remoteDatabase ? POSTGRES_CLIENT_APT_PACKAGES : POSTGRES_APT_PACKAGES),
            ...SYNAPSE_APT_PACKAGES,
            ...NGINX_APT_PACKAGES,
            ...ELEMENT_APT_PACKAGES,
            ...(s.firewall ? FIREWALL_APT_PACKAGES : []),
            ...(s.redis ? REDIS_APT_PACKAGES : []),
            ...(s.monitoring ? MONITORING_APT_PACKAGES : []),
            ...(s.turn ? TURN_APT_PACKAGES : []),
        ]),
    ].sort();
}

/** The database host's packages: PostgreSQL, openssl for its certificates, the firewall's. */
export function databaseHostPackages(s: { firewall: boolean }): string[] {
    return [...new Set([...POSTGRES_APT_PACKAGES, "openssl", ...(s.firewall ? FIREWALL_APT_PACKAGES : [])])].sort();
}

/** Install the packages that are missing, in one apt run (each component's step then finds them). */
export function renderPackagesScript(packages: string[], opts: { user?: string } = {}): string {
    // A package whose install would start a service before its step configures it stays masked
    // until then: coturn's default config is an open, anonymous relay on every address.
    const masked = packages.includes("coturn") ? [TURN_SERVICE] : [];
    return script(
        [
            ...masked.map(
                (unit) =>
                    `if ! dpkg-query -W -f='\${Status}' ${shq(unit)} 2>/dev/null | grep -q 'ok installed'; then systemctl mask ${unit} >/dev/null 2>&1; fi`,
            ),
            ...aptInstall(packages),
            `echo "packages: ${packages.length} in place"`,
        ],
        opts,
    );
}
