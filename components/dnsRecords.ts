import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { recordComment, stackOwner } from "../lib/cloudflare";
import { after } from "../lib/order";

export interface DnsRecordsArgs {
    /** Cloudflare zone id of the zone that holds every name below. */
    zoneId: pulumi.Input<string>;
    /**
     * The names to point at the server, keyed by role (`homeserver`, `element`, `apex`).
     * The role names the child resources, so a name can change without renaming them.
     */
    hostnames: { homeserver: pulumi.Input<string>; element: pulumi.Input<string>; apex?: pulumi.Input<string> };
    /** The server's IPv4 address: an A record for each name. */
    ipv4: pulumi.Input<string>;
    /** The server's IPv6 address: an AAAA record for each name too. Default: none. */
    ipv6?: pulumi.Input<string>;
    /** TTL in seconds; 1 is Cloudflare's "auto". */
    ttl: pulumi.Input<number>;
    /**
     * Who owns the records, written in each one's comment (`managed by matrix-pulumi (stack …)`), so
     * that a record at one of the names without it is known to be someone else's. Default: this
     * program's `project/stack`.
     */
    owner?: string;
}

/**
 * A and AAAA records for the server's names. Always DNS-only (`proxied: false`): Cloudflare's
 * proxy would break federation and ACME HTTP-01.
 */
export class DnsRecords extends pulumi.ComponentResource {
    /** Role → host name, resolved once that name's records exist (certificates wait on it; known in a preview). */
    public readonly hostnames: Partial<Record<string, pulumi.Output<string>>>;
    public readonly records: cloudflare.DnsRecord[];

    constructor(name: string, args: DnsRecordsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:DnsRecords", name, {}, opts);
        const types: [string, pulumi.Input<string>][] = [["A", args.ipv4]];
        if (args.ipv6 !== undefined) types.push(["AAAA", args.ipv6]);

        this.records = [];
        this.hostnames = {};
        for (const [role, hostname] of Object.entries(args.hostnames)) {
            if (hostname === undefined) continue;
            const records = types.map(
                ([type, content]) =>
                    new cloudflare.DnsRecord(
                        `${name}-${role}-${type.toLowerCase()}`,
                        {
                            zoneId: args.zoneId,
                            name: hostname,
                            type,
                            content,
                            ttl: args.ttl,
                            proxied: false,
                            comment: recordComment(args.owner ?? stackOwner()),
                        },
                        { parent: this },
                    ),
            );
            this.records.push(...records);
            this.hostnames[role] = after(records, hostname);
        }
        this.registerOutputs({ hostnames: this.hostnames });
    }
}
