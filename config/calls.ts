// matrix:rtc (Element Call with LiveKit) and matrix:turn (coturn for legacy 1:1 calls): docs/calls.md.
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool, hostname, port, releaseSchema } from "./fields";

export const rtcSchema = z.strictObject({
    enabled: bool()
        .default(DEFAULTS.rtc.enabled)
        .meta({ description: "`false` turns calls off and keeps the settings." }),
    livekit: releaseSchema("livekit-server", "1.13.5", "`linux_amd64` tarball").meta({
        description: "livekit-server, the SFU (required with `rtc`).",
    }),
    jwtService: releaseSchema("lk-jwt-service", "0.5.0", "`linux_amd64` binary").meta({
        description: "lk-jwt-service, the MatrixRTC authorisation service (required with `rtc`).",
    }),
    udpPort: port("a UDP port")
        .default(DEFAULTS.rtc.udpPort)
        .meta({ description: "ICE over UDP: every call's media on this one port." }),
    tcpPort: port("a TCP port")
        .default(DEFAULTS.rtc.tcpPort)
        .meta({ description: "ICE over TCP, for clients whose UDP is blocked." }),
    turnUdpPort: port("a UDP port").optional().meta({ description: "LiveKit's embedded TURN on this UDP port." }),
    fullAccessHomeservers: z
        .array(hostname("other.example.org"), {
            error: 'expected a list of server names such as ["other.example.org"]',
        })
        .default([])
        .meta({ description: "Other servers whose users may open calls on this SFU (this one's always can)." }),
});

export const turnSchema = z
    .strictObject({
        enabled: bool()
            .default(DEFAULTS.turn.enabled)
            .meta({ description: "`false` turns coturn off and keeps the settings." }),
        port: port("a port").default(DEFAULTS.turn.port).meta({ description: "TURN over UDP and TCP." }),
        tlsPort: port("a TCP port")
            .default(DEFAULTS.turn.tlsPort)
            .meta({ description: "TURN over TLS (`turns:`), with the homeserver host's certificate." }),
        relayPorts: z
            .strictObject({
                min: port("a UDP port")
                    .default(DEFAULTS.turn.relayPorts.min)
                    .meta({ description: "First UDP port relayed media uses." }),
                max: port("a UDP port")
                    .default(DEFAULTS.turn.relayPorts.max)
                    .meta({ description: "Last UDP port relayed media uses." }),
            })
            .prefault({}),
        userLifetime: z
            .string()
            .regex(/^[1-9][0-9]{0,3}[mhd]$/, { error: 'expected a lifetime such as "1h" (minutes, hours or days)' })
            .default(DEFAULTS.turn.userLifetime)
            .meta({ description: "How long the TURN credentials Synapse hands out stay valid." }),
    })
    .refine((t) => t.relayPorts.min <= t.relayPorts.max, {
        error: "relayPorts.min must not exceed relayPorts.max",
        path: ["relayPorts"],
    });
