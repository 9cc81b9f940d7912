// The stack program: this stack's validated config into one MatrixHomeserver, its outputs out.
// The homeserver itself, and how its parts are chained, is components/matrixHomeserver.ts.
import * as pulumi from "@pulumi/pulumi";
import { MatrixHomeserver } from "./components/matrixHomeserver";
import { loadProvidedSecret, loadSmtpPassword, loadStackConfig, PROVIDED_SECRETS } from "./config";

const cfg = loadStackConfig(); // throws, naming every bad key, before any resource exists
const { providedSecrets, ...settings } = cfg;

const homeserver = new MatrixHomeserver(
    "matrix",
    {
        ...settings,
        // Plain, so the preflight can read the hosts before anything is registered; the component
        // keeps it secret.
        sshPrivateKey: pulumi.runtime.getConfig("matrix:sshPrivateKey") ?? "",
        secrets: {
            // Secrets the stack brings replace generated ones (no random provider needed for them).
            ...Object.fromEntries(
                PROVIDED_SECRETS.filter((name) => providedSecrets[name]).map((name) => [
                    name,
                    loadProvidedSecret(name),
                ]),
            ),
            ...(cfg.monitoring.email?.username ? { smtpPassword: loadSmtpPassword() } : {}),
        },
    },
    { stackProgram: true },
);

export const serverName = homeserver.serverName;
export const homeserverUrl = homeserver.homeserverUrl;
export const elementUrl = homeserver.elementUrl;
export const delegation = homeserver.delegation;
/** With delegation "external", publish these at https://<domain>/.well-known/matrix/{server,client,support}. */
export const wellKnown = homeserver.wellKnown;
/** Records to create by hand when matrix:dns is not set: every name that gets a certificate. */
export const dnsRecordsToCreate = homeserver.dnsRecordsToCreate;
export const registrationSharedSecret = homeserver.registrationSharedSecret;
/** Initial passwords of matrix:users (secret); accounts that already existed kept theirs. */
export const userPasswords = homeserver.userPasswords;
/** Inbound TCP ports the host firewall lets in (empty when matrix:firewall.enabled is false). */
export const openTcpPorts = homeserver.openTcpPorts;
/** Inbound UDP ports and ranges the host firewall lets in (calls; open these at your provider too). */
export const openUdpPorts = homeserver.openUdpPorts;
export const firstAdminCommand = homeserver.firstAdminCommand;
