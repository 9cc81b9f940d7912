// The /.well-known/matrix documents (Matrix spec, server discovery).

/** `/.well-known/matrix/server`: federation reaches the homeserver on 443 through nginx. */
export function wellKnownServer(homeserverHost: string): { "m.server": string } {
    return { "m.server": `${homeserverHost}:443` };
}

/** `/.well-known/matrix/client`: its base_url equals Synapse's public_baseurl (less the slash). */
export function wellKnownClient(homeserverHost: string): { "m.homeserver": { base_url: string } } {
    return { "m.homeserver": { base_url: `https://${homeserverHost}` } };
}
