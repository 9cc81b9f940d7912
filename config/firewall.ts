// matrix:firewall: the host's nftables firewall (docs/operations.md: Firewall).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool, tcpPort } from "./fields";

export const firewallSchema = z.strictObject({
    enabled: bool().default(DEFAULTS.firewall.enabled).meta({
        description:
            "Manage an nftables firewall that lets in only SSH, 80, 443 (8448 with delegation `none`), the calls' ports and `allowTcpPorts`.",
    }),
    allowTcpPorts: z
        .array(tcpPort, { error: "expected a list of TCP port numbers such as [8080]" })
        .default([])
        .meta({ description: "More inbound TCP ports to let in, such as `[8080]` for another service on the host." }),
});
