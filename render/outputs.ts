// Text the stack prints for its operator.
import { shq } from "./shell";
import { SYNAPSE_LISTEN, SYNAPSE_PATHS } from "./synapse";

/**
 * Registers the first admin on the host itself: register_new_matrix_user reads the shared
 * secret from the secrets file and prompts for the password, so neither appears in argv.
 */
export function registerAdminCommand(
    m: { ipv4: string; sshHost?: string; sshPort: number; sshUser: string },
    user = "admin",
): string {
    const sudo = m.sshUser === "root" ? "" : "sudo ";
    const remote = `${sudo}${SYNAPSE_PATHS.venv}/bin/register_new_matrix_user -c ${SYNAPSE_PATHS.secretsConfig} --admin -u ${shq(user)} http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}`;
    return `ssh -t -p ${m.sshPort} ${m.sshUser}@${m.sshHost ?? m.ipv4} ${shq(remote)}`;
}
