// The /.well-known/matrix documents (Matrix spec, server discovery).

/** `/.well-known/matrix/server`: federation reaches the homeserver on 443 through nginx. */
export function wellKnownServer(homeserverHost: string): { "m.server": string } {
    return { "m.server": `${homeserverHost}:443` };
}

/** `/.well-known/matrix/client`: its base_url equals Synapse's public_baseurl (less the slash). */
export function wellKnownClient(homeserverHost: string): { "m.homeserver": { base_url: string } } {
    return { "m.homeserver": { base_url: `https://${homeserverHost}` } };
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
