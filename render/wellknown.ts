// The /.well-known/matrix documents (Matrix spec, server discovery).

/** `/.well-known/matrix/server`: federation reaches the homeserver on 443 through nginx. */
export function wellKnownServer(homeserverHost: string): { "m.server": string } {
    return { "m.server": `${homeserverHost}:443` };
}

/**
 * `/.well-known/matrix/client`: its base_url equals Synapse's public_baseurl (less the slash). With
 * MatrixRTC, the LiveKit focus too: Element Call up to 0.23 reads it here (newer ones ask
 * Synapse's transports endpoint, which announces the same).
 */
export function wellKnownClient(
    homeserverHost: string,
    rtc?: { serviceUrl: string },
): {
    "m.homeserver": { base_url: string };
    "org.matrix.msc4143.rtc_foci"?: { type: string; livekit_service_url: string }[];
} {
    return {
        "m.homeserver": { base_url: `https://${homeserverHost}` },
        ...(rtc ? { "org.matrix.msc4143.rtc_foci": [{ type: "livekit", livekit_service_url: rtc.serviceUrl }] } : {}),
    };
}

export interface SupportSettings {
    contacts: { matrixId?: string; email?: string; role: "admin" | "security" }[];
    page?: string;
}

/** `/.well-known/matrix/support` (Matrix spec, server support discovery, MSC1929). */
export function wellKnownSupport(s: SupportSettings): {
    contacts?: { matrix_id?: string; email_address?: string; role: string }[];
    support_page?: string;
} {
    return {
        ...(s.contacts.length > 0
            ? {
                  contacts: s.contacts.map((c) => ({
                      ...(c.matrixId ? { matrix_id: c.matrixId } : {}),
                      ...(c.email ? { email_address: c.email } : {}),
                      role: `m.role.${c.role}`,
                  })),
              }
            : {}),
        ...(s.page ? { support_page: s.page } : {}),
    };
}
